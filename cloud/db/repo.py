"""Keyword-only data functions over the cloud's tables: services call these, routes never query."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic_core import PydanticUndefined
from sqlalchemy import Column, Table, delete, func, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, SQLModel, col, select
from ulid import ULID

from cloud.core import parcels as core
from cloud.core.notices import NoticeKind, send_after
from cloud.core.pauses import Pause, PauseReason
from cloud.core.policies import Language, SitePolicy
from cloud.db import bulk
from cloud.db.engine import write_session
from cloud.db.models import (
    Cabinet,
    CabinetCreate,
    CommandOutbox,
    Compartment,
    InboxEvent,
    NoticeOutbox,
    Parcel,
    ParcelEvent,
    Site,
    SiteCreate,
    WebhookOutbox,
    WechatBinding,
)
from cloud.db.sealing import SealError, seal, seal_bytes, unseal_bytes
from protocol.messages import CodeEntry, ParcelIdsData, PutCodesData

# A command the cabinet has not acked by then is dropped by it and no longer resent by us: a week
# covers any realistic outage, and a stale codes.put is harmless (the code's own expiry rules).
COMMAND_TTL_S = 7 * 24 * 3600

# The longest code key a cabinet may have: sealed, it still fits `cabinets.code_key` (128).
CODE_KEY_MAX_BYTES = 64

# Parcels whose pickup code a cabinet still honours: their hashes must stay unique.
LIVE_STATUSES = (core.Status.IN_LOCKER.value,)


def new_id() -> str:
    """Return a fresh, time-ordered, globally unique id (a ULID) for a cloud-made row."""
    return str(ULID())


# --- sites and cabinets ---------------------------------------------------------------------------


def create_site(*, session: Session, site_create: SiteCreate, now: datetime) -> Site:
    """Add a site; its policy is validated by `cloud.core.policies.SitePolicy` first."""
    site = Site.model_validate(site_create, update={"created_at": now})
    site_policy(site)  # refuse a bad policy here, not later in a worker
    session.add(site)
    # No ORM relationships: without a flush the unit of work may insert a cabinet first.
    session.flush()
    return site


def site_policy(site: Site) -> SitePolicy:
    """Return a site's policy as the core takes it (raises PolicyError if a value is bad)."""
    return SitePolicy(
        pickup_window_s=site.pickup_window_s,
        reminder_before_s=site.reminder_before_s,
        code_length=site.code_length,
        quiet_start=site.quiet_start,
        quiet_end=site.quiet_end,
        timezone=site.timezone,
        language=Language(site.language),
        overdue_fee_per_day_minor=site.overdue_fee_per_day_minor,
        overdue_fee_cap_minor=site.overdue_fee_cap_minor,
        currency=site.currency,
        resend_limit=site.resend_limit,
        resend_window_s=site.resend_window_s,
    )


def create_cabinet(
    *,
    session: Session,
    cabinet_create: CabinetCreate,
    code_key: bytes,
    seal_key: bytes,
    now: datetime,
) -> Cabinet:
    """Add a cabinet with its pickup-code key (the registry makes the key and MQTT password).

    The key is stored sealed under `seal_key` (the settings' secret key), never in clear.
    """
    if not code_key or len(code_key) > CODE_KEY_MAX_BYTES:
        raise ValueError(f"a cabinet's code key has 1 to {CODE_KEY_MAX_BYTES} bytes")
    sealed = seal_bytes(seal_key, code_key, context=code_key_context(cabinet_create.id))
    cabinet = Cabinet.model_validate(cabinet_create, update={"code_key": sealed, "created_at": now})
    session.add(cabinet)
    session.flush()  # its compartments refer to it (see create_site)
    return cabinet


def get_cabinet(*, session: Session, cab: str) -> Cabinet | None:
    """Return a cabinet by id."""
    return session.get(Cabinet, cab)


