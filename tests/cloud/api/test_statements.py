"""Courier statements (对账单) through the API, on both databases: lines, prices, fees, exports,
who may read them, and a closed month that never changes."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.core.statements import Period
from cloud.db import statements as db_statements
from cloud.db.models import Carrier, ErpApiKey, ErpKeySite, Site
from cloud.errors import Conflict
from cloud.services import statements as svc
from cloud.services.audit import entries
from cloud.services.queries import hash_api_key
from tests.cloud.api.conftest import CARRIER, HEADERS, NOW, apply, deposit
from tests.cloud.db.builders import SITE, T0, deposited, picked_up

MAY = "2024-05"  # NOW is 2024-05-01 10:05 in Asia/Shanghai, the site's time zone
URL = "/api/v1/statements"
OTHER_KEY = "erp-other-key-0123456789abcdef01234567"


def _price(engine: Engine, amount: int, size: str = "M", currency: str = "CNY") -> None:
    with Session(engine) as session:
        svc.set_price(
            session=session,
            site_id=SITE,
            carrier_id=CARRIER,
            size=size,
            amount_minor=amount,
            currency=currency,
            now=T0,
        )


def _other_key(engine: Engine, *, merchant: bool = False) -> dict[str, str]:
    with Session(engine) as session:
        if not merchant:
            session.add(Carrier(id="ZTO", name="ZTO", created_at=T0))
            session.flush()
        session.add(
            ErpApiKey(
                id="erp-2",
                name="Other",
                key_prefix=OTHER_KEY[:8],
                key_hash=hash_api_key(OTHER_KEY),
                carrier_id=None if merchant else "ZTO",
                merchant_id="shop-1" if merchant else None,
                created_at=T0,
            )
        )
        session.flush()
        session.add(ErpKeySite(key_id="erp-2", site_id=SITE))
        session.commit()
    return {"X-API-Key": OTHER_KEY}


def test_statement_lists_each_deposit_priced_with_totals(client: TestClient) -> None:
    engine = client.app.state.engine
    deposit(engine, 3)
    _price(engine, 150)
    answer = client.get(URL, params={"carrier": CARRIER, "period": MAY}, headers=HEADERS)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [line["tracking_no"] for line in body["lines"]] == [
        "SF0000000001",
        "SF0000000002",
        "SF0000000003",
    ]
    line = body["lines"][0]
    assert (line["cabinet"], line["size"], line["price_minor"], line["price_currency"]) == (
        "CAB-1",
        "M",
        150,
        "CNY",
    )
    assert line["duration_s"] == (NOW - (T0 + timedelta(seconds=1))).total_seconds()
    assert body["totals"] == {
        "CNY": {
            "deposits": 3,
            "returns": 0,
            "price_minor": 450,
            "overdue_fee_minor": 0,
            "total_minor": 450,
        }
    }
    assert not body["closed"]


def test_the_price_change_is_audited_and_a_bad_price_changes_nothing(client: TestClient) -> None:
    engine = client.app.state.engine
    _price(engine, 150)
    with Session(engine) as session:
        for bad in ({"amount_minor": -1}, {"currency": "yuan"}, {"size": "XXL"}):
            args = {"amount_minor": 99, "currency": "CNY", "size": "M"} | bad
            try:
                svc.set_price(session=session, site_id=SITE, carrier_id=CARRIER, now=T0, **args)
            except svc.StatementInputError as err:
                assert next(iter(bad)).split("_")[0] in str(err)
            else:
                raise AssertionError(f"{bad} was accepted")
        assert [(p.amount_minor, p.currency) for p in svc.list_prices(session=session)] == [
            (150, "CNY")
        ]
        (row,) = [
            e
            for e in entries(session=session, resource_id=SITE)
            if e.detail.get("op") == "set price"
        ]
        assert row.action == "manage_registry" and row.detail["amount_minor"] == 150


def test_overdue_fee_and_returns_are_on_the_line(client: TestClient) -> None:
    engine = client.app.state.engine
    with Session(engine) as session:
        site = session.get(Site, SITE)
        assert site is not None
        site.overdue_fee_per_day_minor = 100
        session.add(site)
        session.commit()
    deposit(engine, 2)
    apply(engine, picked_up(3, 1))
    client.app.state.clock.advance(3 * 24 * 3600 + 3600)  # past the 72 h window by an hour
    body = client.get(URL, params={"carrier": CARRIER, "period": MAY}, headers=HEADERS).json()
    fees = {
        line["tracking_no"]: (line["overdue_days"], line["overdue_fee_minor"])
        for line in body["lines"]
    }
    assert fees == {"SF0000000001": (0, 0), "SF0000000002": (1, 100)}
    assert body["totals"]["CNY"]["overdue_fee_minor"] == 100


def test_csv_and_xlsx_hold_the_same_lines_and_totals(client: TestClient) -> None:
    engine = client.app.state.engine
    deposit(engine, 4)
    _price(engine, 50)
    params = {"carrier": CARRIER, "period": MAY}
    by_path = client.get(URL + ".csv", params=params, headers=HEADERS)
    by_accept = client.get(URL, params=params, headers=HEADERS | {"Accept": "text/csv"})
    assert by_path.headers["content-type"].startswith("text/csv")
    assert by_path.text == by_accept.text
    rows = list(csv.reader(io.StringIO(by_path.text)))
    assert rows[0][:2] == ["parcel", "tracking_no"] and len(rows) == 1 + 4 + 1
    assert rows[-1][:2] == ["#total", "CNY"] and rows[-1][7] == "200"
    xlsx = client.get(URL + ".xlsx", params=params, headers=HEADERS)
    assert xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(xlsx.content), read_only=True).active
    cells = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert len(cells) == 6 and cells[-1][7] == 200


def test_a_key_of_another_carrier_gets_the_404_of_an_unknown_one(client: TestClient) -> None:
    engine = client.app.state.engine
    deposit(engine, 1)
    other = _other_key(engine)
    for path in (URL, URL + ".csv", URL + ".xlsx"):
        theirs = client.get(path, params={"carrier": CARRIER, "period": MAY}, headers=other)
        unknown = client.get(path, params={"carrier": "nobody", "period": MAY}, headers=HEADERS)
        assert theirs.status_code == unknown.status_code == 404
        assert theirs.json()["detail"] == f"no carrier {CARRIER!r}"
        assert CARRIER not in unknown.text and "SF000" not in theirs.text


def test_a_merchant_key_reads_no_statement(client: TestClient) -> None:
    deposit(client.app.state.engine, 1)
    merchant = _other_key(client.app.state.engine, merchant=True)
    answer = client.get(URL, params={"carrier": CARRIER, "period": MAY}, headers=merchant)
    assert answer.status_code == 404


def test_a_bad_period_is_a_422_naming_it(client: TestClient) -> None:
    for bad in ("2024-13", "2024-5", "May"):
        answer = client.get(URL, params={"carrier": CARRIER, "period": bad}, headers=HEADERS)
        assert answer.status_code == 422 and "period" in answer.text


def test_a_closed_month_never_changes_and_late_deposits_go_to_the_next(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = client.app.state.engine
    # Freeze in batches of one: lines are written while the month is still being read.
    monkeypatch.setattr(db_statements, "CHUNK", 1)
    deposit(engine, 2)
    _price(engine, 150)
    june_1 = datetime(2024, 6, 1, tzinfo=UTC)
    with Session(engine) as session:
        with pytest.raises(Conflict, match="has not ended yet"):
            svc.close_period(session=session, carrier_id=CARRIER, period=Period(2024, 5), now=NOW)
        totals = svc.close_period(
            session=session, carrier_id=CARRIER, period=Period(2024, 5), now=june_1
        )
        with pytest.raises(Conflict, match="closed already"):
            svc.close_period(
                session=session, carrier_id=CARRIER, period=Period(2024, 5), now=june_1
            )
    assert totals.lines == 2
    before = client.get(
        URL + ".csv", params={"carrier": CARRIER, "period": MAY}, headers=HEADERS
    ).text
    # After closing: the price changes, parcel 1 is picked up, and a deposit made in May by a
    # cabinet that was offline reaches the cloud only now.
    _price(engine, 999)
    apply(engine, picked_up(3, 1), deposited(4), now=june_1 + timedelta(hours=1))
    client.app.state.clock.now = june_1 + timedelta(days=1)
    after = client.get(
        URL + ".csv", params={"carrier": CARRIER, "period": MAY}, headers=HEADERS
    ).text
    assert after == before
    may = client.get(URL, params={"carrier": CARRIER, "period": MAY}, headers=HEADERS).json()
    assert may["closed"] and may["totals"]["CNY"]["price_minor"] == 300
    june = client.get(URL, params={"carrier": CARRIER, "period": "2024-06"}, headers=HEADERS).json()
    assert [(line["tracking_no"], line["late"], line["price_minor"]) for line in june["lines"]] == [
        ("SF0000000004", 1, 999)
    ]
    # July does not list it again: June (open) holds it.
    july = client.get(URL, params={"carrier": CARRIER, "period": "2024-07"}, headers=HEADERS).json()
    assert july["lines"] == []


def test_an_explicit_range_is_a_live_report_of_its_deposits(client: TestClient) -> None:
    engine = client.app.state.engine
    deposit(engine, 3)  # at T0 + 1 s, + 2 s, + 3 s
    params = {
        "carrier": CARRIER,
        "from": (T0 + timedelta(seconds=2)).isoformat(),
        "to": (T0 + timedelta(seconds=3)).isoformat(),
    }
    body = client.get(URL, params=params, headers=HEADERS).json()
    assert [line["tracking_no"] for line in body["lines"]] == ["SF0000000002"]
    assert body["period"] == f"{params['from']}/{params['to']}" and not body["closed"]
    csv_rows = list(
        csv.reader(io.StringIO(client.get(URL + ".csv", params=params, headers=HEADERS).text))
    )
    assert len(csv_rows) == 1 + 1 + 1


def test_a_bad_range_is_a_422_naming_the_field(client: TestClient) -> None:
    start = T0.isoformat()
    cases = {
        ("from", "to"): {"from": start},  # no end
        ("to",): {"from": start, "to": (T0 - timedelta(hours=1)).isoformat()},  # before
        # 366 days is the most one report spans: a day more is refused.
        ("366 days",): {"from": start, "to": (T0 + timedelta(days=367)).isoformat()},
        ("not both",): {"period": MAY, "from": start, "to": (T0 + timedelta(days=1)).isoformat()},
        ("UTC offset",): {"from": "2024-05-01T00:00:00", "to": "2024-05-02T00:00:00"},
    }
    for words, params in cases.items():
        answer = client.get(URL, params={"carrier": CARRIER} | params, headers=HEADERS)
        assert answer.status_code == 422, (params, answer.text)
        assert any(word in answer.text for word in words), answer.text
    ok = {"from": start, "to": (T0 + timedelta(days=366)).isoformat()}
    assert client.get(URL, params={"carrier": CARRIER} | ok, headers=HEADERS).status_code == 200


def test_a_month_too_big_for_json_or_a_worksheet_names_the_csv(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    deposit(client.app.state.engine, 3)
    params = {"carrier": CARRIER, "period": MAY}
    monkeypatch.setattr(svc, "MAX_JSON_LINES", 2)
    monkeypatch.setattr(svc, "XLSX_MAX_ROWS", 2 + 1 + 16)  # room for 2 lines, not 3
    for path in (URL, URL + ".xlsx"):
        answer = client.get(path, params=params, headers=HEADERS)
        assert answer.status_code == 409 and "CSV" in answer.json()["detail"], path
    csv_answer = client.get(URL + ".csv", params=params, headers=HEADERS)
    assert len(csv_answer.text.splitlines()) == 1 + 3 + 1
