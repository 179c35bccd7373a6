"""A local HTTP file server for download tests: Range requests, a request log, and faults on demand.

Use the ``file_server`` fixture (import it into a test module, or ``from tests.core.http_fixture
import file_server``)::

    server.put("a.bin", data)         # serve bytes under /a.bin
    server.url("a.bin")               # http://127.0.0.1:PORT/a.bin
    server.cut_after = 1000           # the next response stops after 1000 body bytes and hangs up
    server.ignore_range = True        # answer Range requests with the whole file (HTTP 200)
    server.validator = "etag"         # GETs carry ETag = sha256 ("last-modified": the file's mtime; None: neither)
    server.honour_if_range = False    # a server that ignores If-Range (sends 206 of whatever it has now)
    server.log                        # [(path, Range header or None), …] for every request

It also answers like the Hugging Face Hub for ``/<org>/<name>/resolve/<rev>/<file>`` (HEAD with
X-Repo-Commit and ETag = sha256; GET with Range), serving ``<org>/<name>/<file>``: point
``huggingface_hub.constants.ENDPOINT`` at ``server.url("")[:-1]``.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """Clients that hang up (a cancelled download) are expected here, not worth a traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


HUB_COMMIT = "c0ffee" * 6 + "beef"  # 40 hex digits


def _local_name(url_path: str) -> str:
    """``/a/b.bin`` → ``a/b.bin``; a Hub URL ``/org/name/resolve/<rev>/file`` → ``org/name/file``."""
    path = url_path.lstrip("/").split("?")[0]
    if "/resolve/" in path:
        repo, rest = path.split("/resolve/", 1)
        path = f"{repo}/{rest.split('/', 1)[1]}"
    return path


class FileServer:
    def __init__(self, root: Path):
        self.root = root
        self.log: list[tuple[str, str | None]] = []
        self.cut_after: int | None = None  # applies to the next response only
        self.ignore_range = False
        self.validator: str | None = "etag"
        self.honour_if_range = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_HEAD(self):
                self.do_GET(head=True)

            def do_GET(self, head: bool = False):
                server.log.append((self.path, self.headers.get("Range")))
                path = server.root / _local_name(self.path)
                if not path.is_file():
                    # The Hub says which kind of "not found" it is; huggingface_hub relies on it.
                    self._empty(404, {"X-Error-Code": "EntryNotFound"} if "/resolve/" in self.path else {})
                    return
                data = path.read_bytes()
                if head:  # what huggingface_hub asks before a download: commit, etag (sha256), size
                    self.send_response(200)
                    self.send_header("X-Repo-Commit", HUB_COMMIT)
                    self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    return
                start = self._range_start()
                validators = self._validators(path, data)
                if_range = self.headers.get("If-Range")
                if start is not None and if_range is not None and server.honour_if_range \
                        and if_range not in validators.values():
                    start = None  # another version now: the whole file (RFC 9110 13.1.5)
                if start is not None and not server.ignore_range:
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    body = data[start:]
                else:
                    self.send_response(200)
                    body = data
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                for key, value in validators.items():
                    self.send_header(key, value)
                self.end_headers()
                cut, server.cut_after = server.cut_after, None
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def _validators(self, path: Path, data: bytes) -> dict[str, str]:
                if server.validator == "etag":
                    return {"ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
                if server.validator == "last-modified":
                    return {"Last-Modified": formatdate(path.stat().st_mtime, usegmt=True)}
                return {}

            def _range_start(self) -> int | None:
                value = self.headers.get("Range")
                if not value or not value.startswith("bytes=") or not value.endswith("-"):
                    return None
                return int(value[len("bytes="):-1])

            def _empty(self, code: int, headers: dict | None = None) -> None:
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def put(self, name: str, data: bytes) -> str:
        (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        (self.root / name).write_bytes(data)
        return self.url(name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def requests_for(self, name: str) -> list[str | None]:
        """The Range headers of every request for ``name`` (None: no Range)."""
        return [rng for path, rng in self.log if path == f"/{name}"]


def closed_port_url(name: str = "file.bin") -> str:
    """A URL on 127.0.0.1 whose port nobody listens on: connecting is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/{name}"


@pytest.fixture
def file_server(tmp_path_factory, monkeypatch):
    # A proxy from the environment would swallow 127.0.0.1 requests: talk to the server directly.
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    from insight_desktop.core.store import urls

    monkeypatch.setattr(urls, "ALLOW_LOOPBACK_HTTP_FOR_TESTS", True)  # this server speaks plain http on 127.0.0.1
    server = FileServer(tmp_path_factory.mktemp("served"))
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture
def hub_online(file_server, monkeypatch):  # noqa: F811
    """huggingface_hub talking to the local server as its endpoint, offline mode off."""
    from huggingface_hub import constants

    from insight_desktop.core.store import download_hub

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(download_hub, "hub_endpoint", lambda: f"http://127.0.0.1:{file_server.port}")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    return file_server
