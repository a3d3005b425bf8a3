"""Who may open a session: Host, Origin, API key and subprotocol checks, sans-I/O.

The server passes header values in as plain strings and turns the answers into HTTP responses;
nothing here touches a socket. Header values arrive as websockets decodes them (latin-1 with
``surrogateescape`` for bytes that are not ASCII), so every comparison works on bytes.

- **Host** (DNS rebinding): a server bound to a loopback address answers only requests made to
  a loopback name (``localhost``, ``127.x.y.z``, ``[::1]``) or to a configured allowed host. A
  web page that rebinds its own name to 127.0.0.1 sends its own name as Host and is refused.
- **Origin** (cross-site websocket hijacking): browsers send the page's origin with every
  websocket handshake and websockets are not covered by CORS, so any page could otherwise use a
  local, keyless assistant. A handshake with an Origin is accepted only from the server's own
  origin (the Origin names the Host the request was made to) or from a configured allowed
  origin. Clients that send no Origin (SDKs, scripts) are not browsers and are not affected.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

KEY_SUBPROTOCOL = "openai-insecure-api-key."
DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_and_port(netloc: str) -> tuple[str, int | None] | None:
    """``name:port`` (or ``[v6]:port``) -> (lower-case name, port), None if malformed."""
    try:
        parts = urlsplit("//" + netloc)
        name, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not name or parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    return name, port


def is_loopback_name(name: str) -> bool:
    """``localhost`` or a loopback IP address (brackets already removed)."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(host: str | None, *, loopback_bound: bool,
                 allowed_hosts: Iterable[str] = ()) -> bool:
    """Whether a request with this Host header may be answered.

    Only a server bound to a loopback address checks the Host (it is what a DNS rebinding
    attack changes); a server on another address needs API keys anyway. A request without a
    Host header does not come from a browser and is accepted.
    """
    if not loopback_bound or host is None:
        return True
    parsed = _host_and_port(host)
    if parsed is None:
        return False
    name = parsed[0]
    return is_loopback_name(name) or name in {normalize_host(h) for h in allowed_hosts}


