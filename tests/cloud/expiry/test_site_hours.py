"""A parcel's life on the worker at a night and at a day hour of its site, by an injected clock.

The site keeps the default quiet hours (22:00-08:00, Asia/Shanghai). Whatever hour this suite
runs at, the same parcel is deposited once at 10:00 and once at 23:30 of the site's wall clock,
and the worker's loop is ticked every 30 minutes of injected time for four days. At either hour:
the parcel expires at its deadline to the tick, the cabinet is told at once, and no text but the
deposit notice (urgent) reaches the recipient in quiet hours.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.core.policies import SitePolicy
from cloud.db.models import Parcel
from cloud.fakes.twilio_server import FakeTwilio
from cloud.services.ingest import apply_pending, store_events
from tests.cloud.db.builders import CAB, PHONE, SEAL_KEY, deposited, register_cabinet
from tests.cloud.expiry.test_housekeeper import Clock, make_worker

ZONE = ZoneInfo("Asia/Shanghai")
TICK = timedelta(minutes=30)
WINDOW = timedelta(hours=72)  # the default pickup window
DEFAULT_POLICY = SitePolicy()


def site_time(hour: int, minute: int) -> datetime:
    return datetime(2026, 3, 10, hour, minute, tzinfo=ZONE)


@pytest.mark.parametrize(
    "deposited_at",
    [site_time(23, 30), site_time(10, 0)],
    ids=["site-night", "site-day"],
)
def test_expiry_and_notices_keep_the_site_hours(
    engine: Engine, deposited_at: datetime, twilio: FakeTwilio
) -> None:
    assert DEFAULT_POLICY.quiet_start == time(22, 0) and DEFAULT_POLICY.quiet_end == time(8, 0)
    with Session(engine) as session:
        register_cabinet(session)
        store_events(session=session, cab=CAB, envelopes=[deposited(1)], now=deposited_at)
        apply_pending(session=session, cab=CAB, now=deposited_at, seal_key=SEAL_KEY)
    clock = Clock(deposited_at)
    published: list = []
    worker = make_worker(engine, twilio, clock, published)

    texts: list[datetime] = []  # when each text to the recipient was accepted
    expired_seen_at: datetime | None = None
    while clock.now <= deposited_at + WINDOW + timedelta(hours=12):
        before = len(twilio.sent_to(PHONE))
        worker._dispatch()
        texts += [clock.now] * (len(twilio.sent_to(PHONE)) - before)
        if expired_seen_at is None and "codes.revoke" in [t for _, t in published]:
            expired_seen_at = clock.now
        clock.now += TICK

    deadline = deposited_at + WINDOW
    # Expiry does not wait for the morning: the cabinet is told at the deadline's tick.
    assert expired_seen_at == deadline
    with Session(engine) as session:
        [parcel] = session.exec(select(Parcel)).all()
        assert parcel.status == "expired"
    # The deposit notice at once; a reminder before the deadline; the expiry notice after it.
    assert len(texts) == 3, texts
    deposit_text, reminder, expiry_text = texts
    assert deposit_text == deposited_at
    assert reminder < deadline <= expiry_text
    for sent in (reminder, expiry_text):
        assert not DEFAULT_POLICY.is_quiet(sent), sent.astimezone(ZONE)
    if deposited_at.hour == 23:  # the night: both wait for 08:00
        assert reminder.astimezone(ZONE).time() == time(8, 0)
        assert expiry_text.astimezone(ZONE).time() == time(8, 0)
    else:  # the day: 24 h before the deadline, and at the deadline
        assert reminder == deadline - timedelta(hours=24)
        assert expiry_text == deadline
