"""Render pages of the built site in headless Chromium (the system's package): a screenshot of each, its
DOM, and the console messages it logged; or drive a page (`DevTools`: click, type, read the DOM). Run as
a script to refresh the screenshots kept for review:

    python -m tests.docs.browser          # builds the site, writes docs/screenshots/*.png
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
#: page of the site -> (screenshot name, a text the rendered page must contain)
PAGES = {
    "": ("front.png", "Where to go"),
    "api/methods.html": ("api-methods.png", "deepem.methods.rem"),
    "own-model.html": ("tutorial-own-model.png", "A method of your own"),
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


class DevTools:
    """A headless Chromium driven over its DevTools protocol through a pipe (--remote-debugging-pipe: JSON
    messages ending in a NUL byte, the browser reading fd 3 and writing fd 4), so that a test can click a
    link and type a search in a page opened from disk, with the standard library only."""

    def __init__(self, browser: str, url: str) -> None:
        self._profile = tempfile.TemporaryDirectory()
        to_browser, self._writer = os.pipe()
        self._reader, from_browser = os.pipe()

        def pipes() -> None:  # in the child, before exec: the ends the browser expects as fd 3 and fd 4
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        self._process = subprocess.Popen(
            [browser, *FLAGS, f"--user-data-dir={self._profile.name}", "--remote-debugging-pipe", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pipes, pass_fds=(3, 4))
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id, self._session = b"", 0, None
        target = self._call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self._call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.goto(url)

    def goto(self, url: str, timeout_s: float = 30.0) -> None:
        """Open `url` and wait until it has loaded."""
        self._call("Page.navigate", url=url)
        loaded = self.wait_for(f"location.href == {json.dumps(url)} && document.readyState == 'complete'",
                               timeout_s)
        if not loaded:
            raise RuntimeError(f"{url} did not load in {timeout_s} s")

    def _call(self, method: str, **params: object) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self._session is not None and not method.startswith("Target."):
            message["sessionId"] = self._session
        os.write(self._writer, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._reader, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"the browser closed its pipe during {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str) -> object:
        """The value of a JavaScript expression in the page."""
        result = self._call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0) -> object:
        """Evaluate `expression` until it is truthy (the page loads and runs on its own time)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError:  # a page being replaced by the next one
                value = None
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.2)

    def close(self) -> None:
        self._process.kill()
        self._process.wait()
        os.close(self._writer)
        os.close(self._reader)
        self._profile.cleanup()

    def __enter__(self) -> DevTools:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
