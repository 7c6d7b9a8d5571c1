"""Request size and rate limits.

Size: a declared ``Content-Length`` above the route's limit is refused (413) before the body
is read; bodies without one are capped by aiohttp's ``client_max_size`` (``web.max_body_bytes``).
Rate: a token bucket per client address and route (``web.rate_limit_per_minute``, burst of
the same size); over it a request gets 429 with ``Retry-After``. Provider webhooks are exempt
(see ``RATE_EXEMPT_PREFIXES``). Behind a reverse proxy every client has the proxy's address:
raise the limit there or set it to 0 and limit at the proxy. Buckets live in this process
(each web process limits on its own), and idle ones are dropped so memory stays bounded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import StreamReader, web
from aiohttp.typedefs import Middleware

from ivr.context import AppContext
from ivr.web.errors import json_error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Smaller limits for routes whose bodies are small by nature (path prefix -> bytes).
ROUTE_BODY_LIMITS: dict[str, int] = {"/api/messaging/": 256 * 1024, "/webhooks/sms/status": 64 * 1024,
                                     "/webhooks/twilio/": 256 * 1024, "/webhooks/sns/": 256 * 1024}
# Not rate limited: providers' webhooks (a gateway sends every citizen's messages from a few
# addresses, and Twilio does not retry an inbound SMS answered 429; forged requests are cheap to
# refuse by their signature) and the liveness probe.
RATE_EXEMPT_PREFIXES = ("/webhooks/", "/healthz")
MAX_BUCKETS = 100_000
LIMITER_KEY = web.AppKey("rate_limiter", object)


async def read_capped(stream: StreamReader, limit: int) -> bytes:
    """A body read to its end, or its first ``limit`` + 1 bytes when it is longer (the caller
    refuses it then). ``StreamReader.read(n)`` alone returns only what has arrived so far: for
    a body that comes in several pieces, the first of them."""
    data = bytearray()
    while len(data) <= limit:
        piece = await stream.read(limit + 1 - len(data))
        if not piece:
            break
        data += piece
    return bytes(data)


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.buckets: dict[tuple[str, str], tuple[float, float]] = {}  # key -> (tokens, stamp)

    def take(self, key: tuple[str, str]) -> float:
        """0 when allowed, else the seconds until a token is free."""
        now = self.clock()
        tokens, stamp = self.buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
        if tokens >= 1.0:
            self.buckets[key] = (tokens - 1.0, now)
            if len(self.buckets) > MAX_BUCKETS:
                self._prune(now)
            return 0.0
        self.buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = self.capacity / self.rate  # seconds for an empty bucket to refill
        for key, (_tokens, stamp) in list(self.buckets.items()):
            if now - stamp > full:
                del self.buckets[key]


def body_limit(path: str, default: int) -> int:
    for prefix, limit in ROUTE_BODY_LIMITS.items():
        if path.startswith(prefix):
            return min(limit, default)
    return default


def make_middleware(ctx: AppContext) -> Middleware:
    per_minute = ctx.settings.web.rate_limit_per_minute
    limiter = RateLimiter(per_minute) if per_minute > 0 else None
    default_limit = ctx.settings.web.max_body_bytes

    @web.middleware
    async def limits_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        limit = body_limit(request.path, default_limit)
        if request.content_length is not None and request.content_length > limit:
            raise json_error(413, f"request body is {request.content_length} bytes; the limit is {limit}")
        if request.content_type.startswith("multipart/") and "boundary=" not in request.headers.get("Content-Type", ""):
            # aiohttp's form parser would fail deep inside a handler; refuse it up front.
            raise json_error(400, "a multipart body needs a boundary in its Content-Type")
        if limiter is not None and not request.path.startswith(RATE_EXEMPT_PREFIXES):
            route = request.match_info.route.resource
            name = route.canonical if route is not None else "unmatched"
            wait = limiter.take((request.remote or "?", f"{request.method} {name}"))
            if wait > 0:
                raise json_error(429, "too many requests; slow down", headers={"Retry-After": str(math.ceil(wait))})
        return await handler(request)

    return limits_middleware


def setup(app: web.Application, ctx: AppContext) -> None:
    from ivr.web.errors import error_middleware

    index = 1 if app.middlewares and app.middlewares[0] is error_middleware else 0
    app.middlewares.insert(index, make_middleware(ctx))
