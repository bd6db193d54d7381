"""The FastAPI application: `create_app(settings, engine=...)` mounts the routes at `/api/v1`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud import console, errors
from cloud.api.admission import Admission, pool_capacity
from cloud.api.fast_reads import TrackingFastPath
from cloud.api.key_cache import PrincipalCache
from cloud.api.routes import (
    cabinets,
    callbacks,
    docs_page,
    enrol,
    health,
    metrics,
    parcels,
    pickup_page,
    scan,
    scan_page,
    scan_wechat,
    shipments,
    sites,
    statements,
    webhooks,
    wechat,
)
from cloud.api.schemas import ErrorPublic, FieldErrorPublic
from cloud.db.engine import make_engine
from cloud.metrics import api_registry
from cloud.notify.wechat_oauth import WechatOAuth
from cloud.settings import CloudSettings
from protocol.http_edge import BodyGuard

API_PREFIX = "/api/v1"
# The largest body anyone legitimately sends is a few KiB (a shipment is ~300 bytes, a WeChat
# push ~1 KiB, a Twilio status callback ~1 KiB): 64 KiB leaves room, and an attacker's 80 MB
# POST is refused before a byte of it is kept.
MAX_BODY_BYTES = 64 * 1024

DESCRIPTION = """\
The parcel-locker cloud's API.

- **health**: whether the service and its database answer (open).
- **sites**: a site's pickup policy (`X-API-Key`: the key's own sites).
- **cabinets**: presence, occupancy by size, compartments (`X-API-Key`: the key's sites).
- **shipments**: a shipment over its whole life: announce, read, list, update, cancel, confirm a
  return (`X-API-Key`: the key's own; every write with an `Idempotency-Key`).
- **statements**: a carrier's monthly statement (对账单) as JSON, CSV or XLSX (`X-API-Key` of
  that carrier).
- **parcels** and **tracking**: parcels, their status, ERP order state, timeline and overdue fee
  (`X-API-Key`). Phone numbers are always masked; codes and their hashes are never shown.
- **scan-to-open**: the idle-screen QR (the cabinet only, HTTP Basic with its MQTT password) and
  the recipient page's steps (proven by the QR's short-lived nonce, then a one-time SMS code or
  a WeChat sign-in, and a signed session token; limited per phone, nonce, address and cabinet).
- **callbacks**: provider callbacks, verified by their signatures.
- **webhooks**: endpoints for signed parcel status events (`X-API-Key`; docs/webhooks.md).
- **metrics**: `GET /metrics` (outside `/api/v1`) for Prometheus, with the bearer token
  `LOCKER_CLOUD_METRICS_TOKEN` (404 while none is set): aggregate figures only.
- **wechat**: the official account's server push (URL check and messages, plaintext mode, signed
  with the account's Token): a bound recipient who writes to the account gets new codes.

