"""The browser page's files (``clients/web``), looked up safely for HTTP GETs."""

from __future__ import annotations

import mimetypes
from pathlib import Path

WEB_ROOT = Path(__file__).resolve().parents[1] / "clients" / "web"


def page_file(path: str) -> tuple[bytes, str] | None:
    """(content, Content-Type) of the file a GET of ``path`` names (``/`` is index.html, other
    files live under ``/web/``), or None: nothing outside ``clients/web`` is ever served, and a
    name the file system refuses (too long, NUL byte) is simply not found."""
    name = "index.html" if path == "/" else path.removeprefix("/web").lstrip("/")
    try:
        target = (WEB_ROOT / name).resolve()
        if not name or WEB_ROOT.resolve() not in target.parents or not target.is_file():
            return None
        data = target.read_bytes()
    except (OSError, ValueError):
        return None
    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind.endswith("javascript"):
        kind += "; charset=utf-8"
    return data, kind