def normalize_host(host: str) -> str | None:
    """A configured host name (``voice.internal``, ``[fd00::1]``) in lower case, without
    brackets; None if it is malformed or carries a port."""
    parsed = _host_and_port(host.strip())
    return parsed[0] if parsed is not None and parsed[1] is None else None


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port; None for anything else
    (``null``, ``file://``, paths, other schemes)."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or parts.path not in ("", "/") or parts.query:
        return None
    parsed = _host_and_port(parts.netloc)
    if parsed is None:
        return None
    name, port = parsed
    if ":" in name:
        name = f"[{name}]"
    return f"{scheme}://{name}" if port in (None, DEFAULT_PORTS[scheme]) else \
        f"{scheme}://{name}:{port}"


def origin_allowed(origin: str | None, host: str | None,
                   allowed_origins: Iterable[str] = ()) -> bool:
    """Whether a websocket handshake with this Origin header may go on.

    No Origin: not a browser, allowed. Otherwise the Origin must be one of ``allowed_origins``
    or name the same host and port as the Host header (the page was served by this server).
    """
    if origin is None:
        return True
    normalized = normalize_origin(origin)
    if normalized is None:
        return False
    if normalized in {normalize_origin(o) for o in allowed_origins}:
        return True
    if host is None:
        return False
    requested = _host_and_port(host)
    if requested is None:
        return False
    parts = urlsplit(normalized)
    default = DEFAULT_PORTS[parts.scheme]
    return (parts.hostname, parts.port or default) == (requested[0], requested[1] or default)


def offered_keys(authorization: Sequence[str], subprotocols: Sequence[str],
                 path: str) -> list[str]:
    """API keys a client offered: ``Authorization: Bearer KEY``, the
    ``openai-insecure-api-key.KEY`` subprotocol, or ``?api_key=KEY`` (``?key=``)."""
    offered = [value[7:].strip() for value in authorization if value[:7].lower() == "bearer "]
    offered += [p[len(KEY_SUBPROTOCOL):] for p in subprotocols if p.startswith(KEY_SUBPROTOCOL)]
    query = parse_qs(urlsplit(path).query)
    return offered + query.get("api_key", []) + query.get("key", [])


def authorized(offered: Iterable[str], keys: Sequence[str]) -> bool:
    """Constant-time comparison of every offered key with every configured one. An empty or
    blank key never matches, whatever is configured."""

    def raw(text: str) -> bytes:
        return text.encode("utf-8", "surrogateescape")

    return any(hmac.compare_digest(raw(o), raw(k))
               for o in offered if o.strip() for k in keys if k.strip())


def select_subprotocol(offered: Sequence[str]) -> str | None:
    """The subprotocol to answer with. A browser fails the handshake unless the server picks
    one of those it offered: ``realtime`` first, then any that does not carry a key, else the
    key subprotocol itself (a browser that offered only its key)."""
    if "realtime" in offered:
        return "realtime"
    for protocol in offered:
        if not protocol.startswith(KEY_SUBPROTOCOL):
            return protocol
    return offered[0] if offered else None


def split_header(values: Iterable[str]) -> list[str]:
    """Comma-separated header values (possibly repeated) -> stripped, non-empty items."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Why a request is turned away: ``reason`` labels the refusals metric; the rest is the
    HTTP status and the JSON error body the client reads."""

    reason: str
    status: HTTPStatus
    error_type: str
    code: str
    message: str

    def body(self) -> dict[str, object]:
        return {"error": {"type": self.error_type, "code": self.code, "message": self.message}}


def host_refusal(host: str | None, *, loopback_bound: bool,
                 allowed_hosts: Iterable[str] = ()) -> Refusal | None:
    """Any request (page, health, websocket) made to a Host this server must not answer."""
    if host_allowed(host, loopback_bound=loopback_bound, allowed_hosts=allowed_hosts):
        return None
    return Refusal("host", HTTPStatus.FORBIDDEN, "invalid_request_error", "host_not_allowed",
                   "this server is bound to loopback and answers only requests made to "
                   "localhost, 127.0.0.1 or [::1] (or a name in allowed_hosts)")


@dataclasses.dataclass(frozen=True)
class Handshake:
    """What the admission of a websocket handshake depends on, as plain values."""

    origin: str | None
    host: str | None
    offered_keys: Sequence[str]
    stopping: bool
    sessions: int


def handshake_refusal(handshake: Handshake, *, allowed_origins: Iterable[str],
                      api_keys: Sequence[str], max_sessions: int) -> Refusal | None:
    """Whether a websocket session may open, checked in this order: the page's Origin, a
    server shutting down, the API key (when keys are configured), the session limit."""
    if not origin_allowed(handshake.origin, handshake.host, allowed_origins):
        return Refusal("origin", HTTPStatus.FORBIDDEN, "invalid_request_error",
                       "origin_not_allowed",
                       "web pages may connect only from this server's own origin or an "
                       "allowed origin (--allowed-origin); this page's is not")
    if handshake.stopping:
        return Refusal("shutting_down", HTTPStatus.SERVICE_UNAVAILABLE, "server_error",
                       "server_shutting_down",
                       "the server is shutting down; connect to another instance")
    if api_keys and not authorized(handshake.offered_keys, api_keys):
        return Refusal("unauthorized", HTTPStatus.UNAUTHORIZED, "invalid_request_error",
                       "invalid_api_key",
                       "missing or wrong API key (Authorization: Bearer <key>, the "
                       "openai-insecure-api-key.<key> subprotocol, or ?api_key=<key>)")
    if handshake.sessions >= max_sessions:
        return Refusal("capacity", HTTPStatus.SERVICE_UNAVAILABLE, "server_error",
                       "too_many_sessions",
                       f"the server is at its limit of {max_sessions} sessions; try again "
                       f"later")
    return None