def lock_cabinet(*, session: Session, cab: str) -> Cabinet | None:
    """Return a cabinet's row locked for this transaction (`FOR UPDATE`; SQLite: BEGIN IMMEDIATE).

    `populate_existing` re-reads the row even if the session holds it: the cursor
    (`applied_upto`) must be the one the lock protects, not a stale copy.
    """
    statement = (
        select(Cabinet)
        .where(Cabinet.id == cab)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.exec(statement).first()


def lock_cabinets(*, session: Session, cabs: Iterable[str]) -> dict[str, Cabinet]:
    """Return the rows of the known cabinets among `cabs`, each locked for this transaction.

    The rows are locked in id order, so two transactions locking overlapping sets never
    deadlock. `FOR NO KEY UPDATE` (not `FOR UPDATE`): it still excludes every other locker of
    the cabinet, but not the foreign-key checks of rows that merely refer to it (a concurrent
    insert of the cabinet's events does not wait for it). SQLite: `BEGIN IMMEDIATE` serialises.
    """
    statement = (
        select(Cabinet)
        .where(col(Cabinet.id).in_(sorted(set(cabs))))
        .order_by(col(Cabinet.id))
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    return {cabinet.id: cabinet for cabinet in session.exec(statement)}


def sites_and_compartments(
    *, session: Session, cabs: Iterable[str], doors: Iterable[str] | None = None
) -> list[Any]:
    """Load the sites and compartments of cabinets `cabs` into the session; return them.

    `doors` limits the compartments to those ids (a set-based deposit needs no compartment row;
    loading 24 of them per cabinet cost more than the deposits). Hold on to the list while the
    session works: `session.get` then finds them without a query.
    """
    cabs = sorted(set(cabs))
    if not cabs:
        return []
    sites = select(Site).where(
        col(Site.id).in_(select(Cabinet.site_id).where(col(Cabinet.id).in_(cabs)))
    )
    loaded = list(session.exec(sites))
    wanted = None if doors is None else sorted(set(doors))
    if wanted is None or wanted:
        compartments = select(Compartment).where(col(Compartment.cabinet_id).in_(cabs))
        if wanted is not None:
            compartments = compartments.where(col(Compartment.id).in_(wanted))
        loaded += session.exec(compartments)
    return loaded


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A stored, not yet applied event as the apply step reads it (`pending_events`): the
    columns of an `InboxEvent` row, read as a plain row rather than an ORM object."""

    cabinet_id: str
    seq: int
    event_id: str
    type: str
    ts: datetime
    data: dict[str, Any]


def pending_events(
    *, session: Session, cabinets: Iterable[Cabinet], limit: int
) -> dict[str, list[StoredEvent]]:
    """Return the stored, not yet applied events of each cabinet, in seq order (one query).

    A cabinet with `limit` or more of them is left out (its caller reads it in batches), and so
    are, if the query stopped at `limit` rows, the last cabinet it read and those after it.
    """
    by_id = {cabinet.id: cabinet for cabinet in cabinets}
    if not by_id:
        return {}
    events = InboxEvent.__table__.c
    statement = (
        select(events.cabinet_id, events.seq, events.event_id, events.type, events.ts, events.data)
        .join(Cabinet, col(Cabinet.id) == events.cabinet_id)
        .where(events.cabinet_id.in_(sorted(by_id)))
        .where(events.seq > col(Cabinet.applied_upto))
        .order_by(events.cabinet_id, events.seq)
        .limit(limit)
    )
    rows = [StoredEvent(*row) for row in _core_rows(session, statement)]
    found: dict[str, list[StoredEvent]] = {cab: [] for cab in by_id}
    for row in rows:
        found[row.cabinet_id].append(row)
    if len(rows) >= limit:  # the query stopped in the last cabinet read: it and those after
        found = {cab: events for cab, events in found.items() if cab < rows[-1].cabinet_id}
    return {cab: events for cab, events in found.items() if len(events) < limit}


def pending_inbox(*, session: Session, cabinet: Cabinet, limit: int) -> Sequence[InboxEvent]:
    """Return up to `limit` of a cabinet's stored events past its `applied_upto`, in seq order."""
    return session.exec(
        select(InboxEvent)
        .where(InboxEvent.cabinet_id == cabinet.id, InboxEvent.seq > cabinet.applied_upto)
        .order_by(col(InboxEvent.seq))
        .limit(limit)
    ).all()


def pending_seqs(*, session: Session, cabinet: Cabinet) -> Sequence[int]:
    """Return the seqs of every stored event of a cabinet past its `applied_upto`."""
    return session.exec(
        select(InboxEvent.seq).where(
            InboxEvent.cabinet_id == cabinet.id, InboxEvent.seq > cabinet.applied_upto
        )
    ).all()


def stored_event_ids(*, session: Session, cab: str, seqs: Iterable[int]) -> dict[int, str]:
    """Return the event id stored under each of a cabinet's `seqs` that holds one."""
    return dict(
        session.exec(
            select(InboxEvent.seq, InboxEvent.event_id).where(
                InboxEvent.cabinet_id == cab, col(InboxEvent.seq).in_(sorted(set(seqs)))
            )
        ).all()
    )


def compartments_of(*, session: Session, cab: str) -> dict[str, Compartment]:
    """Return a cabinet's compartments by id."""
    rows = session.exec(select(Compartment).where(Compartment.cabinet_id == cab))
    return {row.id: row for row in rows}


def cabinet_code_key(cabinet: Cabinet, *, seal_key: bytes) -> bytes:
    """Return the key a cabinet's pickup-code hashes are made with (unsealed); raise SealError."""
    return unseal_bytes(seal_key, cabinet.code_key, context=code_key_context(cabinet.id))


def seal_key_opens_code_keys(*, session: Session, seal_key: bytes) -> bool:
    """Whether `seal_key` unseals the stored code keys (checked on one cabinet; True if none).

    A process started with another secret key than the one the keys were sealed under could
    issue no code: it is told at startup rather than at the first deposit.
    """
    cabinet = session.exec(select(Cabinet).order_by(col(Cabinet.id)).limit(1)).first()
    session.rollback()
    if cabinet is None:
        return True
    try:
        cabinet_code_key(cabinet, seal_key=seal_key)
    except SealError:
        return False
    return True


def code_key_context(cab: str) -> str:
    """The associated data a cabinet's code key is sealed with: it opens for that row only."""
    return f"cabinets.code_key/{cab}"


# --- parcels --------------------------------------------------------------------------------------


def parcel_to_core(row: Parcel) -> core.Parcel:
    """Return the core's view of a parcel row."""
    return core.Parcel(
        status=core.Status(row.status),
        tracking_no=row.tracking_no,
        cabinet_id=row.cabinet_id,
        phone=row.phone,
        order_no=row.order_no,
        parcel_id=row.parcel_id,
        compartment=row.compartment,
        size=row.size,
        courier_id=row.courier_id,
        code_hash=row.code_hash,
        code_generation=row.code_generation,
        announced_at=row.announced_at,
        deposited_at=row.deposited_at,
        clock_started_at=row.clock_started_at,
        window_s=row.window_s,
        pauses=tuple(_pause_from_json(p) for p in row.pauses or ()),
        reminded_at=row.reminded_at,
        told_deadline=row.told_deadline,
        left_locker_at=row.left_locker_at,
    )


def parcel_values(parcel: core.Parcel, now: datetime) -> dict[str, Any]:
    """Return the parcel row's columns for the core's `parcel`, but its id and created_at."""
    return {
        "status": parcel.status.value,
        "tracking_no": parcel.tracking_no,
        "cabinet_id": parcel.cabinet_id,
        "phone": parcel.phone,
        "order_no": parcel.order_no,
        "parcel_id": parcel.parcel_id,
        "compartment": parcel.compartment,
        "size": parcel.size,
        "courier_id": parcel.courier_id,
        "code_hash": parcel.code_hash,
        "code_generation": parcel.code_generation,
        "announced_at": parcel.announced_at,
        "deposited_at": parcel.deposited_at,
        "clock_started_at": parcel.clock_started_at,
        "window_s": parcel.window_s,
        "pauses": [_pause_to_json(p) for p in parcel.pauses],
        "reminded_at": parcel.reminded_at,
        "told_deadline": parcel.told_deadline,
        "left_locker_at": parcel.left_locker_at,
        "updated_at": now,
    }


def new_parcel_id(parcel: core.Parcel) -> str:
    """The row id of a new parcel: the cabinet's parcel_id if it named one, else a ULID."""
    return parcel.parcel_id or new_id()


def store_parcel(
    *, session: Session, row: Parcel | None, parcel: core.Parcel, now: datetime
) -> Parcel:
    """Write the core's `parcel` into `row` (None: a new row named by its parcel_id or a ULID)."""
    if row is None:
        row = Parcel(
            id=new_parcel_id(parcel),
            tracking_no=parcel.tracking_no,
            status=parcel.status.value,
            cabinet_id=parcel.cabinet_id,
            phone=parcel.phone,
            created_at=now,
            updated_at=now,
        )
    for name, value in parcel_values(parcel, now).items():
        setattr(row, name, value)
    session.add(row)
    return row


def get_parcel_by_parcel_id(*, session: Session, parcel_id: str) -> Parcel | None:
    """Return the parcel the cabinet named `parcel_id`."""
    return session.exec(select(Parcel).where(Parcel.parcel_id == parcel_id)).first()


def find_announcement(*, session: Session, tracking_no: str) -> Parcel | None:
    """Return the announcement a deposit of `tracking_no` completes (`core.find_announcement`)."""
    rows = session.exec(
        select(Parcel).where(
            Parcel.tracking_no == tracking_no, Parcel.status == core.Status.ANNOUNCED.value
        )
    ).all()
    views = [parcel_to_core(row) for row in rows]
    found = core.find_announcement(views, tracking_no)
    # The core returns one of the views it was given: map it back to its row by identity.
    return next((row for row, view in zip(rows, views, strict=True) if view is found), None)


def announcements(*, session: Session, tracking_no: str) -> Sequence[Parcel]:
    """Return every parcel still announced with `tracking_no`, of whichever client."""
    return session.exec(
        select(Parcel)
        .where(Parcel.tracking_no == tracking_no, Parcel.status == core.Status.ANNOUNCED.value)
        .order_by(col(Parcel.id))
    ).all()


def live_parcels(
    *, session: Session, cab: str, phone: str | None = None, compartment: str | None = None
) -> Sequence[Parcel]:
    """Return a cabinet's parcels whose codes are live, optionally only `phone`'s or a door's."""
    statement = select(Parcel).where(
        Parcel.cabinet_id == cab, col(Parcel.status).in_(LIVE_STATUSES)
    )
    if phone is not None:
        statement = statement.where(Parcel.phone == phone)
    if compartment is not None:
        statement = statement.where(Parcel.compartment == compartment)
    return session.exec(statement.order_by(Parcel.created_at)).all()


def live_code_hashes(*, session: Session, cab: str) -> set[str]:
    """Return the code hashes of a cabinet's live parcels (a new code must differ from all)."""
    statement = select(Parcel.code_hash).where(
        Parcel.cabinet_id == cab,
        col(Parcel.status).in_(LIVE_STATUSES),
        col(Parcel.code_hash).is_not(None),
    )
    return {code_hash for code_hash in session.exec(statement) if code_hash}


def resend_history(*, session: Session, parcel_row_id: str) -> list[datetime]:
    """Return when resend notices of a parcel were queued (for `notices.resend_decision`)."""
    statement = select(NoticeOutbox.created_at).where(
        NoticeOutbox.parcel_row_id == parcel_row_id, NoticeOutbox.kind == NoticeKind.RESEND.value
    )
    return list(session.exec(statement))


def cabinets_holding(*, session: Session, phone: str) -> list[str]:
    """Return the cabinets holding live parcels for `phone`, by id."""
    statement = (
        select(Parcel.cabinet_id)
        .where(Parcel.phone == phone, col(Parcel.status).in_(LIVE_STATUSES))
        .distinct()
        .order_by(Parcel.cabinet_id)
    )
    return list(session.exec(statement))


# --- WeChat bindings ------------------------------------------------------------------------------


def bind_wechat(*, session: Session, openid: str, phone: str, now: datetime) -> WechatBinding:
    """Bind `openid` to `phone` (E.164), replacing what it was bound to before."""
    row = session.get(WechatBinding, openid)
    if row is None:
        row = WechatBinding(openid=openid, phone=phone, created_at=now)
    row.phone, row.created_at = phone, now
    session.add(row)
    return row


def phone_for_openid(*, session: Session, openid: str) -> str | None:
    """Return the phone a WeChat user is bound to, if any."""
    row = session.get(WechatBinding, openid)
    return row.phone if row else None


def openid_for_phone(*, session: Session, phone: str) -> str | None:
    """Return the WeChat user a phone is bound to (the latest binding if several), if any."""
    statement = (
        select(WechatBinding.openid)
        .where(WechatBinding.phone == phone)
        .order_by(col(WechatBinding.created_at).desc())
        .limit(1)
    )
    return session.exec(statement).first()


# --- effects: the core's decisions, written in the caller's transaction ---------------------------


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
                session.add(WebhookOutbox(**webhook_values(parcel_row.id, effect, now=now)))
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
            "at": _iso(effect.at),
            "tracking_no": effect.tracking_no,
            "order_no": effect.order_no,
            "parcel_id": effect.parcel_id,
            "cabinet_id": effect.cabinet_id,
        },
        "next_attempt_at": now,
        "created_at": now,
    }


