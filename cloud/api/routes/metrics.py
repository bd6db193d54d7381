"""`GET /metrics`: the fleet's figures and the API's latency for Prometheus (docs/metrics.md).

Only a bearer of `LOCKER_CLOUD_METRICS_TOKEN` may scrape it (Prometheus' `authorization`
setting); with no token configured the route answers 404 like any path that does not exist, so
an API without monitoring shows nothing. What it serves is aggregate (counts, ages, latency by
route template): nothing per cabinet, per parcel or per phone.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, Response, status
from prometheus_client import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.api.access import enforce, iter_routes
from cloud.api.deps import SettingsDep
from cloud.core.access import SYSTEM, Action, Principal, PrincipalKind, decide
from cloud.metrics import HttpMetrics

router = APIRouter(tags=["metrics"])

NOT_FOUND = "Not Found"  # Starlette's words for a path that does not exist
METRICS_PATH = "/metrics"
# The classic text format, which every Prometheus (Debian's 2.42 too) reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def monitor_of(authorization: str | None, token: str) -> Principal:
    """The principal a request's `Authorization` header makes: the monitor, or anyone."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return Principal(PrincipalKind.MONITOR, "prometheus")
    return Principal(PrincipalKind.ANYONE, "-")


@router.get(METRICS_PATH, include_in_schema=False)
def metrics(
    request: Request,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """The Prometheus text exposition of this replica (needs `Authorization: Bearer <token>`)."""
    if settings.metrics_token is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    principal = monitor_of(authorization, settings.metrics_token.get_secret_value())
    enforce(decide(principal, Action.READ_METRICS, SYSTEM), NOT_FOUND)
    body = generate_latest(request.app.state.metrics_registry)
    return Response(body, media_type=CONTENT_TYPE)


class HttpTimer:
    """ASGI middleware: each HTTP request's duration by its route template (not its URL).

    The template is the full path of the route that matched (`/api/v1/parcels/{parcel_id}`); a
    path no route matched is `unmatched`, so scanners probing random URLs add no series.
    `/metrics` itself is not timed.
    """

    def __init__(self, app: ASGIApp, *, http: HttpMetrics, routes: Callable[[], list[Any]]) -> None:
        self.app = app
        self.http = http
        self.routes = routes
        self._templates: dict[int, str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = [500]

        async def record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.http.observe(
                scope["method"],
                self.template(scope.get("route")),
                answered[0],
                time.perf_counter() - started,
            )

    def template(self, route: object) -> str:
        """The matched route's full path template (its router's prefix included)."""
        if route is None:
            return "unmatched"
        if self._templates is None:
            # An included router's routes know their own path only; the table knows the prefix.
            self._templates = {id(r): path for _method, path, r in iter_routes(self.routes())}
        return self._templates.get(id(route)) or getattr(route, "path", None) or "unmatched"
