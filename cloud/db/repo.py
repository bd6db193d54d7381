"""Keyword-only data functions over the cloud's tables: services call these, routes never query."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, col, select
from ulid import ULID

from cloud.core import parcels as core
from cloud.core.notices import NoticeKind, send_after
from cloud.core.pauses import Pause, PauseReason
from cloud.core.policies import Language, SitePolicy
from cloud.db.models import (
    Cabinet,
    CabinetCreate,
    CommandOutbox,
    Compartment,
    NoticeOutbox,
    Parcel,
    ParcelEvent,
    Site,
    SiteCreate,
    WebhookOutbox,
    WechatBinding,
)
from cloud.db.sealing import seal
from protocol.messages import CodeEntry, ParcelIdsData, PutCodesData

# A command the cabinet has not acked by then is dropped by it and no longer resent by us: a week
# covers any realistic outage, and a stale codes.put is harmless (the code's own expiry rules).
COMMAND_TTL_S = 7 * 24 * 3600

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
    *, session: Session, cabinet_create: CabinetCreate, code_key: bytes, now: datetime
) -> Cabinet:
    """Add a cabinet with its pickup-code key (the registry makes the key and MQTT password)."""
    cabinet = Cabinet.model_validate(
        cabinet_create, update={"code_key": code_key.hex(), "created_at": now}
    )
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


def sites_and_compartments(*, session: Session, cabs: Iterable[str]) -> list[Any]:
    """Load the sites and compartments of cabinets `cabs` into the session; return them.

    Hold on to the list while the session works: `session.get` then finds them without a query.
    """
    cabs = sorted(set(cabs))
    if not cabs:
        return []
    sites = select(Site).where(
        col(Site.id).in_(select(Cabinet.site_id).where(col(Cabinet.id).in_(cabs)))
    )
    compartments = select(Compartment).where(col(Compartment.cabinet_id).in_(cabs))
    return [*session.exec(sites), *session.exec(compartments)]


def cabinet_code_key(cabinet: Cabinet) -> bytes:
    """Return the key a cabinet's pickup-code hashes are made with."""
    return bytes.fromhex(cabinet.code_key)


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


def store_parcel(
    *, session: Session, row: Parcel | None, parcel: core.Parcel, now: datetime
) -> Parcel:
    """Write the core's `parcel` into `row` (None: a new row named by its parcel_id or a ULID)."""
    if row is None:
        row = Parcel(
            id=parcel.parcel_id or new_id(),
            tracking_no=parcel.tracking_no,
            status=parcel.status.value,
            cabinet_id=parcel.cabinet_id,
            phone=parcel.phone,
            created_at=now,
            updated_at=now,
        )
    row.status = parcel.status.value
    row.tracking_no = parcel.tracking_no
    row.cabinet_id = parcel.cabinet_id
    row.phone = parcel.phone
    row.order_no = parcel.order_no
    row.parcel_id = parcel.parcel_id
    row.compartment = parcel.compartment
    row.size = parcel.size
    row.courier_id = parcel.courier_id
    row.code_hash = parcel.code_hash
    row.code_generation = parcel.code_generation
    row.announced_at = parcel.announced_at
    row.deposited_at = parcel.deposited_at
    row.clock_started_at = parcel.clock_started_at
    row.window_s = parcel.window_s
    row.pauses = [_pause_to_json(p) for p in parcel.pauses]
    row.reminded_at = parcel.reminded_at
    row.told_deadline = parcel.told_deadline
    row.left_locker_at = parcel.left_locker_at
    row.updated_at = now
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
                    ParcelEvent(
                        parcel_row_id=parcel_row.id,
                        status=effect.status.value,
                        at=effect.at,
                        source=effect.source.value,
                        note=effect.note[:2000],
                        cabinet_id=cab,
                        seq=seq,
                        created_at=now,
                    )
                )
            case core.CodesPut():
                entry = CodeEntry(
                    parcel_id=effect.parcel_id,
                    compartment=effect.compartment,
                    code_hash=effect.code_hash,
                    expires_at=effect.expires_at,
                )
                data = PutCodesData(entries=[entry])
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
                session.add(
                    WebhookOutbox(
                        parcel_row_id=parcel_row.id,
                        event=effect.status.value,
                        payload={
                            "status": effect.status.value,
                            "erp_state": effect.erp_state.value,
                            "at": _iso(effect.at),
                            "tracking_no": effect.tracking_no,
                            "order_no": effect.order_no,
                            "parcel_id": effect.parcel_id,
                            "cabinet_id": effect.cabinet_id,
                        },
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
            case _:  # pragma: no cover - a new effect type must be handled here
                raise TypeError(f"unknown effect {type(effect).__name__}")


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
        id=new_id(),
        cabinet_id=cab,
        type=type,
        data=data.model_dump(mode="json"),
        created_at=now,
        expires_at=now + timedelta(seconds=COMMAND_TTL_S),
        parcel_id=parcel_id,
    )
    session.add(row)
    return row


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
    code_sealed = seal(seal_key, notify.code, context=notify.dedupe_key) if notify.code else None
    values = {
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
    added = insert_ignore(
        session=session,
        table=NoticeOutbox.__table__,
        rows=[values],
        conflict_columns=["dedupe_key"],
        returning=["dedupe_key"],
    )
    return bool(added)


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
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect)
    if insert is None:
        raise NotImplementedError(f"no INSERT ... ON CONFLICT for {dialect}")
    statement = (
        insert(table)
        .values(list(rows))
        .on_conflict_do_nothing(index_elements=list(conflict_columns))
    )
    if returning:
        statement = statement.returning(*(table.c[name] for name in returning))
    session.flush()
    result = session.connection().execute(statement)
    return [tuple(row) for row in result] if returning else []


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