def enqueue_command(
    *,
    session: Session,
    cab: str,
    type: str,
    data: Any,
    now: datetime,
    parcel_id: str | None = None,
) -> CommandOutbox:
    """Queue a command to a cabinet; `data` is the protocol's data model for `type`.

    `parcel_id` names the one parcel a `codes.put` is about, so a newer command can supersede it.
    """
    row = CommandOutbox(
        **command_values(cab=cab, type=type, data=data, now=now, parcel_id=parcel_id)
    )
    session.add(row)
    return row


def command_values(
    *, cab: str, type: str, data: Any, now: datetime, parcel_id: str | None = None
) -> dict[str, Any]:
    """Return a new `command_outbox` row's columns (but its defaults), with a fresh id."""
    return {
        "id": new_id(),
        "cabinet_id": cab,
        "type": type,
        "data": data.model_dump(mode="json"),
        "created_at": now,
        "expires_at": now + timedelta(seconds=COMMAND_TTL_S),
        "parcel_id": parcel_id,
    }


def supersede_codes_puts(
    *, session: Session, command: CommandOutbox, parcel_ids: Sequence[str]
) -> int:
    """Retire the older unacked `codes.put` of these parcels: `command` replaces or revokes them.

    Called in the transaction that queued `command`. A retired put is never sent again: resent
    after the revoke, it would give a taken, expired or cancelled parcel its code back, and
    resent after a newer put (a reissued code), it would put the old code back. Return how many.
    """
    if not parcel_ids:
        return 0
    session.flush()  # puts queued earlier in this transaction must be rows the UPDATE can see
    result = session.connection().execute(
        update(CommandOutbox)
        .where(
            col(CommandOutbox.cabinet_id) == command.cabinet_id,
            col(CommandOutbox.parcel_id).in_(list(parcel_ids)),
            col(CommandOutbox.type) == "codes.put",
            col(CommandOutbox.id) != command.id,
            col(CommandOutbox.acked_at).is_(None),
            col(CommandOutbox.ack_error).is_(None),
            col(CommandOutbox.superseded_by).is_(None),
        )
        .values(superseded_by=command.id)
    )
    return result.rowcount


