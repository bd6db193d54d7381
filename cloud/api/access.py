"""Every route's owner, and the dependency that turns an ERP key into a policy principal.

`ROUTES` declares, for every route the app serves, the action it performs and the kinds of
principal that may call it (cloud.core.access). tests/security/test_access.py walks the app's
routes and fails on one this table does not name, so a new route cannot ship without an owner.
A route for ERP clients must also carry `ErpPrincipalDep`, which refuses a key bound to nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from cloud.api.deps import ApiKeyDep
from cloud.api.key_cache import PrincipalCache
from cloud.core.access import Action, Decision, Principal, PrincipalKind
from cloud.services import queries

K = PrincipalKind


@dataclass(frozen=True)
class RouteRule:
    """What a route does (`action`) and who may call it (`kinds`); `why` for the open ones."""

    action: Action
    kinds: frozenset[PrincipalKind]
    why: str = ""


def _rule(action: Action, *kinds: PrincipalKind, why: str = "") -> RouteRule:
    return RouteRule(action, frozenset(kinds), why)


_ERP = (K.ERP_CLIENT,)
_ACCOUNTS = (K.OPERATOR_ADMIN, K.SITE_MANAGER, K.CARRIER)  # console accounts
_STAFF = (K.OPERATOR_ADMIN, K.SITE_MANAGER)  # the console's cabinet pages
_DOCS = "the API's own description: no data"

# (method, path) -> rule. HEAD is served with GET and declared with it.
ROUTES: dict[tuple[str, str], RouteRule] = {
    ("GET", "/api/v1/openapi.json"): _rule(Action.READ_HEALTH, K.ANYONE, why=_DOCS),
    ("GET", "/api/v1/docs"): _rule(Action.READ_HEALTH, K.ANYONE, why=_DOCS),
    ("GET", "/docs/oauth2-redirect"): _rule(Action.READ_HEALTH, K.ANYONE, why=_DOCS),
    ("GET", "/api/v1/docs/assets/{name}"): _rule(Action.READ_HEALTH, K.ANYONE, why=_DOCS),
    ("GET", "/api/v1/health"): _rule(Action.READ_HEALTH, K.ANYONE, why="liveness, no data"),
    ("GET", "/api/v1/sites/{site_id}"): _rule(Action.READ_CABINET, *_ERP),
    ("GET", "/api/v1/cabinets"): _rule(Action.READ_CABINET, *_ERP),
    ("GET", "/api/v1/cabinets/{cab}"): _rule(Action.READ_CABINET, *_ERP),
    ("GET", "/api/v1/cabinets/{cab}/compartments"): _rule(Action.READ_CABINET, *_ERP),
    # The idle screen's QR: the cabinet itself, by HTTP Basic with its MQTT password.
    ("GET", "/api/v1/cabinets/{cab}/scan-qr"): _rule(Action.CABINET_LINK, K.CABINET),
    # Zero-touch enrolment: the caller proves nothing but a one-time code, which the service
    # turns into an enrolment principal bound to its one cabinet (docs/enrolment.md).
    ("POST", "/api/v1/enrol"): _rule(Action.ENROL_CABINET, K.ENROLMENT),
    ("GET", "/api/v1/parcels"): _rule(Action.READ_PARCEL, *_ERP),
    ("GET", "/api/v1/parcels/{parcel_id}"): _rule(Action.READ_PARCEL, *_ERP),
    ("GET", "/api/v1/tracking/{tracking_no}"): _rule(Action.READ_PARCEL, *_ERP),
    ("POST", "/api/v1/shipments"): _rule(Action.ANNOUNCE_SHIPMENT, *_ERP),
    ("GET", "/api/v1/shipments"): _rule(Action.READ_PARCEL, *_ERP),
    ("GET", "/api/v1/shipments/{shipment_id}"): _rule(Action.READ_PARCEL, *_ERP),
    ("PATCH", "/api/v1/shipments/{shipment_id}"): _rule(Action.UPDATE_SHIPMENT, *_ERP),
    ("POST", "/api/v1/shipments/{shipment_id}/cancel"): _rule(Action.CANCEL_PARCEL, *_ERP),
    ("POST", "/api/v1/shipments/{shipment_id}/reserve"): _rule(Action.UPDATE_SHIPMENT, *_ERP),
    ("POST", "/api/v1/shipments/{shipment_id}/confirm-return"): _rule(
        Action.UPDATE_SHIPMENT, *_ERP
    ),
    # A carrier's statement (对账单): a key bound to that carrier; any other carrier's is a 404.
    ("GET", "/api/v1/statements"): _rule(Action.READ_SETTLEMENTS, *_ERP),
    ("GET", "/api/v1/statements.csv"): _rule(Action.READ_SETTLEMENTS, *_ERP),
    ("GET", "/api/v1/statements.xlsx"): _rule(Action.READ_SETTLEMENTS, *_ERP),
    # Webhook endpoints: a key's own (the service answers 404 for another key's).
    ("POST", "/api/v1/webhooks"): _rule(Action.RECEIVE_WEBHOOK, *_ERP),
    ("GET", "/api/v1/webhooks"): _rule(Action.RECEIVE_WEBHOOK, *_ERP),
    ("GET", "/api/v1/webhooks/{endpoint_id}"): _rule(Action.RECEIVE_WEBHOOK, *_ERP),
    ("DELETE", "/api/v1/webhooks/{endpoint_id}"): _rule(Action.RECEIVE_WEBHOOK, *_ERP),
    ("POST", "/api/v1/webhooks/{endpoint_id}/rotate"): _rule(Action.RECEIVE_WEBHOOK, *_ERP),
    ("POST", "/api/v1/webhooks/{endpoint_id}/disable"): _rule(Action.RECEIVE_WEBHOOK, *_ERP),
    ("POST", "/api/v1/webhooks/{endpoint_id}/enable"): _rule(Action.RECEIVE_WEBHOOK, *_ERP),
    ("GET", "/api/v1/webhooks/{endpoint_id}/deliveries"): _rule(Action.RECEIVE_WEBHOOK, *_ERP),
    ("POST", "/api/v1/webhooks/{endpoint_id}/replay"): _rule(Action.RECEIVE_WEBHOOK, *_ERP),
    # Scan-to-open: a person at the cabinet proves a phone (nonce from the screen, then an OTP
    # or WeChat) and becomes a recipient bound to that cabinet and that phone's parcels. The
    # door it opens is a recipient's own pickup, not a remote open by staff: its trace is the
    # parcel's timeline (picked up, method qr) and the command outbox, not the audit log.
    ("POST", "/api/v1/scan/{cab}/{nonce}/otp"): _rule(Action.SCAN_TO_OPEN, K.ANYONE),
    ("POST", "/api/v1/scan/{cab}/{nonce}/verify"): _rule(Action.SCAN_TO_OPEN, K.ANYONE),
    ("GET", "/api/v1/scan/{cab}/{nonce}/wechat"): _rule(Action.SCAN_TO_OPEN, K.ANYONE),
    ("GET", "/api/v1/scan/{cab}/wechat/callback"): _rule(Action.SCAN_TO_OPEN, K.ANYONE),
    ("POST", "/api/v1/scan/{cab}/session"): _rule(Action.READ_PARCEL, K.RECIPIENT),
    ("POST", "/api/v1/scan/{cab}/open"): _rule(Action.PICK_UP, K.RECIPIENT),
    ("GET", "/s/{cab}/{nonce}"): _rule(Action.SCAN_TO_OPEN, K.ANYONE, why="the QR's page"),
    ("GET", "/pickup/{cab}"): _rule(Action.SCAN_TO_OPEN, K.ANYONE, why="a notice's link"),
    # Renders the QR of a code the recipient already holds: it proves nothing by itself.
    ("POST", "/pickup/{cab}/qr"): _rule(Action.PICK_UP, K.RECIPIENT),
    # Prometheus with the metrics token; 404 when no token is configured (docs/metrics.md).
    ("GET", "/metrics"): _rule(Action.READ_METRICS, K.MONITOR),
    ("POST", "/api/v1/callbacks/twilio/status"): _rule(Action.PROVIDER_CALLBACK, K.PROVIDER),
    ("GET", "/api/v1/wechat/push"): _rule(Action.PROVIDER_CALLBACK, K.PROVIDER),
    ("POST", "/api/v1/wechat/push"): _rule(Action.PROVIDER_CALLBACK, K.PROVIDER),
    # The operations console (docs/console.md): a signed-in account; each page checks `decide`.
    ("GET", "/console"): _rule(Action.READ_HEALTH, K.ANYONE, why="redirects to a page"),
    ("GET", "/console/sign-in"): _rule(Action.READ_HEALTH, K.ANYONE, why="the sign-in form"),
    ("POST", "/console/sign-in"): _rule(Action.READ_HEALTH, K.ANYONE, why="signs in"),
    ("POST", "/console/sign-out"): _rule(Action.READ_HEALTH, *_ACCOUNTS),
    ("GET", "/console/static/{name}"): _rule(Action.READ_HEALTH, K.ANYONE, why="css and js"),
    ("GET", "/console/lang/{lang}"): _rule(Action.READ_HEALTH, K.ANYONE, why="a cookie"),
    ("GET", "/console/fleet"): _rule(Action.READ_CABINET, *_STAFF),
    ("GET", "/console/cabinets/{cab}"): _rule(Action.READ_CABINET, *_STAFF),
    ("GET", "/console/cabinets/{cab}/live"): _rule(Action.READ_CABINET, *_STAFF),
    # The confirmation step of an act; the act itself (POST) checks its own action.
    ("GET", "/console/cabinets/{cab}/doors/{door}/{act}"): _rule(Action.READ_CABINET, *_STAFF),
    ("POST", "/console/cabinets/{cab}/doors/{door}/{act}"): _rule(
        Action.OPEN_DOOR_REMOTELY, *_STAFF
    ),
    ("GET", "/console/audit"): _rule(Action.READ_AUDIT, *_STAFF),
    ("GET", "/console/audit.csv"): _rule(Action.READ_AUDIT, *_STAFF),
    ("GET", "/console/couriers"): _rule(Action.READ_COURIERS, K.OPERATOR_ADMIN, K.CARRIER),
    ("GET", "/console/alarms"): _rule(Action.READ_ALARMS, *_STAFF),
    ("GET", "/console/alarms.csv"): _rule(Action.READ_ALARMS, *_STAFF),
    ("GET", "/console/alarms/live"): _rule(Action.READ_ALARMS, *_STAFF),
    ("POST", "/console/alarms/{alarm_id}/acknowledge"): _rule(Action.HANDLE_ALARMS, *_STAFF),
    ("POST", "/console/alarms/{alarm_id}/resolve"): _rule(Action.HANDLE_ALARMS, *_STAFF),
    ("GET", "/console/parcels"): _rule(Action.READ_PARCEL, *_ACCOUNTS),
    ("GET", "/console/parcels.csv"): _rule(Action.READ_PARCEL, *_ACCOUNTS),
    ("GET", "/console/parcels/aged"): _rule(Action.READ_PARCEL, *_ACCOUNTS),
    ("GET", "/console/parcels/aged.csv"): _rule(Action.READ_PARCEL, *_ACCOUNTS),
    ("GET", "/console/parcels/{parcel_row_id}"): _rule(Action.READ_PARCEL, *_ACCOUNTS),
    ("GET", "/console/reports"): _rule(Action.READ_REPORTS, *_STAFF),
    ("GET", "/console/reports/{key}.csv"): _rule(Action.READ_REPORTS, *_STAFF),
    ("GET", "/console/statements"): _rule(Action.READ_SETTLEMENTS, K.OPERATOR_ADMIN, K.CARRIER),
    ("GET", "/console/statements.csv"): _rule(Action.READ_SETTLEMENTS, K.OPERATOR_ADMIN, K.CARRIER),
    ("GET", "/console/statements.xlsx"): _rule(
        Action.READ_SETTLEMENTS, K.OPERATOR_ADMIN, K.CARRIER
    ),
    ("GET", "/console/vendor/{name}"): _rule(Action.READ_HEALTH, K.ANYONE, why="ECharts, charts"),
}


def iter_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """Yield (method, full path, route) for every route, inside included routers too."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:  # FastAPI >= 0.120 keeps an included router as one route
            yield from iter_routes(original.routes, prefix + route.include_context.prefix)
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                yield method, prefix + route.path, route


