"""Events no cabinet can have sent are refused (issue 11, part 4).

Finding: the worker stored any well-formed event: one dated 9999-12-31, or with seq 10^15 (or
past 2^53), which then waited behind a gap forever. A stolen cabinet credential could fill the
inbox with them. Now the core's `refusal` (cloud/core/ingest.py, the clock injected) screens
each delivery before it is stored: such an event is not stored, not acked, and a WARNING names
the cabinet, the seq and why; the cabinet's real events are still applied. What a cabinet
legitimately sends is not refused: old timestamps (back from days offline) and seqs within its
possible backlog. These tests go through the worker's real path: the MQTT payload bytes, the
topic, `decode_event`, and the ingest loop's batch transaction, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cloud.core.ingest import MAX_SEQ, MAX_SEQ_AHEAD, MAX_TS_AHEAD, refusal
from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import Cabinet, InboxEvent
from cloud.worker import IngestLoop
from cloud.worker.mqtt import Received
from protocol.codec import decode_event_ack, encode
from protocol.topics import event_topic
from tests.cloud.db.builders import CAB, SEAL_KEY, T0, deposited, register_cabinet

NOW = T0 + timedelta(minutes=5)  # the worker's clock, and when the deliveries arrived


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database with cabinet CAB-1 registered."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cloud.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as session:
        register_cabinet(session)
    yield engine
    engine.dispose()


class Acks:
    """Records the event-acks the loop publishes."""

    def __init__(self) -> None:
        self.upto: list[int] = []

    def __call__(self, topic: str, payload: bytes) -> bool:
        if topic.endswith("/event-ack"):
            self.upto.append(decode_event_ack(payload).upto)
        return True


def delivery(seq: int, *, ts: str | None = None, event_id: str | None = None) -> Received:
    """The bytes a client with CAB-1's credentials publishes: a deposit, its fields as given
    (by default the event id CAB-1-e<seq>, parcel P<seq>, a minute or less after T0)."""
    body = json.loads(encode(deposited(1)))
    body |= {"seq": seq, "id": event_id or f"{CAB}-e{seq}"}
    body["ts"] = ts or (T0 + timedelta(seconds=min(seq, 60))).strftime("%Y-%m-%dT%H:%M:%SZ")
    body["data"] |= {"parcel_id": f"P{seq}", "tracking_no": f"SF{seq:010d}"}
    return Received(event_topic(CAB), json.dumps(body).encode(), NOW)


def stored(engine: Engine) -> dict[int, tuple[str, bool]]:
    """seq -> (event id, applied) of CAB-1's stored events."""
    with Session(engine) as session:
        rows = session.exec(
            select(InboxEvent.seq, InboxEvent.event_id, InboxEvent.applied).where(
                col(InboxEvent.cabinet_id) == CAB
            )
        )
        return {seq: (event_id, applied) for seq, event_id, applied in rows}


def applied_upto(engine: Engine) -> int:
    with Session(engine) as session:
        cabinet = session.get(Cabinet, CAB)
        assert cabinet is not None
        return cabinet.applied_upto


def refused_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().startswith("refused event")
    ]


