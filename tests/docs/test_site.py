"""The documentation site builds with warnings as errors, and every link and image of the README and the
pages resolves (mkdocs checks the pages' links and anchors in strict mode; the README is read on GitHub
and in the checkout, so its relative links are checked here as paths)."""

from __future__ import annotations

import re
import shutil
import subprocess

from tests.docs.pages import DOCS, ROOT

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FIGURES = ROOT / "benchmarks" / "results"  # served at results/ by docs/_hooks.py


def test_the_site_builds_strict_with_every_page_and_the_api_reference(site):
    for page in ("index.html", "getting-started/index.html", "choosing-an-estimator/index.html",
                 "own-model/index.html", "own-data/index.html", "discrete-latents/index.html",
                 "implicit-encoders/index.html", "evaluating/index.html", "scale-out/index.html",
                 "reproducing-papers/index.html", "reproducing-uci/index.html", "speed/index.html",
                 "design/index.html", "api/methods/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "methods" / "index.html").read_text(encoding="utf-8")
    # generated from the docstrings: the REM class and the method base class's forward are documented
    assert 'id="deepem.methods.rem.REM"' in api and 'id="deepem.methods.Method.forward"' in api
    training = (site / "api" / "training" / "index.html").read_text(encoding="utf-8")
    assert 'id="deepem.training.Trainer"' in training


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")]
    assert pages and [p for p in pages if p not in nav] == []


def test_every_image_of_the_pages_is_in_the_built_site(site):
    for html in site.rglob("*.html"):
        for src in re.findall(r'<img [^>]*src="([^"]+)"', html.read_text(encoding="utf-8")):
            if src.startswith(("http:", "https:", "data:")):
                continue
            target = (html.parent / src.split("#")[0]).resolve()
            assert target.is_file(), f"{html.relative_to(site)}: image {src} is missing"


def test_figures_are_served_from_the_benchmark_results():
    """Pages show the figure a benchmark wrote (results/NAME.png is benchmarks/results/NAME.png)."""
    quoted = {m for page in DOCS.rglob("*.md") for m in re.findall(r"\]\((?:\.\./)*results/([\w.-]+\.png)\)",
                                                                     page.read_text(encoding="utf-8"))}
    assert "gradient_variance.png" in quoted
    assert [name for name in quoted if not (FIGURES / name).is_file()] == []


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = [link for link in LINK.findall(text) if not link.startswith(("http:", "https:", "mailto:"))]
    assert len(links) >= 10
    missing = [link for link in links if not (ROOT / link.split("#")[0]).exists()]
    assert missing == []


def test_readme_is_a_map_under_200_lines():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) < 200


def test_make_docs_builds_into_the_ignored_site_folder():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^docs:", makefile, re.M) and "mkdocs build --strict" in makefile
    if shutil.which("git"):
        ignored = subprocess.run(["git", "check-ignore", "-q", "site/index.html"], cwd=ROOT)
        assert ignored.returncode == 0, "site/ must be in .gitignore"
