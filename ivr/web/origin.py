"""Where the site is: the public origin, whether a request came over TLS, and the WebSocket
Origin check.

``web.public_url`` is the origin citizens and agents use. A request counts as TLS when it
arrived over TLS, when the public origin is https, or when a trusted reverse proxy
(``web.trusted_proxies``) says so in ``X-Forwarded-Proto``; the session cookie is then Secure.
A browser always sends ``Origin`` on a WebSocket handshake; it must be the public origin or the
origin the browser addressed (scheme, host and port all equal: a page on another port or
scheme of the same host is another site).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from aiohttp import web
from yarl import URL

from ivr.config import Settings
from ivr.web.errors import json_error

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute http(s) URL, default ports filled in; None otherwise."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return None
    scheme = (parsed.scheme or "").lower()
    if scheme not in ("http", "https") or not parsed.host:
        return None
    return scheme, parsed.host.lower().rstrip("."), parsed.port or DEFAULT_PORTS[scheme]


@lru_cache(maxsize=64)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(settings: Settings, remote: str | None) -> bool:
    if not remote or not settings.web.trusted_proxies:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(address in net for net in _networks(tuple(settings.web.trusted_proxies)))


def client_address(request: web.Request, settings: Settings) -> str | None:
    """The client's address: behind a trusted proxy, the nearest untrusted address in
    ``X-Forwarded-For`` (what the proxy saw), else the socket's peer."""
    remote = request.remote
    if not _trusted(settings, remote):
        return remote
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(settings, hop):
            return hop
    return remote


def over_tls(request: web.Request, settings: Settings) -> bool:
    """True when this request came over TLS (directly, or through a trusted proxy)."""
    if request.secure:
        return True
    if _trusted(settings, request.remote):
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return forwarded == "https"
    return False


def is_secure(request: web.Request, settings: Settings) -> bool:
    """Whether cookies must be Secure: the request came over TLS or the public site is https."""
    return over_tls(request, settings) or (origin_of(settings.web.public_url) or ("",))[0] == "https"


def request_origin(request: web.Request, settings: Settings) -> tuple[str, str, int] | None:
    """The origin the client addressed: the scheme it used and the Host header."""
    scheme = "https" if over_tls(request, settings) else "http"
    host = request.headers.get("Host", "")
    return origin_of(f"{scheme}://{host}") if host else None


def check_websocket_origin(request: web.Request, settings: Settings) -> None:
    """Refuse (403) a WebSocket handshake whose ``Origin`` is not this site.

    Without the header the client is not a browser (browsers always send it on WebSockets), so
    no signed-in person's cookie can be abused by another site's page."""
    header = request.headers.get("Origin")
    if header is None:
        return
    origin = origin_of(header)
    allowed = {origin_of(settings.web.public_url), request_origin(request, settings)} - {None}
    if origin is None or origin not in allowed:
        raise json_error(403, "cross-site WebSocket refused: Origin is not this site")
