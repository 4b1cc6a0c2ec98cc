"""Render pages of the built site in headless Chromium (the system's package): a screenshot of each, its
DOM, and the console messages it logged. Run as a script to refresh the screenshots kept for review:

    python -m tests.docs.browser          # builds the site, writes docs/screenshots/*.png
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
#: page of the site -> (screenshot name, a text the rendered page must contain)
PAGES = {
    "": ("front.png", "Where to go"),
    "api/methods/": ("api-methods.png", "deepem.methods.rem"),
    "own-model/": ("tutorial-own-model.png", "A method of your own"),
}
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1280,1400",
         "--enable-logging=stderr", "--v=0")
CONSOLE = re.compile(r":CONSOLE[:(]\d+\)?\] (.*)$")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@dataclass
class Rendered:
    dom: str
    console: list[str]  # every console message (log, warning, error, uncaught exception, failed load)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve(site: Path) -> Iterator[str]:
    """The site over HTTP on a free local port (file:// would block the search index's fetch)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _run(browser: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=120)


def render(browser: str, url: str, screenshot: Path) -> Rendered:
    shot = _run(browser, f"--screenshot={screenshot}", url)
    dom = _run(browser, "--dump-dom", url)
    if shot.returncode or dom.returncode or not screenshot.is_file():
        raise RuntimeError(f"{browser} failed on {url}:\n{shot.stderr[-2000:]}\n{dom.stderr[-2000:]}")
    console = [m.group(1) for run in (shot, dom) for line in run.stderr.splitlines() if (m := CONSOLE.search(line))]
    return Rendered(dom.stdout, console)


def build(site: Path) -> None:
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
                   cwd=ROOT, check=True)


def main() -> None:
    browser = find_browser()
    if browser is None:
        sys.exit("no Chromium found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        build(site)
        SCREENSHOTS.mkdir(exist_ok=True)
        with serve(site) as base:
            for page, (name, _) in PAGES.items():
                rendered = render(browser, base + page, SCREENSHOTS / name)
                print(f"{SCREENSHOTS / name}: console {rendered.console or 'clean'}")


if __name__ == "__main__":
    main()
