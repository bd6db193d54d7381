"""The statements' queries: the price table, closed periods, and a carrier's deposits streamed.

`iter_deposits` reads in chunks (`yield_per`: a server-side cursor on PostgreSQL), so a month of
a million deposits is never held in memory; the caller turns each into a line as it goes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, false, or_
from sqlmodel import Session, col, select

from cloud.core import parcels as core
from cloud.core import statements as st
from cloud.core.policies import SitePolicy
from cloud.db.cabinets import site_policy
from cloud.db.models import (
    Cabinet,
    Carrier,
    Courier,
    Parcel,
    Site,
    SitePrice,
    StatementClosing,
    StatementLine,
)
from cloud.db.parcels import _pause_from_json

CHUNK = 2000  # rows per fetch: bounds what an export holds at once


def get_carrier(*, session: Session, carrier_id: str) -> Carrier | None:
    return session.get(Carrier, carrier_id)


def carriers(*, session: Session) -> list[tuple[str, str]]:
    """Every carrier as (id, name), by id: the operator's choice on the statements page."""
    rows = session.exec(select(Carrier.id, Carrier.name).order_by(col(Carrier.id))).all()
    return [(row[0], row[1]) for row in rows]


def get_site(*, session: Session, site_id: str) -> Site | None:
    return session.get(Site, site_id)


def put_price(
    *,
    session: Session,
    site_id: str,
    carrier_id: str,
    size: str,
    amount_minor: int,
    currency: str,
    now: datetime,
) -> tuple[SitePrice, SitePrice | None]:
    """Insert or replace a price; return it and a copy of the one it replaced (None if new)."""
    row = session.get(SitePrice, (site_id, carrier_id, size))
    before = SitePrice.model_validate(row) if row is not None else None
    if row is None:
        row = SitePrice(
            site_id=site_id,
            carrier_id=carrier_id,
            size=size,
            amount_minor=0,
            currency=currency,
            updated_at=now,
        )
    row.amount_minor, row.currency, row.updated_at = amount_minor, currency, now
    session.add(row)
    return row, before


def prices(
    *, session: Session, site_id: str | None = None, carrier_id: str | None = None
) -> Sequence[SitePrice]:
    query = select(SitePrice)
    if site_id is not None:
        query = query.where(SitePrice.site_id == site_id)
    if carrier_id is not None:
        query = query.where(SitePrice.carrier_id == carrier_id)
    return session.exec(
        query.order_by(col(SitePrice.site_id), col(SitePrice.carrier_id), col(SitePrice.size))
    ).all()


def closed_periods(*, session: Session, carrier_id: str) -> frozenset[st.Period]:
    rows = session.exec(
        select(StatementClosing.period).where(StatementClosing.carrier_id == carrier_id)
    ).all()
    return frozenset(st.Period.parse(p) for p in rows)


def add_closing(*, session: Session, carrier_id: str, period: st.Period, now: datetime) -> None:
    session.add(StatementClosing(carrier_id=carrier_id, period=str(period), closed_at=now))


def site_policies(*, session: Session) -> dict[str, SitePolicy]:
    return {site.id: site_policy(site) for site in session.exec(select(Site)).all()}


def _ranges(periods: Sequence[st.Period], policies: dict[str, SitePolicy]) -> list[object]:
    """WHERE clauses: a deposit in one of `periods`, each month in its own site's time zone."""
    clauses: list[Any] = []
    for site_id, policy in policies.items():
        for period in periods:
            start, end = period.bounds(policy.timezone)
            clauses.append(
                and_(
                    col(Cabinet.site_id) == site_id,
                    col(Parcel.deposited_at) >= start,
                    col(Parcel.deposited_at) < end,
                )
            )
    return clauses


def _price_table(session: Session, carrier_id: str) -> dict[tuple[str, str], st.Price]:
    return {
        (p.site_id, p.size): st.Price(p.amount_minor, p.currency)
        for p in prices(session=session, carrier_id=carrier_id)
    }


