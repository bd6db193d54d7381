"""Reports and analytics, pure: a period's parcels bucketed into the tables the console shows.

The database hands over plain facts (when each parcel went in and out, its status and carrier,
when status changes happened); everything here is arithmetic on them, by the site's own days
and hours (`zone`), so a day is a local day whatever the server's time zone.

Every report is a `Table` (columns and rows), which the console draws as a chart and a table
and exports as CSV, so what is drawn, shown and exported is one thing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

MAX_DAYS = 366


@dataclass(frozen=True)
class Period:
    """The local days `first` .. `last` (both included) in `zone`."""

    first: date
    last: date
    zone: ZoneInfo

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError("the period ends before it starts")
        if (self.last - self.first).days + 1 > MAX_DAYS:
            raise ValueError(f"a period is at most {MAX_DAYS} days")

    # Cached: `holds` runs for every parcel of a period (100,000s), twice per table.
    @cached_property
    def start(self) -> datetime:
        return datetime.combine(self.first, datetime.min.time(), tzinfo=self.zone)

    @cached_property
    def end(self) -> datetime:
        return datetime.combine(
            self.last + timedelta(days=1), datetime.min.time(), tzinfo=self.zone
        )

    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    def day_of(self, at: datetime) -> date:
        return at.astimezone(self.zone).date()

    def holds(self, at: datetime | None) -> bool:
        return at is not None and self.start <= at < self.end


@dataclass(frozen=True)
class ParcelFact:
    """One parcel as the reports see it."""

    deposited_at: datetime
    left_at: datetime | None  # picked up or taken back; None while behind a door
    status: str
    carrier: str  # "" when nobody knows


@dataclass(frozen=True)
class Change:
    """A status change on a parcel's timeline."""

    status: str
    at: datetime


@dataclass(frozen=True)
class Table:
    """A report: `key` names it (CSV file, URL), `columns` head its `rows`."""

    key: str
    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]


def deposits_and_pickups(facts: Iterable[ParcelFact], period: Period) -> Table:
    """Deposits and pickups per local day."""
    deposits: Counter[date] = Counter()
    pickups: Counter[date] = Counter()
    for fact in facts:
        if period.holds(fact.deposited_at):
            deposits[period.day_of(fact.deposited_at)] += 1
        if fact.status == "picked_up" and fact.left_at and period.holds(fact.left_at):
            pickups[period.day_of(fact.left_at)] += 1
    rows = tuple((day.isoformat(), deposits[day], pickups[day]) for day in period.days())
    return Table("deposits_pickups", ("day", "deposits", "pickups"), rows)


# Dwell buckets: upper bounds in hours (the last is open-ended).
DWELL_BUCKETS_H = (1, 4, 12, 24, 48, 72)


def dwell_label(index: int) -> str:
    bounds = DWELL_BUCKETS_H
    if index == 0:
        return f"<{bounds[0]}h"
    if index == len(bounds):
        return f">={bounds[-1]}h"
    return f"{bounds[index - 1]}-{bounds[index]}h"


def dwell_distribution(facts: Iterable[ParcelFact], period: Period) -> Table:
    """How long picked-up parcels stayed in the locker: counts per bucket (pickups in period)."""
    counts = [0] * (len(DWELL_BUCKETS_H) + 1)
    for fact in facts:
        if fact.status != "picked_up" or not period.holds(fact.left_at):
            continue
        assert fact.left_at is not None
        hours = (fact.left_at - fact.deposited_at).total_seconds() / 3600
        index = next((i for i, bound in enumerate(DWELL_BUCKETS_H) if hours < bound), None)
        counts[len(DWELL_BUCKETS_H) if index is None else index] += 1
    rows = tuple((dwell_label(i), n) for i, n in enumerate(counts))
    return Table("dwell", ("dwell", "parcels"), rows)


def occupancy_by_hour(
    facts: Iterable[ParcelFact], period: Period, *, now: datetime, doors: int
) -> Table:
    """Parcels behind doors at each local hour of the day, averaged over the period's days.

    Sampled at the middle of each hour (a sweep over deposits and departures, so it costs the
    parcels' count, not parcels x hours); hours after `now` are not counted.
    """
    moves: list[tuple[datetime, int]] = []
    for fact in facts:
        moves.append((fact.deposited_at, 1))
        if fact.left_at is not None:
            moves.append((fact.left_at, -1))
    moves.sort(key=lambda move: move[0])
    samples: list[tuple[datetime, int]] = []
    for day in period.days():
        for hour in range(24):
            local = datetime.combine(day, datetime.min.time(), tzinfo=period.zone)
            at = local + timedelta(hours=hour, minutes=30)
            if at <= now:
                samples.append((at, hour))
    samples.sort(key=lambda sample: sample[0])
    totals, seen = [0] * 24, [0] * 24
    present, i = 0, 0
    for at, hour in samples:
        while i < len(moves) and moves[i][0] <= at:
            present += moves[i][1]
            i += 1
        totals[hour] += present
        seen[hour] += 1
    rows = []
    for hour in range(24):
        average = totals[hour] / seen[hour] if seen[hour] else 0.0
        percent = 100.0 * average / doors if doors else 0.0
        rows.append((f"{hour:02d}:00", round(average, 1), round(percent, 1)))
    return Table("occupancy", ("hour", "parcels", "percent_of_doors"), tuple(rows))


def expiries_and_returns(changes: Iterable[Change], period: Period) -> Table:
    """Per local day: parcels that expired, that couriers took back, that the ERP took back."""
    counts: dict[str, Counter[date]] = {s: Counter() for s in ("expired", "retrieved", "returned")}
    for change in changes:
        if change.status in counts and period.holds(change.at):
            counts[change.status][period.day_of(change.at)] += 1
    rows = tuple(
        (day.isoformat(), counts["expired"][day], counts["retrieved"][day], counts["returned"][day])
        for day in period.days()
    )
    return Table("expiries_returns", ("day", "expired", "retrieved", "returned"), rows)


def usage_by_carrier(facts: Sequence[ParcelFact], period: Period) -> Table:
    """Per carrier: parcels deposited in the period and how they ended so far, busiest first."""
    by: dict[str, Counter[str]] = {}
    for fact in facts:
        if not period.holds(fact.deposited_at):
            continue
        counter = by.setdefault(fact.carrier or "-", Counter())
        counter["deposits"] += 1
        counter[fact.status] += 1
    rows = sorted(
        (
            (carrier, c["deposits"], c["picked_up"], c["expired"] + c["retrieved"] + c["returned"])
            for carrier, c in by.items()
        ),
        key=lambda row: (-row[1], row[0]),
    )
    return Table(
        "carriers", ("carrier", "deposits", "picked_up", "expired_or_returned"), tuple(rows)
    )