def test_an_event_dated_9999_is_refused_and_the_real_one_under_its_seq_applies(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding: `ts` 9999-12-31 was stored and applied (its parcel's clocks set in year 9999).
    Now it is refused with a logged reason; the cabinet's real event with that seq applies."""
    acks = Acks()
    loop = IngestLoop(engine=engine, publish=acks, seal_key=SEAL_KEY, clock=lambda: NOW)
    caplog.set_level(logging.WARNING)

    loop.handle([delivery(1, ts="9999-12-31T23:59:59Z", event_id="forged-1")])
    assert stored(engine) == {}
    assert acks.upto == []  # nothing stored, nothing acked
    (line,) = refused_lines(caplog)
    assert "forged-1" in line and f"cabinet {CAB}, seq 1:" in line
    assert "9999-12-31" in line and "ahead of the cloud's clock" in line

    loop.handle([delivery(1), delivery(2)])
    assert stored(engine) == {1: (f"{CAB}-e1", True), 2: (f"{CAB}-e2", True)}
    assert applied_upto(engine) == 2 and acks.upto == [2]


@pytest.mark.parametrize(
    "seq",
    [2**53 + 1, 10**15, 1 + MAX_SEQ_AHEAD + 1],
    ids=["past-2^53", "10^15", "just-past-the-window"],
)
def test_an_absurd_seq_is_refused_not_left_pending_forever(
    engine: Engine, caplog: pytest.LogCaptureFixture, seq: int
) -> None:
    """Finding: an event with seq 10^15 was stored and waited behind a gap forever. Now a seq
    past 2^53 or more than MAX_SEQ_AHEAD past the last applied one is refused, and logged; the
    next real event still applies."""
    acks = Acks()
    loop = IngestLoop(engine=engine, publish=acks, seal_key=SEAL_KEY, clock=lambda: NOW)
    loop.handle([delivery(1)])
    caplog.set_level(logging.WARNING)

    loop.handle([delivery(seq, event_id="forged-seq"), delivery(2)])
    assert stored(engine) == {1: (f"{CAB}-e1", True), 2: (f"{CAB}-e2", True)}
    assert applied_upto(engine) == 2 and acks.upto == [1, 2]
    (line,) = refused_lines(caplog)
    assert f"cabinet {CAB}, seq {seq}:" in line
    assert "MAX_SEQ" in line  # MAX_SEQ or MAX_SEQ_AHEAD: the rule that refused it


def test_what_a_real_cabinet_sends_is_not_refused(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Back from 30 days offline, a cabinet resends old events with their old times; its clock
    may run a little ahead; an event beyond a gap, within the window, waits for the gap."""
    acks = Acks()
    loop = IngestLoop(engine=engine, publish=acks, seal_key=SEAL_KEY, clock=lambda: NOW)
    caplog.set_level(logging.WARNING)
    month_ago = (NOW - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    almost_a_day_ahead = (NOW + MAX_TS_AHEAD - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    far = 1 + MAX_SEQ_AHEAD  # the last seq the window takes after seq 1 is applied
    loop.handle([delivery(1, ts=month_ago), delivery(2, ts=almost_a_day_ahead)])
    loop.handle([delivery(far)])
    assert refused_lines(caplog) == []
    assert {seq: applied for seq, (_, applied) in stored(engine).items()} == {
        1: True,
        2: True,
        far: False,  # waits for 3..far-1, as any event beyond a gap does
    }
    assert acks.upto == [2, 2]


def test_the_windows_as_arithmetic() -> None:
    """The stated limits, and the pure rule at their edges (the clock injected)."""
    # 2^53: the last integer a JSON reader holding numbers as doubles keeps exactly; a cabinet
    # sending 1,000 events a second would need 285,000 years to reach it.
    assert MAX_SEQ == 2**53 == 9_007_199_254_740_992
    assert MAX_SEQ / (1_000 * 86_400 * 365.25) > 285_000
    # The seq window covers a backlog of 100 days offline at one event a second, far beyond a
    # busy cabinet's few thousand events a day.
    assert MAX_SEQ_AHEAD >= 100 * 86_400 * 1
    # A cabinet's clock may run up to a day fast; an old timestamp is never refused.
    assert MAX_TS_AHEAD.total_seconds() == 24 * 3600
    now = datetime(2026, 12, 4, 12, tzinfo=UTC)
    ok = {"applied_upto": 7, "now": now}
    assert refusal(seq=8, ts=now + MAX_TS_AHEAD, **ok) is None
    assert refusal(seq=8, ts=now + MAX_TS_AHEAD + timedelta(seconds=1), **ok) is not None
    assert refusal(seq=8, ts=datetime(2001, 1, 1, tzinfo=UTC), **ok) is None
    assert refusal(seq=7 + MAX_SEQ_AHEAD, ts=now, **ok) is None
    assert refusal(seq=7 + MAX_SEQ_AHEAD + 1, ts=now, **ok) is not None
    assert refusal(seq=MAX_SEQ, ts=now, applied_upto=MAX_SEQ - 1, now=now) is None
    assert refusal(seq=MAX_SEQ + 1, ts=now, applied_upto=MAX_SEQ, now=now) is not None
