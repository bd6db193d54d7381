"""The webhook tables' queries: endpoints by key, fan-out of the outbox, due deliveries in order,
the delivery log and replays."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, delete, exists, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from cloud.db.models import Parcel, WebhookOutbox
from cloud.db.webhook_models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
ACTIVE, DISABLED = "active", "disabled"
OUTBOX_QUEUED, OUTBOX_DISPATCHED = "queued", "dispatched"


def endpoints_of_key(*, session: Session, key_id: str) -> list[WebhookEndpoint]:
    """A key's endpoints, oldest first."""
    statement = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.key_id == key_id)
        .order_by(col(WebhookEndpoint.created_at), col(WebhookEndpoint.id))
    )
    return list(session.exec(statement))


def endpoint_of_key(*, session: Session, key_id: str, endpoint_id: str) -> WebhookEndpoint | None:
    """The endpoint if it is this key's; None otherwise (another key's looks like a missing one)."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.key_id != key_id:
        return None
    return endpoint


def queued_outbox(*, session: Session, limit: int) -> list[tuple[WebhookOutbox, str | None]]:
    """The oldest queued outbox rows with their parcel's owner key."""
    statement = (
        select(WebhookOutbox, Parcel.owner_key_id)
        .join(Parcel, col(Parcel.id) == col(WebhookOutbox.parcel_row_id))
        .where(WebhookOutbox.status == OUTBOX_QUEUED)
        .order_by(col(WebhookOutbox.id))
        .limit(limit)
    )
    return [(row, key) for row, key in session.exec(statement)]


def mark_dispatched(*, session: Session, outbox_ids: list[int], now: datetime) -> set[int]:
    """Move these outbox rows from queued to dispatched; return the ids this call moved.

    One statement for the batch (a statement a row cost the worker a quarter of its CPU under
    load); a row another worker moved meanwhile is left out of the answer.
    """
    if not outbox_ids:
        return set()
    table = WebhookOutbox.__table__  # Core, not the ORM: no session objects to synchronise
    result = session.connection().execute(
        update(table)
        .where(table.c.id.in_(outbox_ids), table.c.status == OUTBOX_QUEUED)
        .values(status=OUTBOX_DISPATCHED, delivered_at=now)
        .returning(table.c.id)
    )
    return {outbox_id for (outbox_id,) in result}


def due_heads(
    *, session: Session, now: datetime, skip: set[int], limit: int
) -> list[WebhookDelivery]:
    """The oldest due pending deliveries that are each first in their (endpoint, parcel) line:
    a parcel's next event waits while an earlier one to the same endpoint is still pending (so
    no two of them are of one line)."""
    earlier = aliased(WebhookDelivery)
    statement = (
        select(WebhookDelivery)
        .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
        .where(
            WebhookDelivery.status == PENDING,
            col(WebhookDelivery.next_attempt_at) <= now,
            WebhookEndpoint.status == ACTIVE,
            ~exists().where(
                and_(
                    earlier.endpoint_id == WebhookDelivery.endpoint_id,
                    earlier.parcel_row_id == WebhookDelivery.parcel_row_id,
                    earlier.status == PENDING,
                    col(earlier.id) < col(WebhookDelivery.id),
                )
            ),
        )
        .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
        .limit(limit)
    )
    if skip:
        statement = statement.where(col(WebhookDelivery.id).not_in(skip))
    return list(session.exec(statement))


def claim(*, session: Session, delivery: WebhookDelivery, until: datetime) -> bool:
    """Lease a delivery by moving its next attempt to `until`, if nobody moved it since it was
    read (two workers never send the same delivery at once)."""
    result = session.execute(
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.id) == delivery.id,
            col(WebhookDelivery.status) == PENDING,
            col(WebhookDelivery.next_attempt_at) == delivery.next_attempt_at,
        )
        .values(next_attempt_at=until)
    )
    return result.rowcount == 1


def deliveries_of(
    *, session: Session, endpoint_id: str, limit: int, before_id: int | None = None
) -> list[WebhookDelivery]:
    """An endpoint's deliveries, newest first."""
    statement = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if before_id is not None:
        statement = statement.where(col(WebhookDelivery.id) < before_id)
    return list(session.exec(statement.order_by(col(WebhookDelivery.id).desc()).limit(limit)))


def attempts_of(*, session: Session, delivery_ids: list[int]) -> list[WebhookAttempt]:
    """The attempts of these deliveries, oldest first."""
    if not delivery_ids:
        return []
    statement = (
        select(WebhookAttempt)
        .where(col(WebhookAttempt.delivery_id).in_(delivery_ids))
        .order_by(col(WebhookAttempt.id))
    )
    return list(session.exec(statement))


def deliveries_between(
    *, session: Session, endpoint_id: str, since: datetime, until: datetime
) -> list[WebhookDelivery]:
    """An endpoint's deliveries created in [since, until), oldest first."""
    statement = (
        select(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            col(WebhookDelivery.created_at) >= since,
            col(WebhookDelivery.created_at) < until,
        )
        .order_by(col(WebhookDelivery.id))
    )
    return list(session.exec(statement))


def prune_delivered(*, session: Session, before: datetime, limit: int) -> int:
    """Delete up to `limit` deliveries delivered before `before`, with their attempts, and the
    dispatched outbox rows older than that no delivery refers to any more; return how many
    deliveries went. Pending and dead ones stay (they may still be sent or replayed)."""
    ids = list(
        session.exec(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == DELIVERED,
                col(WebhookDelivery.delivered_at) < before,
            )
            .order_by(col(WebhookDelivery.id))
            .limit(limit)
        )
    )
    if ids:
        session.execute(delete(WebhookAttempt).where(col(WebhookAttempt.delivery_id).in_(ids)))
        session.execute(delete(WebhookDelivery).where(col(WebhookDelivery.id).in_(ids)))
    referred = select(WebhookDelivery.id).where(
        col(WebhookDelivery.outbox_id) == col(WebhookOutbox.id)
    )
    session.execute(
        delete(WebhookOutbox).where(
            col(WebhookOutbox.status) == OUTBOX_DISPATCHED,
            col(WebhookOutbox.created_at) < before,
            ~exists(referred),
        )
    )
    return len(ids)
