"""The console's reports: a period's tables for the caller's sites, and their CSV.

Reading reports is `Action.READ_REPORTS`: a site manager gets their sites' cabinets, an operator
admin everything, anyone else a 403. Naming a site outside the scope is a 404, as a missing one.
Days and hours are those of the site (or of the caller's sites, when they share a zone; UTC if
they do not).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session

from cloud.core import reports as core
from cloud.core.access import (
    SYSTEM,
    Action,
    Principal,
    Resource,
    ResourceKind,
    cabinet_scope,
    decide,
)
from cloud.db import reports as db
from cloud.errors import Forbidden, InvalidInput, NotFound

KEYS = ("deposits_pickups", "dwell", "occupancy", "expiries_returns", "carriers")


@dataclass(frozen=True)
class Reports:
    period: core.Period
    site_id: str | None
    doors: int
    tables: dict[str, core.Table]


def build(
    *,
    session: Session,
    principal: Principal,
    first: date,
    last: date,
    now: datetime,
    site_id: str | None = None,
) -> Reports:
    """Return every report of the local days `first`..`last` at the caller's (or one) site."""
    resource = Resource(ResourceKind.SITE, site_id) if site_id else SYSTEM
    decision = decide(principal, Action.READ_REPORTS, resource)
    if not decision.allowed:
        if decision.http_status == 403:
            raise Forbidden(decision.reason)
        raise NotFound("no such site")
    scope = cabinet_scope(principal)
    zones = db.site_zones(session=session, scope=scope, site_id=site_id)
    zone = ZoneInfo(zones.pop()) if len(zones) == 1 else ZoneInfo("UTC")
    try:
        period = core.Period(first, last, zone)
    except ValueError as err:
        raise InvalidInput(str(err)) from None
    facts = db.parcel_facts(
        session=session, scope=scope, start=period.start, end=period.end, site_id=site_id
    )
    changes = db.status_changes(
        session=session,
        scope=scope,
        start=period.start,
        end=period.end,
        statuses=("expired", "retrieved", "returned"),
        site_id=site_id,
    )
    doors = db.door_count(session=session, scope=scope, site_id=site_id)
    tables = [
        core.deposits_and_pickups(facts, period),
        core.dwell_distribution(facts, period),
        core.occupancy_by_hour(facts, period, now=now, doors=doors),
        core.expiries_and_returns(changes, period),
        core.usage_by_carrier(facts, period),
    ]
    return Reports(period, site_id, doors, {table.key: table for table in tables})


def _cell(value: object) -> str:
    if not isinstance(value, str):
        return "" if value is None else str(value)
    # A spreadsheet runs a cell that starts like a formula: a carrier named "=cmd|..." must not.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def to_csv(table: core.Table) -> str:
    """Return a report as CSV (UTF-8 text; the console adds a BOM so Excel reads Chinese)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow([_cell(value) for value in row])
    return out.getvalue()


def rows_to_csv(columns: tuple[str, ...], rows: list[tuple[object, ...]]) -> str:
    """Return any console table as CSV (the parcel search, the aged parcels, the alarms)."""
    return to_csv(core.Table("table", columns, tuple(rows)))


@dataclass(frozen=True)
class SiteChoice:
    id: str
    name: str


def sites_for(*, session: Session, principal: Principal) -> list[SiteChoice]:
    """Return the sites a console filter offers `principal` (those of its cabinets)."""
    return [
        SiteChoice(site_id, name)
        for site_id, name in db.sites_in_scope(session=session, scope=cabinet_scope(principal))
    ]
