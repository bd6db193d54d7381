"""Sites, cabinets and compartments: create, read, lock, and the cabinets' sealed code keys."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from cloud.core.policies import Language, SitePolicy
from cloud.db import bulk
from cloud.db.bulk import among
from cloud.db.models import (
    Cabinet,
    CabinetCreate,
    Compartment,
    Site,
    SiteCreate,
)
from cloud.db.sealing import SealError, seal_bytes, unseal_bytes

# The longest code key a cabinet may have: sealed, it still fits `cabinets.code_key` (128).
CODE_KEY_MAX_BYTES = 64


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
    return _policy(tuple(getattr(site, name) for name in _POLICY_FIELDS))


# The site columns a policy is made of, in `SitePolicy`'s order.
_POLICY_FIELDS = (
    "pickup_window_s",
    "reminder_before_s",
    "code_length",
    "quiet_start",
    "quiet_end",
    "timezone",
    "language",
    "overdue_fee_per_day_minor",
    "overdue_fee_cap_minor",
    "currency",
    "resend_limit",
    "resend_window_s",
    "sms_signature",
    "sms_signature_en",
    "offline_alarm_s",
)


@functools.lru_cache(maxsize=1024)
def _policy(values: tuple[Any, ...]) -> SitePolicy:
    # Built once per distinct set of values: the worker asks for it once per cabinet and batch,
    # and checking every value again (`SitePolicy.__post_init__`) cost more than the deposit's
    # own rules. A policy is frozen, so one object can serve every caller.
    fields = dict(zip(_POLICY_FIELDS, values, strict=True))
    return SitePolicy(**{**fields, "language": Language(fields["language"])})


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
    dialect = session.connection().dialect.name
    statement = (
        select(Cabinet)
        .where(among(col(Cabinet.id), cabs, dialect=dialect))
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
    dialect = session.connection().dialect.name
    sites = select(Site).where(
        col(Site.id).in_(
            select(Cabinet.site_id).where(among(col(Cabinet.id), cabs, dialect=dialect))
        )
    )
    loaded = list(session.exec(sites))
    wanted = None if doors is None else sorted(set(doors))
    if wanted is None or wanted:
        compartments = select(Compartment).where(
            among(col(Compartment.cabinet_id), cabs, dialect=dialect)
        )
        if wanted is not None:
            compartments = compartments.where(among(col(Compartment.id), wanted, dialect=dialect))
        loaded += session.exec(compartments)
    return loaded


def cabinet_code_key(cabinet: Cabinet, *, seal_key: bytes) -> bytes:
    """Return the key a cabinet's pickup-code hashes are made with (unsealed); raise SealError."""
    return _unsealed_code_key(bytes(seal_key), cabinet.code_key, cabinet.id)


@functools.lru_cache(maxsize=4096)
def _unsealed_code_key(seal_key: bytes, sealed: str, cab: str) -> bytes:
    # Every code issued needs it; unsealing (AES-GCM) each time was a tenth of a deposit's
    # cost in the worker. Keyed by the sealed value itself, so a rotated key is unsealed anew,
    # and a failure (SealError) is raised every time: lru_cache keeps no exception.
    return unseal_bytes(seal_key, sealed, context=code_key_context(cab))


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


def all_sites(*, session: Session) -> list[Site]:
    """Return every site, by id."""
    return list(session.exec(select(Site).order_by(col(Site.id))))


def all_cabinets(*, session: Session) -> list[Cabinet]:
    """Return every cabinet, by id."""
    return list(session.exec(select(Cabinet).order_by(col(Cabinet.id))))


def cabinet_ids_at_site(*, session: Session, site_id: str) -> list[str]:
    """Return the ids of a site's cabinets, sorted."""
    statement = select(Cabinet.id).where(Cabinet.site_id == site_id).order_by(col(Cabinet.id))
    return list(session.exec(statement))


def compartments_by_id(*, session: Session, cab: str) -> dict[str, Compartment]:
    """Return a cabinet's compartments by id."""
    rows = session.exec(select(Compartment).where(Compartment.cabinet_id == cab))
    return {row.id: row for row in rows}


def mark_seen(*, session: Session, cabs: Iterable[str], at: datetime) -> None:
    """Move the cabinets' `last_seen_at` to `at` (never back): one UPDATE for them all."""
    ids = sorted(set(cabs))
    if not ids:
        return
    # Core, not the ORM: an ORM UPDATE first evaluates its criteria against every object in the
    # session (synchronize_session), the larger part of what the worker's ack transaction cost.
    # A loaded Cabinet keeps its old `last_seen_at` until it is read again.
    table = Cabinet.__table__
    session.connection().execute(
        update(table)
        .where(
            among(table.c.id, ids, dialect=session.connection().dialect.name),
            or_(table.c.last_seen_at.is_(None), table.c.last_seen_at < at),
        )
        .values(last_seen_at=at)
    )