def enqueue_notice(
    *,
    session: Session,
    parcel_row_id: str,
    notify: core.Notify,
    policy: SitePolicy,
    seal_key: bytes,
    now: datetime,
) -> bool:
    """Queue a notice unless its dedupe key is queued already; return whether it was added.

    The pickup code, if the notice shows one, is sealed (`cloud.db.sealing`); the dispatcher
    renders the text at send time, so the clear code never reaches the database.
    """
    added = insert_ignore(
        session=session,
        table=NoticeOutbox.__table__,
        rows=[notice_values(parcel_row_id, notify, policy=policy, seal_key=seal_key, now=now)],
        conflict_columns=["dedupe_key"],
        returning=["dedupe_key"],
    )
    return bool(added)


def notice_values(
    parcel_row_id: str, notify: core.Notify, *, policy: SitePolicy, seal_key: bytes, now: datetime
) -> dict[str, Any]:
    """Return a queued `notice_outbox` row's columns (but its id and defaults), code sealed."""
    code_sealed = seal(seal_key, notify.code, context=notify.dedupe_key) if notify.code else None
    return {
        "dedupe_key": notify.dedupe_key,
        "parcel_row_id": parcel_row_id,
        "kind": notify.kind.value,
        "audience": notify.audience.value,
        "to_phone": notify.phone,
        "courier_id": notify.courier_id,
        "deadline": notify.deadline,
        "code_sealed": code_sealed,
        "status": "queued",
        "attempts": 0,
        "next_attempt_at": send_after(notify.kind, now, policy),
        "created_at": now,
    }


