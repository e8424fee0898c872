from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves files from ``root`` with HTTP Range support; ``cut_after`` bytes into the
    next full response it drops the connection (a download interrupted halfway)."""

    root: Path
    cut_after: list[int] = []
    requests: list[str] = []

    def log_message(self, *args) -> None:  # noqa: ANN002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).requests.append(f"{self.path} {self.headers.get('Range', '')}".strip())
        path = self.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_after:
            n = type(self).cut_after.pop()
            self.wfile.write(body[:n])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture()
def http_root(tmp_path):
    """(folder served, base URL, handler class) of a local HTTP server on 127.0.0.1."""
    root = tmp_path / "served"
    root.mkdir()
    handler = type("Handler", (RangeHandler,), {"root": root, "cut_after": [], "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
