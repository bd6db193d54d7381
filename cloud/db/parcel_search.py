"""The console's parcel search as SQL: by tracking no, order no or a phone's last four digits,
filtered by state, age, site and cabinet, always within the caller's scope; the aged parcels.

The scope is `cloud.core.access.parcel_scope` turned into a WHERE clause (`cloud.db.scoping`), so
a search can never list a parcel `decide` would answer 404 for.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from cloud.core.access import ParcelScope
from cloud.db.models import Cabinet, Courier, Parcel, Site
from cloud.db.scoping import parcel_where

LIVE = ("in_locker", "expired")  # still behind a door
# Whose parcel it is: the depositing courier's carrier, else the announcing carrier, else what
# the ERP wrote.
_CARRIER = func.coalesce(
    col(Courier.carrier), col(Parcel.owner_carrier_id), col(Parcel.courier_company)
)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search(
    *,
    session: Session,
    scope: ParcelScope,
    text: str = "",
    phone_last4: str | None = None,
    statuses: Sequence[str] = (),
    deposited_before: datetime | None = None,
    site_id: str | None = None,
    cabinet_id: str | None = None,
    limit: int = 100,
) -> list[tuple[Parcel, str, str, str, str | None]]:
    """Return (parcel, cabinet name, site id, site time zone, carrier) of the matching
    parcels, newest first.

    `text` matches a tracking or order number from its start; `phone_last4` the last four
    digits of the recipient's phone; `deposited_before` keeps parcels at least that old.
    """
    statement: Any = (
        select(Parcel, Cabinet.name, Cabinet.site_id, Site.timezone, _CARRIER)
        .join(Cabinet, col(Cabinet.id) == col(Parcel.cabinet_id))
        .join(Site, col(Site.id) == col(Cabinet.site_id))
        .outerjoin(Courier, col(Courier.id) == col(Parcel.courier_id))
        .where(parcel_where(scope))
    )
    matches = []
    if text:
        prefix = _escape_like(text) + "%"
        matches += [
            col(Parcel.tracking_no).like(prefix, escape="\\"),
            col(Parcel.order_no).like(prefix, escape="\\"),
        ]
    if phone_last4:
        matches.append(col(Parcel.phone).like("%" + _escape_like(phone_last4), escape="\\"))
    if matches:
        statement = statement.where(or_(*matches))
    if statuses:
        statement = statement.where(col(Parcel.status).in_(list(statuses)))
    if deposited_before is not None:
        statement = statement.where(col(Parcel.deposited_at) <= deposited_before)
    if site_id:
        statement = statement.where(Cabinet.site_id == site_id)
    if cabinet_id:
        statement = statement.where(Parcel.cabinet_id == cabinet_id)
    statement = statement.order_by(col(Parcel.created_at).desc(), col(Parcel.id).desc())
    return [tuple(row) for row in session.exec(statement.limit(limit))]  # type: ignore[misc]


def aged(
    *,
    session: Session,
    scope: ParcelScope,
    deposited_before: datetime,
    site_id: str | None = None,
    limit: int = 1000,
) -> list[tuple[Parcel, str, str, str, str | None]]:
    """Return the parcels still behind a door deposited at or before `deposited_before`,
    oldest first (the aged-parcel report)."""
    statement: Any = (
        select(Parcel, Cabinet.name, Cabinet.site_id, Site.timezone, _CARRIER)
        .join(Cabinet, col(Cabinet.id) == col(Parcel.cabinet_id))
        .join(Site, col(Site.id) == col(Cabinet.site_id))
        .outerjoin(Courier, col(Courier.id) == col(Parcel.courier_id))
        .where(
            parcel_where(scope),
            col(Parcel.status).in_(LIVE),
            col(Parcel.deposited_at) <= deposited_before,
        )
    )
    if site_id:
        statement = statement.where(Cabinet.site_id == site_id)
    statement = statement.order_by(col(Parcel.deposited_at), col(Parcel.id)).limit(limit)
    return [tuple(row) for row in session.exec(statement)]  # type: ignore[misc]


def courier_carrier(*, session: Session, courier_id: str | None) -> str | None:
    """Return the carrier of a courier (None: no courier, or one not registered)."""
    if courier_id is None:
        return None
    return session.exec(select(Courier.carrier).where(Courier.id == courier_id)).first()
