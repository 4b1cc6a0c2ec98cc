"""The built documentation site, once per session, for the docs tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.docs.pages import ROOT


def build_site(site_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The site built with `mkdocs build --strict`: a warning (a broken link or anchor, a docstring the
    API reference cannot render) fails every test that uses it."""
    pytest.importorskip("mkdocs", reason="the docs tools are in the test extra: pip install -e '.[test]'")
    pytest.importorskip("mkdocstrings_handlers.python", reason="pip install 'mkdocstrings[python]'")
    site_dir = tmp_path_factory.mktemp("site")
    done = build_site(site_dir)
    warnings = [line for line in done.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert done.returncode == 0 and not warnings, "mkdocs build --strict failed:\n" + done.stderr[-5000:]
    return site_dir