def insert_ignore(
    *,
    session: Session,
    table: Table | Any,
    rows: Sequence[dict[str, Any]],
    conflict_columns: Sequence[str],
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """`INSERT ... ON CONFLICT DO NOTHING` on SQLite and PostgreSQL; return the rows inserted.

    `returning` names the columns to return for each row actually inserted (not the skipped).
    """
    session.flush()
    return bulk.insert(
        session.connection(),
        table,
        rows,
        conflict_columns=conflict_columns,
        returning=returning,
    )


def count_rows(*, session: Session, model: type[SQLModel]) -> int:
    """Return how many rows a table holds."""
    return session.exec(select(func.count()).select_from(model)).one()


# --- helpers --------------------------------------------------------------------------------------


def _pause_to_json(pause: Pause) -> dict[str, Any]:
    return {
        "reason": pause.reason.value,
        "started_at": _iso(pause.started_at),
        "ended_at": _iso(pause.ended_at) if pause.ended_at else None,
    }


def _pause_from_json(data: dict[str, Any]) -> Pause:
    ended = data.get("ended_at")
    return Pause(
        reason=PauseReason(data["reason"]),
        started_at=datetime.fromisoformat(data["started_at"]),
        ended_at=datetime.fromisoformat(ended) if ended else None,
    )


def _iso(at: datetime) -> str:
    return at.isoformat()


# --- set-based writes: many rows per statement, for the worker's batches of deposits --------------


def parcel_ids_taken(*, session: Session, parcel_ids: Iterable[str]) -> set[str]:
    """Return which of `parcel_ids` a parcel row has already."""
    wanted = sorted(set(parcel_ids))
    if not wanted:
        return set()
    statement = select(Parcel.parcel_id).where(col(Parcel.parcel_id).in_(wanted))
    return {parcel_id for (parcel_id,) in _core_rows(session, statement) if parcel_id}


def announced_tracking_nos(*, session: Session, tracking_nos: Iterable[str]) -> set[str]:
    """Return which of `tracking_nos` an announcement (status announced) waits for."""
    wanted = sorted(set(tracking_nos))
    if not wanted:
        return set()
    statement = select(Parcel.tracking_no).where(
        col(Parcel.tracking_no).in_(wanted),
        Parcel.status == core.Status.ANNOUNCED.value,
    )
    return {tracking_no for (tracking_no,) in _core_rows(session, statement)}


def live_code_hashes_of(*, session: Session, cabs: Iterable[str]) -> dict[str, set[str]]:
    """`live_code_hashes` of many cabinets in one query: {cabinet: its live code hashes}."""
    wanted = sorted(set(cabs))
    found: dict[str, set[str]] = {cab: set() for cab in wanted}
    if not wanted:
        return found
    statement = select(Parcel.cabinet_id, Parcel.code_hash).where(
        col(Parcel.cabinet_id).in_(wanted),
        col(Parcel.status).in_(LIVE_STATUSES),
        col(Parcel.code_hash).is_not(None),
    )
    for cab, code_hash in _core_rows(session, statement):
        if code_hash:
            found[cab].add(code_hash)
    return found


def _core_rows(session: Session, statement: Any) -> Any:
    """Run a select of plain columns as Core: rows as tuples, without the ORM's per-row work
    (which cost more than the query for the thousands of rows a batch reads)."""
    return session.connection().execute(statement)


def superseded_among(*, session: Session, ids: Sequence[str]) -> set[str]:
    """Return which of the commands `ids` a later command has superseded."""
    if not ids:
        return set()
    statement = select(CommandOutbox.id).where(
        col(CommandOutbox.id).in_(list(ids)), col(CommandOutbox.superseded_by).is_not(None)
    )
    return set(session.exec(statement))


def unclaim_commands(*, session: Session, ids: Iterable[str]) -> None:
    """Mark commands never sent (a claim that was not published after all)."""
    bulk.update_rows(
        session.connection(),
        CommandOutbox.__table__,
        [{"id": command_id, "sent_at": None, "send_count": 0} for command_id in ids],
        key=("id",),
    )


def insert_rows(*, session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` into `model`'s table in one statement, each filled with the model's
    defaults, so a row is what the ORM would have written for `model(**row)`."""
    if not rows:
        return
    bulk.insert(session.connection(), model.__table__, with_defaults(model, rows))  # type: ignore[attr-defined]


def with_defaults(model: type[SQLModel], rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return `rows`, each filled with `model`'s plain field defaults where it has no value."""
    defaults = _column_defaults(model)
    return [{**defaults, **row} for row in rows]


def set_compartment_states(*, session: Session, states: dict[tuple[str, str], str]) -> None:
    """Set compartments' `state` (one executemany); keep loaded rows in step, not dirty."""
    if not states:
        return
    bulk.update_rows(
        session.connection(),
        Compartment.__table__,
        [{"cabinet_id": cab, "id": door, "state": state} for (cab, door), state in states.items()],
        key=("cabinet_id", "id"),
    )
    for (cab, door), state in states.items():
        loaded = session.identity_map.get(session.identity_key(Compartment, (cab, door)))
        if loaded is not None:
            set_committed_value(loaded, "state", state)


def mark_events_applied(*, session: Session, marks: Sequence[dict[str, Any]]) -> None:
    """Mark stored events applied: `marks` hold cab, event_seq, at, anomaly (one executemany)."""
    if not marks:
        return
    bulk.update_rows(
        session.connection(),
        InboxEvent.__table__,
        [
            {
                "cabinet_id": mark["cab"],
                "seq": mark["event_seq"],
                "applied": True,
                "applied_at": mark["at"],
                "anomaly": mark["anomaly"],
            }
            for mark in marks
        ],
        key=("cabinet_id", "seq"),
    )


def set_applied_upto(*, session: Session, uptos: dict[str, int]) -> None:
    """Set cabinets' `applied_upto` (one executemany)."""
    if not uptos:
        return
    bulk.update_rows(
        session.connection(),
        Cabinet.__table__,
        [{"id": cab, "applied_upto": upto} for cab, upto in uptos.items()],
        key=("id",),
    )


_DEFAULTS: dict[type[SQLModel], dict[str, Any]] = {}


def _column_defaults(model: type[SQLModel]) -> dict[str, Any]:
    """The model's plain field defaults, for its columns (an autoincrement id is left out)."""
    if model not in _DEFAULTS:
        table = model.__table__  # type: ignore[attr-defined]
        defaults = {}
        for name, field in model.model_fields.items():
            if name not in table.c or field.default_factory is not None:
                continue
            if field.default is PydanticUndefined:
                continue
            if table.c[name].primary_key and field.default is None:
                continue  # autoincrement: the database numbers it
            defaults[name] = field.default
        _DEFAULTS[model] = defaults
    return _DEFAULTS[model]


def delete_older_than(*, session: Session, column: Column[datetime], before: datetime) -> int:
    """Delete the rows of `column`'s table whose `column` is before `before`; commit; count them.

    Housekeeping for tables that are only logs (one-time codes, pushed-message ids).
    """
    write_session(session)
    try:
        result = session.connection().execute(delete(column.table).where(column < before))
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return result.rowcount
