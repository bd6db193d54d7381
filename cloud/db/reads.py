"""The API's reads: scoped lists of cabinets and parcels, a parcel's timeline, ERP keys, health.

`scope` arguments are the core's access scopes (`cloud.core.access`), turned into WHERE clauses
by `cloud.db.scoping`, so a list shows a caller only what it may read.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, text, tuple_
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from cloud.core.access import CabinetScope, ParcelScope
from cloud.core.parcels import Status
from cloud.db.models import (
    Cabinet,
    Compartment,
    ErpApiKey,
    ErpKeySite,
    Parcel,
    ParcelEvent,
    Site,
)
from cloud.db.scoping import cabinet_where, parcel_where


class TimelineRow(NamedTuple):
    """One entry of a parcel's timeline as the API reads it."""

    status: str
    at: datetime
    source: str
    note: str


def database_ok(*, session: Session) -> bool:
    """Return whether the database answers a trivial query (the transaction is ended)."""
    try:
        session.connection().execute(text("SELECT 1")).one()
    except Exception:  # any driver error means "not reachable" to a health check
        return False
    finally:
        session.rollback()
    return True


def api_key_by_hash(*, session: Session, key_hash: str) -> ErpApiKey | None:
    """Return the ERP key row stored under `key_hash`, revoked or not."""
    return session.exec(select(ErpApiKey).where(ErpApiKey.key_hash == key_hash)).first()


def key_site_ids(*, session: Session, key_id: str) -> frozenset[str]:
    """Return the sites an ERP key is bound to."""
    statement = select(ErpKeySite.site_id).where(ErpKeySite.key_id == key_id)
    return frozenset(session.exec(statement))


def cabinets_in_scope(*, session: Session, scope: CabinetScope) -> Sequence[Cabinet]:
    """Return the cabinets `scope` admits, by id."""
    return session.exec(select(Cabinet).where(cabinet_where(scope)).order_by(col(Cabinet.id))).all()


def compartments_in_scope(*, session: Session, scope: CabinetScope) -> Sequence[Compartment]:
    """Return the compartments of the cabinets `scope` admits."""
    statement = select(Compartment).where(
        col(Compartment.cabinet_id).in_(select(Cabinet.id).where(cabinet_where(scope)))
    )
    return session.exec(statement).all()


def compartments_of(*, session: Session, cab: str) -> Sequence[Compartment]:
    """Return a cabinet's compartments by label."""
    statement = select(Compartment).where(Compartment.cabinet_id == cab)
    return session.exec(statement.order_by(col(Compartment.id))).all()


def parcels_in_scope(
    *,
    session: Session,
    scope: ParcelScope,
    cabinet: str | None,
    status: Status | None,
    limit: int,
    offset: int,
) -> Sequence[Parcel]:
    """Return the parcels `scope` admits, newest first, optionally of one cabinet and status."""
    statement = select(Parcel).where(parcel_where(scope))
    if cabinet is not None:
        statement = statement.where(Parcel.cabinet_id == cabinet)
    if status is not None:
        statement = statement.where(Parcel.status == status.value)
    statement = statement.order_by(col(Parcel.created_at).desc(), col(Parcel.id).desc())
    return session.exec(statement.offset(offset).limit(limit)).all()


_PARCEL_COLUMNS = tuple(Parcel.__table__.columns)  # type: ignore[attr-defined]


class ParcelRow(NamedTuple("ParcelRow", [(c.name, Any) for c in _PARCEL_COLUMNS])):  # type: ignore[misc]
    """A parcel's columns as a page reads them (attributes as a Parcel's). A plain tuple: a page
    reads 30 attributes of each of 50 rows, and a SQLAlchemy row's cost a tenth of its CPU."""


@functools.lru_cache(maxsize=1024)
def _page_statement(scope: ParcelScope) -> Any:
    """The page's columns and scope, built once per scope (as the tracking read's statement)."""
    return select(*_PARCEL_COLUMNS).where(parcel_where(scope))


def shipments_page(
    *,
    session: Session,
    scope: ParcelScope,
    after: tuple[datetime, str] | None,
    limit: int,
    status: Status | None = None,
    site: str | None = None,
    cabinet: str | None = None,
    changed_since: datetime | None = None,
    order_no: str | None = None,
    tracking_no: str | None = None,
) -> Sequence[Any]:
    """Return up to `limit` parcels `scope` admits, oldest first by (created_at, id), after the
    cursor `after`: a parcel created meanwhile sorts after every page already read (its
    created_at is the newest), so paging neither skips nor repeats one.

    The rows are read-only column rows (attributes as a Parcel's), not ORM objects: making 51
    ORM objects a page was a quarter of the API's CPU per page (`locker bench queries`)."""
    statement = _page_statement(scope)
    if status is not None:
        statement = statement.where(Parcel.status == status.value)
    if site is not None:
        on_site = select(Cabinet.id).where(Cabinet.site_id == site)
        statement = statement.where(col(Parcel.cabinet_id).in_(on_site))
    if cabinet is not None:
        statement = statement.where(Parcel.cabinet_id == cabinet)
    if changed_since is not None:
        statement = statement.where(col(Parcel.updated_at) >= changed_since)
    if order_no is not None:
        statement = statement.where(Parcel.order_no == order_no)
    if tracking_no is not None:
        statement = statement.where(Parcel.tracking_no == tracking_no)
    if after is not None:
        created_at, row_id = after
        # A row comparison, not `a > x OR (a = x AND b > y)`: PostgreSQL starts the scan of
        # ix_parcels_created_id at the cursor only for this form; for the other it read and
        # dropped every row before it (145 ms half-way through a million parcels).
        statement = statement.where(
            tuple_(col(Parcel.created_at), col(Parcel.id)) > tuple_(created_at, row_id)
        )
    statement = statement.order_by(col(Parcel.created_at), col(Parcel.id))
    # On the session's connection: through the session, the ORM's loader wrapped each column
    # row again (a quarter of the page's CPU), though it makes no object of it.
    rows = session.connection().execute(statement.limit(limit))
    return [ParcelRow._make(row) for row in rows]


