"""Cross-cutting HTTP behaviour, pure ASGI (no BaseHTTPMiddleware) so cached tiles pay no extra task or body copy:

- ResponseHeadersMiddleware: Server-Timing on every answer, and cache lifetimes for errors.
- RootPathMiddleware: the path prefix a proxy mounts the service under (it strips it before forwarding), so every
  URL the service writes (TileJSON, Location, /docs) carries it.
- HeadMiddleware: HEAD on every GET route (RFC 9110 9.3.2: the GET's status and headers, no body), and 405 answers
  whose Allow header lists every method the path accepts.
"""

from __future__ import annotations

import time

from starlette.datastructures import MutableHeaders
from starlette.routing import Match
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


def _leaf_routes(routes):
    """Routes, with included routers (FastAPI wraps each include_router in one route) opened up."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _leaf_routes(inner.routes)
        else:
            yield route


def allowed_methods(scope: Scope) -> list[str]:
    """Every method some route of the app accepts at this path (HEAD wherever GET is), sorted."""
    methods: set[str] = set()
    for route in _leaf_routes(scope["app"].router.routes):
        match, _ = route.matches({**scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match != Match.NONE and route_methods:
            methods |= set(route_methods)
        elif match == Match.FULL:  # a mount (static files) answers GET and HEAD
            methods |= {"GET"}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


class HeadMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}

        async def send_filtered(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                MutableHeaders(scope=message)["Allow"] = ", ".join(allowed_methods(scope))
            if head and message["type"] == "http.response.body":
                message = {**message, "body": b""}  # keep the GET's Content-Length; send no body
            await send(message)

        await self.app(scope, receive, send_filtered)


class RootPathMiddleware:
    def __init__(self, app: ASGIApp, *, root_path: str) -> None:
        self.app = app
        self.root_path = root_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "root_path": self.root_path}
        await self.app(scope, receive, send)
