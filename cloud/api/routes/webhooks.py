"""`/webhooks`: an ERP key's endpoints for signed status events (Standard Webhooks), their
delivery log and replays. A key sees and changes only its own endpoints (another's is a 404)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, Field

from cloud.api.access import ErpPrincipalDep
from cloud.api.deps import NowDep, SessionDep, SettingsDep
from cloud.api.schemas import error_responses
from cloud.core import webhooks as core
from cloud.services import webhooks

router = APIRouter(tags=["webhooks"])


class WebhookCreate(BaseModel):
    url: str = Field(
        max_length=2000,
        description="An https URL with a public address (hosts in the operator's allow-list "
        "excepted); redirects are not followed",
        examples=["https://erp.example.com/hooks/lockers"],
    )
    event_types: list[str] = Field(
        min_length=1,
        max_length=len(core.EVENT_TYPES) + 1,
        description=f"Any of {', '.join(core.EVENT_TYPES)}, or '*' for all",
        examples=[["parcel.in_locker", "parcel.picked_up"]],
    )


class WebhookPublic(BaseModel):
    id: str
    url: str
    event_types: list[str]
    status: str = Field(description="active, or disabled (see disabled_reason)")
    disabled_reason: str | None
    failing_since: datetime | None
    previous_secret_until: datetime | None = Field(
        description="After a rotation: the old secret signs too until then"
    )
    created_at: datetime


class WebhookWithSecret(WebhookPublic):
    secret: str = Field(
        description="The signing secret (`whsec_...`): shown only now, keep it; verify each "
        "request with a Standard Webhooks library"
    )


class AttemptPublic(BaseModel):
    at: datetime
    status_code: int | None = Field(description="The receiver's answer; null: none came")
    latency_ms: int
    error: str | None


class DeliveryPublic(BaseModel):
    id: int
    webhook_id: str = Field(description="The `webhook-id` header: the same on every retry")
    event_type: str
    status: str = Field(description="pending, delivered, or dead (retries ran out)")
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    log: list[AttemptPublic]


class WebhookList(BaseModel):
    items: list[WebhookPublic]


class DeliveryPage(BaseModel):
    items: list[DeliveryPublic] = Field(description="Newest first")
    next_before_id: int | None = Field(
        description="Pass as `before_id` for the next (older) page; null: this is the last"
    )


class ReplayRequest(BaseModel):
    delivery_id: int | None = Field(default=None, description="One delivery to send again")
    since: datetime | None = Field(default=None, description="Or all created from then ...")
    until: datetime | None = Field(default=None, description="... until then (exclusive)")


class ReplayPublic(BaseModel):
    queued: list[int] = Field(description="The deliveries queued to be sent again now")


def _public(endpoint: webhooks.Endpoint) -> dict:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "event_types": endpoint.event_types,
        "status": endpoint.status,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": endpoint.failing_since,
        "previous_secret_until": endpoint.previous_until,
        "created_at": endpoint.created_at,
    }


def _resolver(request: Request) -> webhooks.Resolver:
    return getattr(request.app.state, "webhook_resolve", webhooks.system_resolve)


@router.post(
    "/webhooks",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookWithSecret,
    responses=error_responses(401, 403, 422),
)
def register_webhook(
    body: WebhookCreate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    principal: ErpPrincipalDep,
) -> dict:
    """Register an endpoint for this key's parcels' events; the answer holds its signing
    secret, shown only this once."""
    created = webhooks.register(
        session=session,
        key_id=principal.id,
        url=body.url,
        event_types=body.event_types,
        seal_key=settings.require_secret_key(),
        allow=webhooks.allow_hosts(settings.webhook_allow_hosts),
        resolve=_resolver(request),
        now=now,
    )
    return {**_public(created.endpoint), "secret": created.secret}


@router.get("/webhooks", response_model=WebhookList, responses=error_responses(401, 403, 422))
def list_webhooks(session: SessionDep, principal: ErpPrincipalDep) -> dict:
    """This key's endpoints (never their secrets)."""
    return {"items": [_public(e) for e in webhooks.listed(session=session, key_id=principal.id)]}


@router.get(
    "/webhooks/{endpoint_id}",
    response_model=WebhookPublic,
    responses=error_responses(401, 403, 404, 422),
)
def get_webhook(endpoint_id: str, session: SessionDep, principal: ErpPrincipalDep) -> dict:
    """One of this key's endpoints."""
    return _public(webhooks.get(session=session, key_id=principal.id, endpoint_id=endpoint_id))