# --- ERP clients ----------------------------------------------------------------------------------


def erp_principal_of(key: queries.ErpKey, site_ids: frozenset[str]) -> Principal:
    """Return the principal an ERP key acts as; ValueError for a key bound to nothing."""
    return Principal(
        K.ERP_CLIENT,
        key.id,
        site_ids=site_ids,
        carrier_id=key.carrier_id,
        merchant_id=key.merchant_id,
    )


UNBOUND_KEY = (
    "this X-API-Key is bound to no carrier or merchant: ask the operator for a new key "
    "(`locker cloud erp-key add --carrier C | --merchant M --site S`)"
)


UNKNOWN_KEY = "unknown or revoked X-API-Key"


def _read_principal(engine: Engine, key: str) -> Principal:
    with Session(engine) as session:
        found = queries.live_key_binding(session=session, key=key)
    if found is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, UNKNOWN_KEY)
    row, site_ids = found
    try:
        return erp_principal_of(row, site_ids)
    except ValueError:
        raise HTTPException(status.HTTP_403_FORBIDDEN, UNBOUND_KEY) from None


def cached_erp_principal(cache: PrincipalCache, key: str) -> tuple[Principal | None, bool]:
    """The principal `key` was found to act for within the cache's bound, if it is still kept
    (None: only `get_erp_principal` may tell, reading the key), and whether this caller must
    re-read it now with `read_erp_principal` (the cache's refresh-ahead, cloud/api/key_cache.py)."""
    return cache.lookup(queries.hash_api_key(key))