# Aliases: the scope's own subqueries on cabinets must not correlate with the tracking read's
# join. Made once: an alias made per request cost a third of the API's CPU per tracking read.
_TRACKED_CABINET, _TRACKED_SITE = aliased(Cabinet), aliased(Site)


# The hot reads' statements are built once per scope (an ERP key's scope is the same on every
# request), the values bound at execution: building one and computing its cache key cost more
# of the API's CPU than PostgreSQL spends running it (`locker bench queries`).
_SITE_COLUMNS = tuple(Site.__table__.columns)  # type: ignore[attr-defined]


class SiteRow(NamedTuple("SiteRow", [(c.name, Any) for c in _SITE_COLUMNS])):  # type: ignore[misc]
    """A site's columns as the tracking read reads them (attributes as a Site's)."""


@functools.lru_cache(maxsize=1024)
def _tracked_statement(scope: ParcelScope) -> Any:
    cabinet, site = _TRACKED_CABINET, _TRACKED_SITE
    site_columns = [getattr(site, c.name).label(f"site__{c.name}") for c in _SITE_COLUMNS]
    newest = (
        select(Parcel.id)
        .where(Parcel.tracking_no == bindparam("tracking_no"), parcel_where(scope))
        .order_by(col(Parcel.created_at).desc())
        .limit(1)
        .scalar_subquery()
        .correlate(None)  # its own parcels, not the outer query's row
    )
    return (
        select(*_PARCEL_COLUMNS, *site_columns, *_EVENT_COLUMNS)
        .outerjoin(cabinet, col(cabinet.id) == Parcel.cabinet_id)
        .outerjoin(site, col(site.id) == cabinet.site_id)
        .outerjoin(ParcelEvent, col(ParcelEvent.parcel_row_id) == Parcel.id)
        .where(Parcel.id == newest)
        .order_by(col(ParcelEvent.at), col(ParcelEvent.id))
    )


_EVENT_COLUMNS = (
    col(ParcelEvent.status).label("event__status"),
    col(ParcelEvent.at).label("event__at"),
    col(ParcelEvent.source).label("event__source"),
    col(ParcelEvent.note).label("event__note"),
    col(ParcelEvent.id).label("event__id"),
)


def newest_parcel_tracked(
    *, connection: Connection, tracking_no: str, scope: ParcelScope
) -> tuple[Any, SiteRow | None, list[TimelineRow]] | None:
    """Return the newest parcel with `tracking_no` that `scope` admits, the site of its cabinet
    (None: the cabinet or its site is gone) and its timeline, oldest first, in one statement
    (a row per timeline entry).

    Plain rows on the connection, not ORM objects in a session: loading the parcel and its site
    as entities was a quarter of the API's CPU per tracking read, and a second statement for
    the timeline an eighth (`locker bench queries`). The parcel row's attributes are a
    Parcel's, the site's a Site's."""
    statement = _tracked_statement(scope)
    rows = connection.execute(statement, {"tracking_no": tracking_no}).all()
    if not rows:
        return None
    first, parcel_width, site_width = rows[0], len(_PARCEL_COLUMNS), len(_SITE_COLUMNS)
    site_values = first[parcel_width : parcel_width + site_width]
    site = SiteRow(*site_values) if site_values[0] is not None else None
    events = [row[parcel_width + site_width :] for row in rows]
    story = [TimelineRow(*event[:4]) for event in events if event[4] is not None]
    return first, site, story


# A timeline in the order the cloud applied its rows: a cabinet's events are applied in its seq
# order, whatever its clock said (a cabinet whose clock is skewed stamps a later event with an
# earlier `at`; ordering by `at` showed a pickup before its deposit).
TIMELINE_ORDER = (col(ParcelEvent.id),)

_TIMELINE = (
    select(ParcelEvent.status, ParcelEvent.at, ParcelEvent.source, ParcelEvent.note)
    .where(ParcelEvent.parcel_row_id == bindparam("parcel_row_id"))
    .order_by(*TIMELINE_ORDER)
)


def timeline(*, session: Session, parcel_row_id: str) -> Sequence[TimelineRow]:
    """Return a parcel's timeline, oldest first, in the order its changes were applied: the
    columns the API shows, not ORM objects."""
    rows = session.exec(_TIMELINE, params={"parcel_row_id": parcel_row_id})
    return [TimelineRow(*row) for row in rows]
