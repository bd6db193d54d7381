"""One step of a stored parcel's life: the core's verdict, then the row and its effects written."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from cloud.core import parcels as core
from cloud.core.policies import SitePolicy
from cloud.db.effects import write_effects
from cloud.db.models import Parcel
from cloud.db.parcels import parcel_to_core, store_parcel


def apply_parcel_event(
    *,
    session: Session,
    row: Parcel,
    event: core.Event,
    policy: SitePolicy,
    seal_key: bytes,
    now: datetime,
) -> Parcel:
    """Apply `event` to the parcel in `row` and write it with its effects; return the stored row.

    The core raises CoreError before anything is written; the caller owns the transaction (and a
    savepoint, where one refusal must not undo its neighbours).
    """
    after, effects = core.apply(parcel_to_core(row), event, now)
    stored = store_parcel(session=session, row=row, parcel=after, now=now, policy=policy)
    write_effects(
        session=session,
        parcel_row=stored,
        effects=effects,
        policy=policy,
        seal_key=seal_key,
        now=now,
        cab=row.cabinet_id,
    )
    return stored