Errors are JSON `{"detail": "...", "errors": [{"field", "message"}]}`; `errors` is set on 422.
A request body over 64 KiB is refused with 413; a JSON body with a duplicate key, NaN, or nested
more than 32 deep with 422.
"""

TAGS = [
    {"name": "health", "description": "Liveness and database reachability."},
    {"name": "sites", "description": "Sites and the policy their cabinets run by."},
    {"name": "cabinets", "description": "Cabinets, their presence and compartments."},
    {"name": "shipments", "description": "The ERP announces the parcels couriers will bring."},
    {"name": "parcels", "description": "Parcels as the ERP sees them."},
    {"name": "tracking", "description": "A shipment's status and timeline by tracking number."},
    {"name": "scan-to-open", "description": "Open a door by scanning the cabinet's screen."},
    {"name": "callbacks", "description": "Provider callbacks (Twilio delivery status)."},
    {"name": "wechat", "description": "WeChat's pushes to the official account."},
    {"name": "webhooks", "description": "Signed status events to the ERP (Standard Webhooks)."},
]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: CloudSettings | None = None,
    *,
    engine: Engine | None = None,
    wechat_oauth: WechatOAuth | None = None,
    clock: Callable[[], datetime] = _utc_now,
) -> FastAPI:
    """Build the API over `engine` (default: one on `settings.database_url`).

    Scan-to-open's codes go out from the notice outbox (the worker), never from a request.
    `wechat_oauth` signs scan-to-open users in with WeChat (default: from the settings, if an
    app id is set);
    `clock` is injectable so tests move time instead of sleeping. Raise SettingsError if the
    settings have no secret key. The app keeps nothing between
    requests beyond these, so any number of replicas may serve one database.
    """
    settings = settings or CloudSettings()
    # Refuse to build an API that would sign sessions with no key (SettingsError, one paragraph).
    settings.require_secret_key()
    if engine is None:
        engine = make_engine(settings.database_url)
    if wechat_oauth is None and settings.wechat_app_id:
        wechat_oauth = WechatOAuth.from_settings(settings)
    app = FastAPI(
        title="Parcel lockers cloud API",
        version="1",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # served from local assets below (routes/docs_page.py)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    # The same pool, its statements in autocommit: the read-only routes' sessions (deps.py).
    app.state.read_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    app.state.principals = PrincipalCache(ttl_s=settings.erp_key_cache_s, clock=clock)
    app.state.wechat_oauth = wechat_oauth
    app.state.clock = clock
    # This app's own registry (process, fleet gauges, HTTP latency): tests build many apps.
    app.state.metrics_registry, http_metrics = api_registry(engine=engine, clock=clock)
    for module in (
        health,
        sites,
        cabinets,
        parcels,
        shipments,
        scan,
        scan_wechat,
        callbacks,
        wechat,
        statements,
        webhooks,
        enrol,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(docs_page.router_for(API_PREFIX, app.title))
    app.include_router(scan_page.router)  # the QR's URL: short, outside the API's prefix
    app.include_router(pickup_page.router)  # a notice's link, likewise
    app.include_router(metrics.router)  # where Prometheus looks by default, beside the API
    console.install(app)  # the operations console's pages, under /console
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(errors.CloudError, _cloud_error)
    # Innermost, so the tracking reads it answers are admitted, guarded and timed like any.
    app.add_middleware(TrackingFastPath, api=app, prefix=API_PREFIX)
    app.add_middleware(BodyGuard, max_bytes=MAX_BODY_BYTES, render=_edge_error)
    if (capacity := pool_capacity(engine)) is not None:
        app.add_middleware(Admission, limit=capacity, prefix=API_PREFIX + "/")
    app.add_middleware(
        metrics.HttpTimer, http=http_metrics, routes=lambda: app.routes
    )  # outermost: refusals timed too
    return app


def _edge_error(status_code: int, message: str) -> dict[str, object]:
    """BodyGuard's refusals in the API's error shape (a bad JSON body is a 422 on `body`)."""
    errors = [FieldErrorPublic(field="body", message=message)] if status_code == 422 else None
    return ErrorPublic(detail=message, errors=errors).model_dump(exclude_none=True)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    body = ErrorPublic(detail=str(exc.detail))
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=exc.status_code, headers=exc.headers
    )


# The only place a domain error becomes an HTTP status (cloud/errors.py draws the tree); the most
# specific class listed first wins.
HTTP_STATUS: tuple[tuple[type[errors.CloudError], int], ...] = (
    (errors.NotFound, status.HTTP_404_NOT_FOUND),
    (errors.InvalidInput, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (errors.Conflict, status.HTTP_409_CONFLICT),
    (errors.Unauthenticated, status.HTTP_401_UNAUTHORIZED),
    (errors.Forbidden, status.HTTP_403_FORBIDDEN),
    (errors.RateLimited, status.HTTP_429_TOO_MANY_REQUESTS),
    (errors.Unavailable, status.HTTP_503_SERVICE_UNAVAILABLE),
)


def http_status(exc: errors.CloudError) -> int:
    """The status a domain error is answered with. A NotFound naming a field of the body is a
    422: the URL is fine, the body names something that does not exist."""
    if isinstance(exc, errors.NotFound) and exc.field:
        return status.HTTP_422_UNPROCESSABLE_CONTENT
    for kind, code in HTTP_STATUS:
        if isinstance(exc, kind):
            return code
    return status.HTTP_400_BAD_REQUEST  # a CloudError outside the tree's named branches


async def _cloud_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.CloudError)
    code = http_status(exc)
    field_errors = None
    if code == status.HTTP_422_UNPROCESSABLE_CONTENT and exc.field:
        where = f"{exc.location}.{exc.field}"
        field_errors = [FieldErrorPublic(field=where, message=str(exc))]
    headers = None
    if isinstance(exc, errors.RateLimited):
        headers = {"Retry-After": str(exc.retry_after_s)}
    body = ErrorPublic(detail=str(exc), errors=field_errors)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=code, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldErrorPublic(field=".".join(str(part) for part in error["loc"]), message=error["msg"])
        for error in exc.errors()
    ]
    names = ", ".join(error.field for error in errors)
    body = ErrorPublic(detail=f"invalid request: {names}", errors=errors)
    return JSONResponse(body.model_dump(), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
