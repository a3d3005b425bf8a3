"""A local HTTP server that serves files in the Hugging Face hub's URL layout.

``huggingface_hub.hf_hub_download`` asks ``HEAD {endpoint}/{repo}/resolve/{revision}/{path}``
for the commit, ETag and size, then ``GET``s the same URL. This server answers both from a dict,
so the hub code path runs for real without the internet.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@contextmanager
def serve_hub(files: dict[str, bytes]) -> Iterator[tuple[str, list[str]]]:
    """Serve ``{"owner/repo/path/in/repo": content}``; yields (endpoint URL, request log)."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _lookup(self) -> bytes | None:
            parts = self.path.split("?", 1)[0].lstrip("/").split("/")
            if len(parts) < 5 or parts[2] != "resolve":
                return None
            key = "/".join(parts[:2] + parts[4:])
            return files.get(key)

        def _headers(self, body: bytes | None) -> None:
            requests.append(f"{self.command} {self.path}")
            if body is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()

        def do_HEAD(self) -> None:
            self._headers(self._lookup())

        def do_GET(self) -> None:
            body = self._lookup()
            self._headers(body)
            if body is not None:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
