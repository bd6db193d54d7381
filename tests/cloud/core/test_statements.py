"""The statement's rules in the core: periods, prices, lines, totals that add up, late deposits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as strat

from cloud.core.parcels import Parcel, Status
from cloud.core.policies import SitePolicy
from cloud.core.statements import (
    MAX_AMOUNT_MINOR,
    Deposit,
    Period,
    Price,
    StatementError,
    Totals,
    check_price,
    is_late,
    line_of,
)

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_a_month_is_taken_in_the_sites_time_zone() -> None:
    start, end = Period.parse("2026-12").bounds("Asia/Shanghai")
    assert start.astimezone(UTC) == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert end.astimezone(UTC) == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    # 00:30 on 1 December in Shanghai is still November in UTC, but December's.
    assert Period.of(datetime(2026, 11, 30, 16, 30, tzinfo=UTC), "Asia/Shanghai") == Period(
        2026, 12
    )
    assert Period(2026, 12).next() == Period(2027, 1) and Period(2027, 1).previous() == Period(
        2026, 12
    )


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-12", "2026-12-01", ""])
def test_a_bad_period_is_refused_by_name(text: str) -> None:
    with pytest.raises(StatementError, match="period must be YYYY-MM"):
        Period.parse(text)


def test_prices_are_integer_minor_units_with_a_currency() -> None:
    assert check_price(50, "CNY") == (50, "CNY")
    for amount, currency in ((0.5, "CNY"), (True, "CNY"), (-1, "CNY"), (50, "cny"), (50, "RMB1")):
        with pytest.raises(StatementError):
            check_price(amount, currency)  # type: ignore[arg-type]
    # The cap leaves room: a million lines at the largest price still fit a signed BIGINT.
    assert 1_000_000 * MAX_AMOUNT_MINOR < 2**63


def test_late_deposits_go_to_the_first_open_month_after_theirs() -> None:
    oct_, nov, dec, jan = Period(2026, 10), Period(2026, 11), Period(2026, 12), Period(2027, 1)
    closed = frozenset({oct_, nov})
    assert is_late(oct_, dec, closed) and is_late(nov, dec, closed)
    assert not is_late(nov, jan, closed)  # December is open: it holds them, not January
    assert not is_late(nov, nov, closed)  # a closed month's own lines are frozen ones
    assert not is_late(oct_, dec, frozenset({nov}))  # October is open: its own statement


def _deposit(status: Status, left_after: timedelta | None, fee: int = 100) -> Deposit:
    parcel = Parcel(
        status=status,
        tracking_no="SF1",
        cabinet_id="CAB-1",
        phone="",
        compartment="A01",
        size="M",
        courier_id="c-1",
        deposited_at=T0,
        clock_started_at=T0,
        window_s=3 * 86400,
        left_locker_at=T0 + left_after if left_after is not None else None,
    )
    policy = SitePolicy(overdue_fee_per_day_minor=fee, currency="CNY")
    return Deposit("row-1", "site-1", parcel, policy, Price(50, "CNY"))


def test_a_line_has_the_duration_the_price_and_the_overdue_fee() -> None:
    picked = line_of(_deposit(Status.PICKED_UP, timedelta(hours=5)), T0 + 10 * DAY)
    assert (picked.duration_s, picked.price_minor, picked.overdue_fee_minor) == (5 * 3600, 50, 0)
    retrieved = line_of(_deposit(Status.RETRIEVED, 4 * DAY + timedelta(hours=1)), T0 + 10 * DAY)
    assert (retrieved.overdue_days, retrieved.overdue_fee_minor, retrieved.returned) == (
        2,
        200,
        True,
    )
    waiting = line_of(_deposit(Status.IN_LOCKER, None), T0 + DAY)
    assert waiting.duration_s == 86400 and waiting.left_at is None


_lines = strat.builds(
    lambda status, left_h, fee, price, currency, now_h: line_of(
        Deposit(
            "row",
            "site",
            _deposit(status, timedelta(hours=left_h) if left_h is not None else None, fee).parcel,
            SitePolicy(overdue_fee_per_day_minor=fee, currency=currency[0]),
            Price(price, currency[1]) if price is not None else None,
        ),
        T0 + timedelta(hours=now_h),
    ),
    strat.sampled_from([Status.IN_LOCKER, Status.PICKED_UP, Status.RETRIEVED, Status.RETURNED]),
    strat.none() | strat.integers(0, 24 * 30),
    strat.integers(0, 10_000),
    strat.none() | strat.integers(0, MAX_AMOUNT_MINOR),
    strat.sampled_from([("CNY", "CNY"), ("CNY", "HKD"), ("USD", "USD")]),
    strat.integers(0, 24 * 40),
)


@given(strat.lists(_lines, max_size=40))
def test_the_totals_are_the_sums_of_the_lines(lines: list) -> None:
    totals = Totals.of(lines)
    assert totals.lines == len(lines)
    currencies = {c for line in lines for c, _ in line.amounts}
    assert set(totals.by_currency) == currencies
    for currency, total in totals.as_dict().items():
        price = sum(line.price_minor for line in lines if line.price_currency == currency)
        fee = sum(line.overdue_fee_minor for line in lines if line.fee_currency == currency)
        assert (total["price_minor"], total["overdue_fee_minor"]) == (price, fee)
        assert total["total_minor"] == price + fee
        assert total["deposits"] == sum(1 for line in lines if line.price_currency == currency)
        assert all(isinstance(v, int) for v in total.values())
    assert sum(t["deposits"] for t in totals.as_dict().values()) == len(lines)


def test_who_reads_a_carriers_statement() -> None:
    from cloud.core.access import Action, Principal, Resource, ResourceKind, decide
    from cloud.core.access import PrincipalKind as K

    sf = Resource(ResourceKind.CARRIER, "SF")
    may = {
        "operator": Principal(K.OPERATOR_ADMIN, "root"),
        "its account": Principal(K.CARRIER, "a", carrier_id="SF"),
        "its key": Principal(K.ERP_CLIENT, "k", carrier_id="SF"),
    }
    may_not = {
        "a rival's account": (Principal(K.CARRIER, "b", carrier_id="ZTO"), 404),
        "a rival's key": (Principal(K.ERP_CLIENT, "k2", carrier_id="ZTO"), 404),
        "a merchant's key": (Principal(K.ERP_CLIENT, "k3", merchant_id="shop"), 404),
        "a site manager": (Principal(K.SITE_MANAGER, "m", site_ids=frozenset({"s"})), 403),
    }
    for who, principal in may.items():
        assert decide(principal, Action.READ_SETTLEMENTS, sf).allowed, who
    for who, (principal, status) in may_not.items():
        assert decide(principal, Action.READ_SETTLEMENTS, sf).http_status == status, who


def test_every_column_has_a_chinese_and_english_label() -> None:
    from cloud.core.statements import COLUMN_LABELS, CSV_COLUMNS

    assert list(COLUMN_LABELS) == list(CSV_COLUMNS)
    for label in COLUMN_LABELS.values():
        assert any("\u4e00" <= ch <= "\u9fff" for ch in label) and any(ch.isascii() for ch in label)
