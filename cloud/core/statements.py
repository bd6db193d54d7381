"""Courier settlement (对账单): a carrier's statement for a period. Pure: no I/O.

A statement lists every deposit the carrier's couriers made in the period, one `Line` each: where
(cabinet, door size), how long the parcel stayed (deposit until it left the locker, or `now`), the
price from the site's price table (by carrier and size), the overdue fee (`expiry.overdue_fee`)
and whether it went back (retrieved by the courier or returned). Amounts are integer minor units
with a currency, never floats; `Totals` sums them per currency, so the lines always add up.

Periods are calendar months in each site's time zone. A closed period never changes: its lines
are frozen as stored rows, and a deposit that reaches the cloud after its month was closed (a
cabinet that was offline) is settled in the first open month after it (`is_late`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from cloud.core.errors import CoreError
from cloud.core.expiry import overdue_fee
from cloud.core.parcels import Parcel, Status
from cloud.core.policies import SitePolicy

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# The largest amount a price may hold: a BIGINT's range leaves room for sums of a million lines.
MAX_AMOUNT_MINOR = 10**12
RETURNED = frozenset({Status.RETRIEVED, Status.RETURNED})


class StatementError(CoreError):
    """Bad statement input: a period, a currency or an amount the rules refuse."""


@dataclass(frozen=True, order=True)
class Period:
    """A calendar month, `YYYY-MM`."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Period:
        match = _PERIOD.match(text.strip())
        if match is None:
            raise StatementError(f"period must be YYYY-MM (e.g. 2026-12), not {text!r}")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def next(self) -> Period:
        return Period(self.year + 1, 1) if self.month == 12 else Period(self.year, self.month + 1)

    def previous(self) -> Period:
        return Period(self.year - 1, 12) if self.month == 1 else Period(self.year, self.month - 1)

    def bounds(self, timezone: str) -> tuple[datetime, datetime]:
        """Return [start, end) of the month in `timezone`, as aware datetimes."""
        zone = ZoneInfo(timezone)
        after = self.next()
        return (
            datetime(self.year, self.month, 1, tzinfo=zone),
            datetime(after.year, after.month, 1, tzinfo=zone),
        )

    @classmethod
    def of(cls, at: datetime, timezone: str) -> Period:
        local = at.astimezone(ZoneInfo(timezone))
        return cls(local.year, local.month)


MAX_RANGE_DAYS = 366  # an explicit from/to spans at most a year: a longer one is many statements


@dataclass(frozen=True)
class Range:
    """An explicit [start, end): a live report, never closed (only months are settled)."""

    start: datetime
    end: datetime

    @classmethod
    def of(cls, start: datetime, end: datetime) -> Range:
        if start.tzinfo is None or end.tzinfo is None:
            raise StatementError(
                "from and to must carry a UTC offset (e.g. 2026-12-01T00:00+08:00)"
            )
        if end <= start:
            raise StatementError("to must be after from")
        if (end - start).total_seconds() > MAX_RANGE_DAYS * 86400:
            raise StatementError(f"from/to may span at most {MAX_RANGE_DAYS} days")
        return cls(start, end)

    def __str__(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


def check_price(amount_minor: int, currency: str) -> tuple[int, str]:
    """Return a valid (amount, currency) or raise StatementError naming what is wrong."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise StatementError("amount_minor must be an integer number of minor units (fen, cents)")
    if not 0 <= amount_minor <= MAX_AMOUNT_MINOR:
        raise StatementError(f"amount_minor must be 0..{MAX_AMOUNT_MINOR}, not {amount_minor}")
    if not _CURRENCY.match(currency):
        raise StatementError(f"currency must be an ISO 4217 code such as CNY, not {currency!r}")
    return amount_minor, currency


def is_late(deposit_period: Period, statement_period: Period, closed: frozenset[Period]) -> bool:
    """Whether a deposit of `deposit_period` not frozen anywhere belongs in `statement_period`.

    It does when its own month was closed without it, and `statement_period` is the first open
    month after that: the month before it is closed too (every month in between is closed).
    """
    return (
        deposit_period < statement_period
        and deposit_period in closed
        and statement_period not in closed
        and statement_period.previous() in closed
    )


@dataclass(frozen=True)
class Price:
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class Deposit:
    """What a line is made of: the parcel, its site's policy and the price that applies."""

    parcel_row_id: str
    site_id: str
    parcel: Parcel
    policy: SitePolicy
    price: Price | None
    late: bool = False


@dataclass(frozen=True)
class Line:
    parcel_row_id: str
    tracking_no: str
    site_id: str
    cabinet_id: str
    compartment: str | None
    size: str | None
    courier_id: str | None
    status: str
    deposited_at: datetime
    left_at: datetime | None
    duration_s: int
    price_minor: int
    price_currency: str
    priced: bool
    overdue_days: int
    overdue_fee_minor: int
    fee_currency: str
    returned: bool
    late: bool

    @property
    def amounts(self) -> tuple[tuple[str, int], ...]:
        return (
            (self.price_currency, self.price_minor),
            (self.fee_currency, self.overdue_fee_minor),
        )


def line_of(deposit: Deposit, now: datetime) -> Line:
    """Return the statement line of one deposit at `now`."""
    parcel = deposit.parcel
    if parcel.deposited_at is None:
        raise StatementError(f"parcel {deposit.parcel_row_id!r} was never deposited")
    until = parcel.left_locker_at or now
    fee = overdue_fee(parcel, deposit.policy, now)
    price = deposit.price
    return Line(
        parcel_row_id=deposit.parcel_row_id,
        tracking_no=parcel.tracking_no,
        site_id=deposit.site_id,
        cabinet_id=parcel.cabinet_id,
        compartment=parcel.compartment,
        size=parcel.size,
        courier_id=parcel.courier_id,
        status=parcel.status.value,
        deposited_at=parcel.deposited_at,
        left_at=parcel.left_locker_at,
        duration_s=max(0, int((until - parcel.deposited_at).total_seconds())),
        price_minor=price.amount_minor if price else 0,
        price_currency=price.currency if price else deposit.policy.currency,
        priced=price is not None,
        overdue_days=fee.days,
        overdue_fee_minor=fee.amount_minor,
        fee_currency=fee.currency,
        returned=parcel.status in RETURNED,
        late=deposit.late,
    )


@dataclass
class CurrencyTotal:
    deposits: int = 0
    price_minor: int = 0
    overdue_fee_minor: int = 0
    returns: int = 0

    @property
    def total_minor(self) -> int:
        return self.price_minor + self.overdue_fee_minor


@dataclass
class Totals:
    """Running totals per currency: fed line by line, so an export holds no lines in memory.

    A line's deposit and return count under its price's currency; its fee under the fee's.
    """

    lines: int = 0
    by_currency: dict[str, CurrencyTotal] = field(default_factory=dict)

    def add(self, line: Line) -> None:
        self.lines += 1
        price = self.by_currency.setdefault(line.price_currency, CurrencyTotal())
        price.deposits += 1
        price.price_minor += line.price_minor
        price.returns += int(line.returned)
        fee = self.by_currency.setdefault(line.fee_currency, CurrencyTotal())
        fee.overdue_fee_minor += line.overdue_fee_minor

    @classmethod
    def of(cls, lines: Iterable[Line]) -> Totals:
        totals = cls()
        for line in lines:
            totals.add(line)
        return totals

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            currency: {
                "deposits": total.deposits,
                "returns": total.returns,
                "price_minor": total.price_minor,
                "overdue_fee_minor": total.overdue_fee_minor,
                "total_minor": total.total_minor,
            }
            for currency, total in sorted(self.by_currency.items())
        }


