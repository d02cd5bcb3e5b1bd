"""Cross-cutting response headers: Server-Timing on every answer, and cache lifetimes for errors.

Pure ASGI (no BaseHTTPMiddleware) so cached tiles pay no extra task or body copy per request.
"""

from __future__ import annotations

import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ResponseHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, error_max_age_s: int = 60) -> None:
        self.app = app
        self.client_error_cache_control = f"public, max-age={error_max_age_s}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                total = f"total;dur={(time.perf_counter() - started) * 1000:.1f}"
                existing = headers.get("server-timing")
                headers["Server-Timing"] = f"{existing}, {total}" if existing else total
                status = message["status"]
                if status >= 500:
                    headers["Cache-Control"] = "no-store"  # an outage must not be remembered by caches
                elif status >= 400 and "cache-control" not in headers:
                    headers["Cache-Control"] = self.client_error_cache_control
            await send(message)

        await self.app(scope, receive, send_with_headers)