def read_erp_principal(cache: PrincipalCache, engine: Engine, key: str) -> Principal:
    """Read `key`'s principal from the database and keep it in `cache` (a miss, or the refresh
    this caller was told to make). Raises the refusal (401/403) of a key that is unknown, revoked
    or bound to nothing, and forgets it: from then on every request reads it again, and is
    refused. Blocking: run it in a worker thread."""
    key_hash = queries.hash_api_key(key)
    # The entry's bound runs from when the read began: whatever the read finds was true then.
    began = cache.clock()
    try:
        principal = _read_principal(engine, key)
    except HTTPException:
        cache.drop(key_hash)
        raise
    except BaseException:
        cache.release(key_hash)
        raise
    cache.put(key_hash, principal, read_at=began)
    return principal


async def get_erp_principal(request: Request, key: ApiKeyDep) -> Principal:
    """The ERP client a request's X-API-Key acts for: 401 for an unknown or revoked key, 403 for
    a legacy key bound to nothing. Kept a few seconds per process (cloud/api/key_cache.py), so
    most requests read nothing here and stay on the event loop."""
    state = request.app.state
    principal, refresh = cached_erp_principal(state.principals, key)
    if principal is None or refresh:
        principal = await run_in_threadpool(
            read_erp_principal, state.principals, state.read_engine, key
        )
    return principal


ErpPrincipalDep = Annotated[Principal, Depends(get_erp_principal)]


def enforce(decision: Decision, not_found: str) -> None:
    """Raise the HTTP refusal of a refused decision: 404 with `not_found` (the same words as
    for a missing resource), or 403 with the decision's reason."""
    if decision.allowed:
        return
    if decision.http_status == status.HTTP_404_NOT_FOUND:
        raise HTTPException(status.HTTP_404_NOT_FOUND, not_found)
    raise HTTPException(status.HTTP_403_FORBIDDEN, decision.reason)