CSV_COLUMNS = (
    "parcel",
    "tracking_no",
    "site",
    "cabinet",
    "compartment",
    "size",
    "courier",
    "status",
    "deposited_at",
    "left_at",
    "duration_s",
    "price_minor",
    "price_currency",
    "priced",
    "overdue_days",
    "overdue_fee_minor",
    "fee_currency",
    "returned",
    "late",
)


# The XLSX's header, for the people who read it: Chinese and English.
COLUMN_LABELS = {
    "parcel": "包裹 parcel",
    "tracking_no": "运单号 tracking no",
    "site": "站点 site",
    "cabinet": "柜机 cabinet",
    "compartment": "格口 door",
    "size": "尺寸 size",
    "courier": "快递员 courier",
    "status": "状态 status",
    "deposited_at": "投递时间 deposited (UTC)",
    "left_at": "取出时间 left (UTC)",
    "duration_s": "滞留秒数 duration (s)",
    "price_minor": "投递费(分) price (minor units)",
    "price_currency": "币种 currency",
    "priced": "有价 priced",
    "overdue_days": "超期天数 overdue days",
    "overdue_fee_minor": "超期费(分) overdue fee (minor units)",
    "fee_currency": "超期费币种 fee currency",
    "returned": "退回 returned",
    "late": "迟到补入 late",
}


def line_row(line: Line) -> tuple[object, ...]:
    """The line as CSV/XLSX cells, in `CSV_COLUMNS` order (times as ISO 8601 UTC)."""
    return (
        line.parcel_row_id,
        line.tracking_no,
        line.site_id,
        line.cabinet_id,
        line.compartment or "",
        line.size or "",
        line.courier_id or "",
        line.status,
        line.deposited_at.isoformat(),
        line.left_at.isoformat() if line.left_at else "",
        line.duration_s,
        line.price_minor,
        line.price_currency,
        int(line.priced),
        line.overdue_days,
        line.overdue_fee_minor,
        line.fee_currency,
        int(line.returned),
        int(line.late),
    )


def total_rows(totals: Totals) -> list[tuple[object, ...]]:
    """The totals as rows after the lines: `#total`, currency, then the sums."""
    return [
        (
            "#total",
            currency,
            "deposits",
            t["deposits"],
            "returns",
            t["returns"],
            "price_minor",
            t["price_minor"],
            "overdue_fee_minor",
            t["overdue_fee_minor"],
            "total_minor",
            t["total_minor"],
        )
        for currency, t in totals.as_dict().items()
    ]


def line_json(line: Line) -> dict[str, object]:
    return dict(zip(CSV_COLUMNS, line_row(line), strict=True))