def _deposit_rows(session: Session, carrier_id: str, where: Any, chunk: int) -> Iterator[Any]:
    """Stream the carrier's couriers' deposits matching `where`, oldest first, in chunks."""
    query = (
        select(
            Parcel.id,
            Cabinet.site_id,
            Parcel.status,
            Parcel.tracking_no,
            Parcel.cabinet_id,
            Parcel.compartment,
            Parcel.size,
            Parcel.courier_id,
            Parcel.deposited_at,
            Parcel.clock_started_at,
            Parcel.window_s,
            Parcel.pauses,
            Parcel.left_locker_at,
        )
        .join(Cabinet, col(Cabinet.id) == col(Parcel.cabinet_id))
        .join(Courier, col(Courier.id) == col(Parcel.courier_id))
        .where(Courier.carrier == carrier_id)
        .where(col(Parcel.deposited_at).is_not(None))
        .where(where)
        .order_by(col(Parcel.deposited_at), col(Parcel.id))
        .execution_options(yield_per=chunk)
    )
    yield from session.execute(query)


def _deposit(
    row: Any,
    policies: dict[str, SitePolicy],
    price_table: dict[tuple[str, str], st.Price],
    period: st.Period | None,
) -> st.Deposit:
    (row_id, site_id, status, tracking_no, cabinet_id, compartment, size, courier_id,
     deposited_at, clock_started_at, window_s, pauses, left_at) = row  # fmt: skip
    policy = policies[site_id]
    parcel = core.Parcel(
        status=core.Status(status),
        tracking_no=tracking_no,
        cabinet_id=cabinet_id,
        phone="",
        compartment=compartment,
        size=size,
        courier_id=courier_id,
        deposited_at=deposited_at,
        clock_started_at=clock_started_at,
        window_s=window_s,
        pauses=tuple(_pause_from_json(p) for p in pauses or ()),
        left_locker_at=left_at,
    )
    late = period is not None and st.Period.of(deposited_at, policy.timezone) != period
    return st.Deposit(
        parcel_row_id=row_id,
        site_id=site_id,
        parcel=parcel,
        policy=policy,
        price=price_table.get((site_id, size or "")),
        late=late,
    )


def iter_deposits(
    *,
    session: Session,
    carrier_id: str,
    period: st.Period,
    closed: frozenset[st.Period],
    chunk: int = CHUNK,
) -> Iterator[st.Deposit]:
    """Yield the deposits of an open `period` by `carrier_id`'s couriers, oldest first.

    That is its own month's deposits and, if the month before is closed, the deposits of closed
    months that no frozen line holds (they arrived after their month was closed).
    """
    policies = site_policies(session=session)
    price_table = _price_table(session, carrier_id)
    late_months = sorted(p for p in closed if p < period) if period.previous() in closed else []
    clauses = _ranges([period], policies) + _ranges(late_months, policies)
    frozen = exists().where(
        StatementLine.carrier_id == carrier_id, StatementLine.parcel_row_id == Parcel.id
    )
    where = and_(or_(*clauses) if clauses else false(), ~frozen)
    for row in _deposit_rows(session, carrier_id, where, chunk):
        yield _deposit(row, policies, price_table, period)


def iter_between(
    *, session: Session, carrier_id: str, start: datetime, end: datetime, chunk: int = CHUNK
) -> Iterator[st.Deposit]:
    """Yield the carrier's couriers' deposits in [start, end), computed now (a live report)."""
    policies = site_policies(session=session)
    price_table = _price_table(session, carrier_id)
    where = and_(col(Parcel.deposited_at) >= start, col(Parcel.deposited_at) < end)
    for row in _deposit_rows(session, carrier_id, where, chunk):
        yield _deposit(row, policies, price_table, None)


_LINE_FIELDS = tuple(st.Line.__dataclass_fields__)


def add_lines(
    *, session: Session, carrier_id: str, period: st.Period, lines: Sequence[st.Line]
) -> None:
    """Freeze `lines` as rows of the closed `period`."""
    session.bulk_insert_mappings(  # type: ignore[arg-type]
        StatementLine,
        [
            {"carrier_id": carrier_id, "period": str(period)}
            | {name: getattr(line, name) for name in _LINE_FIELDS}
            for line in lines
        ],
    )


def iter_frozen(
    *, session: Session, carrier_id: str, period: st.Period, chunk: int = CHUNK
) -> Iterator[st.Line]:
    """Yield a closed period's frozen lines in the order they were frozen."""
    query = (
        select(StatementLine)
        .where(StatementLine.carrier_id == carrier_id, StatementLine.period == str(period))
        .order_by(col(StatementLine.id))
        .execution_options(yield_per=chunk)
    )
    for (row,) in session.execute(query):
        yield st.Line(**{name: getattr(row, name) for name in _LINE_FIELDS})
        session.expunge(row)
