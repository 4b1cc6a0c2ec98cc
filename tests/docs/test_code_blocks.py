"""Every code block of the README and the documentation runs, or says why it cannot.

Python blocks of one page run in order as one script (a page is a tutorial: later blocks use earlier
names), in a fresh process and an empty temporary folder. Bash blocks of one page run as one `set -e`
script in one folder shared by all pages, in order, with `deepem` on the PATH as this checkout's
`python -m deepem`. A block that is the same text as one already run (the README repeats the
getting-started page) runs once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.docs.pages import CODE_LANGUAGES, PAGES, ROOT, Block, blocks

LISTING_LANGUAGES = ("text", "json", "yaml", "toml")
TIMEOUT_S = 600


def _all_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks(page)]


def _page_scripts(language: str) -> list[tuple[str, str]]:
    """(page, script) for each page with runnable blocks of `language`; blocks seen before are left out."""
    seen, scripts = set(), []
    for page in PAGES:
        runnable = [b.code for b in blocks(page) if b.language == language and b.norun_reason is None]
        runnable = [code for code in runnable if code not in seen]
        seen.update(runnable)
        if runnable:
            scripts.append((str(page.relative_to(ROOT)), "\n".join(runnable)))
    return scripts


def _env(tmp_path: Path) -> dict[str, str]:
    shims = tmp_path / "bin"
    shims.mkdir(exist_ok=True)
    shim = shims / "deepem"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m deepem "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(shims), os.path.dirname(sys.executable), env["PATH"]])
    env.setdefault("MPLBACKEND", "Agg")
    return env


def test_every_fence_names_its_language_and_code_that_cannot_run_says_why():
    problems = []
    for block in _all_blocks():
        if block.language not in (*CODE_LANGUAGES, *LISTING_LANGUAGES):
            problems.append(f"{block.where()}: fence language {block.language!r}; use python, bash or text")
        reason = block.norun_reason
        if block.language in CODE_LANGUAGES and reason is not None and len(reason) < 15:
            problems.append(f"{block.where()}: '# norun:' needs a reason a reader can act on, got {reason!r}")
    assert not problems, "\n".join(problems)


def test_the_readme_and_the_pages_have_code_that_runs():
    """A guard against a parser that finds nothing: the quick start must be among the runnable blocks."""
    runnable = [b for b in _all_blocks() if b.language in CODE_LANGUAGES and b.norun_reason is None]
    assert any(b.page.name == "README.md" and b.language == "python" for b in runnable)
    assert any(b.page.name == "README.md" and b.language == "bash" for b in runnable)


@pytest.mark.parametrize(("page", "script"), _page_scripts("python"), ids=lambda v: v if v.endswith(".md") else "")
def test_python_blocks_run(page, script, tmp_path):
    (tmp_path / "page.py").write_text(script)
    done = subprocess.run([sys.executable, "page.py"], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{page}: its python blocks failed\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def test_bash_blocks_run(tmp_path):
    """In one folder, page after page (the README, then docs/ in name order), as a reader following the
    pages would: a page may use a run an earlier one trained (the getting-started run)."""
    env = _env(tmp_path)
    for page, script in _page_scripts("bash"):
        (tmp_path / "page.sh").write_text("set -euo pipefail\n" + script)
        done = subprocess.run(["bash", "page.sh"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
        assert done.returncode == 0, f"{page}: its bash blocks failed\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def test_a_page_followed_in_order_never_reuses_a_run_folder():
    """Each --out of a page's code blocks (run or not) is a folder of its own: a reader who runs the blocks
    in order would otherwise be refused, or told to --force away the earlier run."""
    problems = []
    for page in PAGES:
        outs = [(b.where(), out) for b in blocks(page) if b.language == "bash"
                for out in re.findall(r"--out[ =](\S+)", b.code)]
        seen: dict[str, str] = {}
        for where, out in outs:
            if out in seen and seen[out] != where:
                problems.append(f"{where}: --out {out} again (first at {seen[out]})")
            seen.setdefault(out, where)
    assert not problems, "\n".join(problems)
