"""The expiry scan judges only the parcels whose check time has come, and that loses nothing.

Before, every scan (every 30 s) read and judged every parcel in a locker: 2.8 s of CPU at 50,000
parcels. Now every write of a parcel through the core sets `due_check_at`, its next reminder or
deadline, and a scan reads the parcels whose time has come (and any without one). The
reference is the old behaviour, a full scan every time: run side by side over four days of
scans on two databases, both remind and expire the same parcels at the same scans.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select, update

from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import Parcel
from cloud.services.expiry import run_due
from cloud.services.ingest import apply_pending, store_events
from cloud.worker.presence import apply_state
from tests.cloud.db.builders import CAB, SEAL_KEY, T0, deposited, register_cabinet
from tests.cloud.worker.harness import birth, will

HOUR = timedelta(hours=1)
PARCELS = 12  # deposited an hour apart: their reminders (48 h) and deadlines (72 h) spread out


def _fill(engine: Engine) -> None:
    with Session(engine) as session:
        register_cabinet(session)
        apply_state(session=session, state=birth(CAB, 1), received_at=T0 - HOUR, seal_key=SEAL_KEY)
        for n in range(1, PARCELS + 1):
            at = T0 + (n - 1) * HOUR
            store_events(session=session, cab=CAB, envelopes=[deposited(n)], now=at)
            apply_pending(session=session, cab=CAB, now=at, seal_key=SEAL_KEY)


def _scan(engine: Engine, at: timedelta, *, full: bool = False, chunk: int = 5):
    # Five parcels a transaction: the twelve here take three, as 50,000 take 25 of 2,000.
    with Session(engine) as session:
        return run_due(session=session, now=T0 + at, seal_key=SEAL_KEY, full=full, chunk=chunk)


def _checks(engine: Engine) -> dict[str, object]:
    with Session(engine) as session:
        rows = session.exec(select(Parcel.parcel_id, Parcel.due_check_at)).all()
    return dict(rows)


@pytest.fixture
def filled(engine: Engine) -> Engine:
    _fill(engine)
    return engine


def test_a_scan_judges_only_the_parcels_whose_time_came(filled: Engine) -> None:
    # The deposit wrote each one's next reminder (deposit + 48 h for the site's 72 h window).
    checks = _checks(filled)
    assert checks["P000001"] == T0 + 48 * HOUR and checks["P000012"] == T0 + 59 * HOUR
    assert _scan(filled, 12 * HOUR).judged == 0
    assert _scan(filled, 47 * HOUR).judged == 0
    reminders = _scan(filled, 49 * HOUR)  # P1's and P2's reminders are due
    assert (reminders.judged, reminders.reminded) == (2, 2)
    # The reminder's write set the next check: the deadline.
    assert _checks(filled)["P000001"] == T0 + 72 * HOUR
    assert _scan(filled, 49 * HOUR + timedelta(minutes=1)).judged == 0


def test_a_parcel_with_no_check_time_is_judged_at_the_next_scan(filled: Engine) -> None:
    """Parcels already in a locker when 0024_expiry_check came have none: judged once."""
    with Session(filled) as session:
        session.exec(update(Parcel).values(due_check_at=None))
        session.commit()
    first = _scan(filled, 12 * HOUR)
    assert first.judged == PARCELS and first.next_due_at == T0 + 48 * HOUR
    assert _checks(filled)["P000001"] == T0 + 48 * HOUR
    assert _scan(filled, 13 * HOUR).judged == 0


def test_a_change_to_a_parcel_sets_its_check_afresh(filled: Engine) -> None:
    # The cabinet goes offline: every parcel's clock pauses, nothing is pending; each is looked
    # at again an hour later (or at its resume).
    with Session(filled) as session:
        apply_state(session=session, state=will(CAB, 1), received_at=T0 + 13 * HOUR,
                    seal_key=SEAL_KEY)  # fmt: skip
    assert set(_checks(filled).values()) == {T0 + 14 * HOUR}
    assert _scan(filled, 14 * HOUR).judged == PARCELS  # still paused: an hour more
    assert set(_checks(filled).values()) == {T0 + 15 * HOUR}
    back = T0 + 14 * HOUR + timedelta(minutes=30)
    with Session(filled) as session:
        apply_state(session=session, state=birth(CAB, 2), received_at=back, seal_key=SEAL_KEY)
    # The resume moved each deadline by the pause (1 h 30 min): P1's reminder with it.
    assert _checks(filled)["P000001"] == T0 + 48 * HOUR + 90 * timedelta(minutes=1)
    assert _scan(filled, 14 * HOUR + timedelta(minutes=31)).judged == 0


@pytest.fixture
def twin(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A second database of `engine`'s kind, for the reference run (a full scan every time)."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'twin.db'}"
    else:
        url = request.getfixturevalue("postgres_factory")().url
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_over_four_days_it_reminds_and_expires_as_a_full_scan_would(
    filled: Engine, twin: Engine
) -> None:
    _fill(twin)
    outage = (30 * HOUR, 33 * HOUR)  # the cabinet offline for three hours on the way
    at = timedelta(0)
    seen: list[tuple[int, int]] = []
    while at <= 96 * HOUR:
        for engine in (filled, twin):
            if at == outage[0]:
                with Session(engine) as session:
                    apply_state(session=session, state=will(CAB, 1), received_at=T0 + at,
                                seal_key=SEAL_KEY)  # fmt: skip
            if at == outage[1]:
                with Session(engine) as session:
                    apply_state(session=session, state=birth(CAB, 2), received_at=T0 + at,
                                seal_key=SEAL_KEY)  # fmt: skip
        mine, reference = _scan(filled, at), _scan(twin, at, full=True)
        assert (mine.reminded, mine.expired) == (reference.reminded, reference.expired), at
        seen.append((mine.reminded, mine.expired))
        at += HOUR / 2  # a scan every half hour
    # Every parcel was reminded once and expired once, on both.
    assert sum(r for r, _e in seen) == PARCELS and sum(e for _r, e in seen) == PARCELS
    with Session(filled) as session:
        statuses = set(session.exec(select(Parcel.status)).all())
    assert statuses == {"expired"}
