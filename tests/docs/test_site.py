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
    # NAME.html, not NAME/index.html: a page opened from disk has no server to map a folder to its index
    for page in ("index.html", "getting-started.html", "choosing-an-estimator.html", "own-model.html",
                 "own-data.html", "discrete-latents.html", "implicit-encoders.html", "evaluating.html",
                 "scale-out.html", "reproducing-papers.html", "reproducing-uci.html", "speed.html", "design.html",
                 "api/methods.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "methods.html").read_text(encoding="utf-8")
    # generated from the docstrings: the REM class and the method base class's forward are documented
    assert 'id="deepem.methods.rem.REM"' in api and 'id="deepem.methods.Method.forward"' in api
    training = (site / "api" / "training.html").read_text(encoding="utf-8")
    assert 'id="deepem.training.Trainer"' in training


def test_the_site_works_from_disk_links_name_files_and_search_needs_no_server(site):
    """Opened as file://: every link inside the site names a file (a link to a folder opens a directory
    listing), and the search index is also a script (fetching JSON is blocked from file://); the browser
    check (test_browser.py) follows a link and searches from file://."""
    for html in site.rglob("*.html"):
        if html.name == "404.html":  # a server's page for a missing path, with links from the site's root
            continue
        text = html.read_text(encoding="utf-8")
        for href in re.findall(r'href="([^"#?]+)', text):
            if href.startswith(("http:", "https:", "mailto:", "data:")):
                continue
            target = html.parent / href
            assert target.is_file(), f"{html.relative_to(site)}: link {href} is not a file of the site"
    assert (site / "search" / "search_index.js").is_file()  # the offline plugin's index, loaded as a script


def test_the_code_block_marker_for_tests_is_not_shown_to_readers(site):
    for html in site.rglob("*.html"):
        assert "norun" not in html.read_text(encoding="utf-8"), html.relative_to(site)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert not re.search(r"^#\s*norun:", readme, re.M), "README: put the marker in an HTML comment"


def test_long_commands_wrap_in_code_blocks(site):
    css = (site / "stylesheets" / "extra.css").read_text(encoding="utf-8")
    assert re.search(r"pre > code \{[^}]*white-space: pre-wrap", css)
    assert 'href="stylesheets/extra.css"' in (site / "index.html").read_text(encoding="utf-8")


def test_the_scikit_learn_page_shows_the_estimators_whole(site):
    """Inherited methods (fit), the constructor's parameters with their defaults, and no private base."""
    page = (site / "api" / "sklearn.html").read_text(encoding="utf-8")
    for name in ("DeepImputer.fit", "DeepImputer.transform", "DeepDensityEstimator.fit",
                 "DeepDensityEstimator.score_samples"):
        assert f'id="deepem.sklearn.{name}"' in page, name
    text = re.sub(r"<[^>]+>", "", page)
    assert re.search(r"DeepImputer\(\s*method: str = &quot;\w+&quot;", text) or re.search(
        r"DeepImputer\(\s*\w+: [^=]+ = ", text), "the constructor's signature with defaults"
    assert "Bases:" not in text


def test_the_pages_speak_of_the_project_only():
    """No issue-tracker numbers and no maintainer's machine paths in the pages."""
    for page in DOCS.rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"(?<![\w/])#\d{1,5}\b|\bissue \d+", text, re.I), page
        assert not re.search(r"/(?:home|Users|work)/\w+", text), page


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
