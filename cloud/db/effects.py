"""The core's decisions written in the caller's transaction: timeline, command, notice and
webhook rows."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlmodel import Session

from cloud.core import parcels as core
from cloud.core.policies import SitePolicy
from cloud.db.commands import enqueue_command, supersede_codes_puts
from cloud.db.models import (
    Parcel,
    ParcelEvent,
    WebhookOutbox,
)
from cloud.db.notices import enqueue_notice
from cloud.db.outbox_signal import mark_webhook_row
from protocol.messages import CodeEntry, ParcelIdsData, PutCodesData


def write_effects(
    *,
    session: Session,
    parcel_row: Parcel,
    effects: Iterable[core.Effect],
    policy: SitePolicy,
    seal_key: bytes,
    now: datetime,
    cab: str | None = None,
    seq: int | None = None,
) -> None:
    """Write a transition's effects: timeline rows, command, notice and webhook outbox rows.

    Call it in the same transaction as the parcel row's change, so the outboxes hold exactly
    what the change caused. Notices are inserted once by dedupe key: a replay adds nothing.
    """
    session.flush()  # the parcel row must exist before rows that refer to it
    for effect in effects:
        match effect:
            case core.TimelineEntry():
                session.add(
                    ParcelEvent(**timeline_values(parcel_row.id, effect, now=now, cab=cab, seq=seq))
                )
            case core.CodesPut():
                data = codes_put_data(effect)
                command = enqueue_command(
                    session=session,
                    cab=effect.cabinet_id,
                    type="codes.put",
                    data=data,
                    now=now,
                    parcel_id=effect.parcel_id,
                )
                supersede_codes_puts(
                    session=session, command=command, parcel_ids=[effect.parcel_id]
                )
            case core.CodesRevoke():
                data = ParcelIdsData(parcel_ids=list(effect.parcel_ids))
                command = enqueue_command(
                    session=session, cab=effect.cabinet_id, type="codes.revoke", data=data, now=now
                )
                supersede_codes_puts(
                    session=session, command=command, parcel_ids=list(effect.parcel_ids)
                )
            case core.RetrievalsPut():
                data = ParcelIdsData(parcel_ids=list(effect.parcel_ids))
                enqueue_command(
                    session=session,
                    cab=effect.cabinet_id,
                    type="retrievals.put",
                    data=data,
                    now=now,
                )
            case core.Notify():
                enqueue_notice(
                    session=session,
                    parcel_row_id=parcel_row.id,
                    notify=effect,
                    policy=policy,
                    seal_key=seal_key,
                    now=now,
                )
            case core.Webhook():
                # Only an ERP's announcement gives a parcel an owner key, and only an owner
                # key's endpoints are sent its events: a row for a parcel without one would be
                # written, read by the fan-out and marked dispatched to nobody.
                if parcel_row.owner_key_id is not None:
                    session.add(WebhookOutbox(**webhook_values(parcel_row.id, effect, now=now)))
                    mark_webhook_row(session)  # its commit wakes this process's webhook sender
            case _:  # pragma: no cover - a new effect type must be handled here
                raise TypeError(f"unknown effect {type(effect).__name__}")


def timeline_values(
    parcel_row_id: str,
    effect: core.TimelineEntry,
    *,
    now: datetime,
    cab: str | None,
    seq: int | None,
) -> dict[str, Any]:
    """Return a `parcel_events` row's columns (but its id) for a timeline entry."""
    return {
        "parcel_row_id": parcel_row_id,
        "status": effect.status.value,
        "at": effect.at,
        "source": effect.source.value,
        "note": effect.note[:2000],
        "cabinet_id": cab,
        "seq": seq,
        "created_at": now,
    }


def codes_put_data(effect: core.CodesPut) -> PutCodesData:
    """Return the `codes.put` command's data for one parcel's code."""
    entry = CodeEntry(
        parcel_id=effect.parcel_id,
        compartment=effect.compartment,
        code_hash=effect.code_hash,
        expires_at=effect.expires_at,
    )
    return PutCodesData(entries=[entry])


def webhook_values(parcel_row_id: str, effect: core.Webhook, *, now: datetime) -> dict[str, Any]:
    """Return a `webhook_outbox` row's columns (but its id and defaults) for a webhook."""
    return {
        "parcel_row_id": parcel_row_id,
        "event": effect.status.value,
        "payload": {
            "status": effect.status.value,
            "erp_state": effect.erp_state.value,
            # The same state as a Chinese ERP and a ShipX integrator name it (docs/parcel-life.md).
            "order_state": core.order_state(effect.status).zh,
            "shipx_status": core.order_state(effect.status).shipx,
            "at": effect.at.isoformat(),
            "tracking_no": effect.tracking_no,
            "order_no": effect.order_no,
            "parcel_id": effect.parcel_id,
            "cabinet_id": effect.cabinet_id,
        },
        "next_attempt_at": now,
        "created_at": now,
    }