@router.post(
    "/webhooks/{endpoint_id}/rotate",
    response_model=WebhookWithSecret,
    responses=error_responses(401, 403, 404, 422),
)
def rotate_webhook_secret(
    endpoint_id: str,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    principal: ErpPrincipalDep,
) -> dict:
    """A new signing secret (shown once). For 24 hours each request carries two signatures,
    by the old and the new secret, so the receiver can switch without losing one."""
    created = webhooks.rotate(
        session=session,
        key_id=principal.id,
        endpoint_id=endpoint_id,
        seal_key=settings.require_secret_key(),
        now=now,
    )
    return {**_public(created.endpoint), "secret": created.secret}


@router.post(
    "/webhooks/{endpoint_id}/disable",
    response_model=WebhookPublic,
    responses=error_responses(401, 403, 404, 422),
)
def disable_webhook(endpoint_id: str, session: SessionDep, principal: ErpPrincipalDep) -> dict:
    """Stop sending to this endpoint; its events wait (none are lost) until it is enabled."""
    endpoint = webhooks.set_enabled(
        session=session, key_id=principal.id, endpoint_id=endpoint_id, enabled=False
    )
    return _public(endpoint)


@router.post(
    "/webhooks/{endpoint_id}/enable",
    response_model=WebhookPublic,
    responses=error_responses(401, 403, 404, 422),
)
def enable_webhook(endpoint_id: str, session: SessionDep, principal: ErpPrincipalDep) -> dict:
    """Send to this endpoint again (after it was disabled by its owner or for failing)."""
    endpoint = webhooks.set_enabled(
        session=session, key_id=principal.id, endpoint_id=endpoint_id, enabled=True
    )
    return _public(endpoint)


@router.delete(
    "/webhooks/{endpoint_id}",
    response_model=WebhookPublic,
    responses=error_responses(401, 403, 404, 422),
)
def delete_webhook(endpoint_id: str, session: SessionDep, principal: ErpPrincipalDep) -> dict:
    """Remove the endpoint with its delivery log; the answer is what it was (status
    `deleted`)."""
    endpoint = webhooks.get(session=session, key_id=principal.id, endpoint_id=endpoint_id)
    shown = {**_public(endpoint), "status": "deleted"}
    webhooks.delete(session=session, key_id=principal.id, endpoint_id=endpoint_id)
    return shown


@router.get(
    "/webhooks/{endpoint_id}/deliveries",
    response_model=DeliveryPage,
    responses=error_responses(401, 403, 404, 422),
)
def list_deliveries(
    endpoint_id: str,
    session: SessionDep,
    principal: ErpPrincipalDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before_id: Annotated[int | None, Query(description="Page: deliveries older than this")] = None,
) -> dict:
    """The endpoint's delivery log, newest first: each event's status and every attempt (the
    receiver's status code, latency, error)."""
    logged = webhooks.deliveries(
        session=session,
        key_id=principal.id,
        endpoint_id=endpoint_id,
        limit=limit,
        before_id=before_id,
    )
    items = [
        {
            "id": item.delivery.id,
            "webhook_id": f"msg_{item.delivery.outbox_id}",
            "event_type": item.event,
            "status": item.delivery.status,
            "attempts": item.delivery.attempts,
            "next_attempt_at": item.delivery.next_attempt_at
            if item.delivery.status == "pending"
            else None,
            "created_at": item.delivery.created_at,
            "delivered_at": item.delivery.delivered_at,
            "last_error": item.delivery.last_error,
            "log": [
                {
                    "at": a.at,
                    "status_code": a.status_code,
                    "latency_ms": a.latency_ms,
                    "error": a.error,
                }
                for a in item.attempts
            ],
        }
        for item in logged
    ]
    more = len(items) == limit
    return {"items": items, "next_before_id": items[-1]["id"] if more else None}


@router.post(
    "/webhooks/{endpoint_id}/replay",
    response_model=ReplayPublic,
    responses=error_responses(401, 403, 404, 422),
)
def replay_deliveries(
    endpoint_id: str,
    body: ReplayRequest,
    session: SessionDep,
    now: NowDep,
    principal: ErpPrincipalDep,
) -> dict:
    """Send again one delivery (`delivery_id`) or those created in [`since`, `until`), at most
    1000, with their original `webhook-id`, in order per parcel."""
    queued = webhooks.replay(
        session=session,
        key_id=principal.id,
        endpoint_id=endpoint_id,
        delivery_id=body.delivery_id,
        since=body.since,
        until=body.until,
        now=now,
    )
    return {"queued": queued}
