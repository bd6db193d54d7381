"""The fleet's figures as the database holds them, for the API's `/metrics` (cloud.metrics).

Each query reads a table of the fleet's size (cabinets, compartments) or a partial index of
what is still to do, never the history, which grows without bound: cabinets by presence,
compartments faulted or out of service, events stored but not applied yet (the partial index
`ix_events_unapplied`), commands still in play (`ix_command_outbox_due`), notices and webhook
deliveries not settled (the `status` prefix of their due indexes: the `sent` and `delivered`
rows, the bulk of both tables, are never read), open alarms by kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, text
from sqlmodel import Session, col, select

from cloud.db.models import (
    COMMANDS_IN_PLAY,
    EVENTS_UNAPPLIED,
    Alarm,
    Cabinet,
    CommandOutbox,
    Compartment,
    InboxEvent,
    NoticeOutbox,
)
from cloud.db.webhook_models import WebhookDelivery

# Outbox states worth a gauge: what is still to do or needs a person. `sent` / `delivered` rows
# are history (millions of them), counted by the workers' counters as they happen instead.
NOTICE_STATUSES = ("queued", "sending", "unknown", "failed")
WEBHOOK_STATUSES = ("pending", "dead")
# The event types that raise an alarm (`cloud.services.ingest`): each gets a series, 0 or not,
# so an alert on one never sees "no data".
ALARM_KINDS = ("door.left_open", "door.forced", "lock.fault", "keypad.lockout")


@dataclass(frozen=True)
class FleetRows:
    """Raw counts and oldest timestamps, as read in one transaction."""

    cabinets: dict[str, int]  # presence (online | offline | never_seen) -> cabinets
    compartments_faulted: int
    compartments_out_of_service: int
    events_unapplied: int
    oldest_unapplied_received_at: datetime | None
    commands_pending: int
    commands_pending_resent: int  # of those, sent more than once
    oldest_pending_command_at: datetime | None
    notices: dict[str, int] = field(default_factory=dict)  # status -> rows
    webhook_deliveries: dict[str, int] = field(default_factory=dict)  # status -> rows
    alarms_open: dict[str, int] = field(default_factory=dict)  # kind -> open alarms


def fleet_rows(*, session: Session, now: datetime) -> FleetRows:
    """Read every fleet figure; `now` decides which commands in play have expired."""
    presence = {"online": 0, "offline": 0, "never_seen": 0}
    for online, count in session.exec(
        select(Cabinet.online, func.count()).group_by(Cabinet.online)
    ).all():
        presence["never_seen" if online is None else "online" if online else "offline"] += count

    faulted, out_of_service = session.exec(
        select(
            func.count().filter(Compartment.state == "faulted"),
            func.count().filter(col(Compartment.in_service).is_(False)),
        )
    ).one()

    unapplied, oldest_event = session.exec(
        select(func.count(), func.min(InboxEvent.received_at)).where(text(EVENTS_UNAPPLIED))
    ).one()

    pending, resent, oldest_command = session.exec(
        select(
            func.count(),
            func.count().filter(col(CommandOutbox.send_count) > 1),
            func.min(CommandOutbox.created_at),
        ).where(text(COMMANDS_IN_PLAY), col(CommandOutbox.expires_at) > now)
    ).one()

    notices = dict.fromkeys(NOTICE_STATUSES, 0)
    for status, count in session.exec(
        select(NoticeOutbox.status, func.count())
        .where(col(NoticeOutbox.status).in_(NOTICE_STATUSES))
        .group_by(NoticeOutbox.status)
    ).all():
        notices[status] = count

    deliveries = dict.fromkeys(WEBHOOK_STATUSES, 0)
    for status, count in session.exec(
        select(WebhookDelivery.status, func.count())
        .where(col(WebhookDelivery.status).in_(WEBHOOK_STATUSES))
        .group_by(WebhookDelivery.status)
    ).all():
        deliveries[status] = count

    alarms = dict.fromkeys(ALARM_KINDS, 0)
    alarms |= dict(
        session.exec(
            select(Alarm.kind, func.count())
            .where(col(Alarm.cleared_at).is_(None))
            .group_by(Alarm.kind)
        ).all()
    )
    return FleetRows(
        cabinets=presence,
        compartments_faulted=faulted or 0,
        compartments_out_of_service=out_of_service or 0,
        events_unapplied=unapplied or 0,
        oldest_unapplied_received_at=oldest_event,
        commands_pending=pending or 0,
        commands_pending_resent=resent or 0,
        oldest_pending_command_at=oldest_command,
        notices=notices,
        webhook_deliveries=deliveries,
        alarms_open=alarms,
    )
