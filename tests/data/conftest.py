"""Fixtures for the dataset tests: the shared benchmark data directory and a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The verified benchmark files (DEEPEM_DATA, else ../shared/data next to the repository). When
    DEEPEM_DATA is set the files must be there (CI); without it, a missing default directory skips."""
    env = os.environ.get("DEEPEM_DATA")
    if env:
        return Path(env)
    if not DEFAULT_SHARED_DATA.is_dir():
        pytest.skip(f"no benchmark data: set DEEPEM_DATA (looked for {DEFAULT_SHARED_DATA})")
    return DEFAULT_SHARED_DATA


class LocalServer:
    """A static file server on 127.0.0.1 with an ephemeral port; records every requested path."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        server_self = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (name fixed by http.server)
                server_self.requests.append(self.path)
                super().do_GET()

            def log_message(self, format, *args):  # keep test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        # short poll interval: shutdown() waits up to one interval
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def local_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    """Serves tmp_path/'served'; proxies are bypassed so urllib talks to it directly."""
    root = tmp_path / "served"
    root.mkdir()
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with LocalServer(root) as server:
        yield server
