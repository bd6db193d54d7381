"""The pure rules of alarms (severity, the open key, code guessing, offline, the managers' text)
and of reports (local days, dwell buckets, occupancy by hour)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cloud.core import alarms as a
from cloud.core import reports as r
from cloud.core.notices import NoticeContext, NoticeKind, render
from cloud.core.policies import Language, SitePolicy

T = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_severity_and_who_is_told() -> None:
    assert a.severity("door.forced") is a.Severity.CRITICAL
    assert a.severity("door.left_open") is a.Severity.WARNING
    assert a.severity("some.future_kind") is a.Severity.WARNING
    critical = {a.AlarmKind.DOOR_FORCED, a.AlarmKind.LOCK_FAULT}
    critical |= {a.AlarmKind.CABINET_OFFLINE, a.AlarmKind.BRUTE_FORCE}
    critical |= {a.AlarmKind.OCCUPANCY_MISMATCH}  # a parcel gone or left: someone must look
    assert critical == a.NOTIFIED
    assert a.open_key("CAB-1", None, "cabinet.offline") == "CAB-1/*/cabinet.offline"
    assert a.open_key("CAB-1", "A02", "door.forced") == "CAB-1/A02/door.forced"


def test_code_guessing_is_three_lockouts_within_fifteen_minutes() -> None:
    rule = a.BRUTE_FORCE
    three = [T, T + timedelta(minutes=7), T + timedelta(minutes=14)]
    assert a.is_brute_force(three, three[-1], rule)
    spread = [T, T + timedelta(minutes=8), T + timedelta(minutes=16)]
    assert not a.is_brute_force(spread, spread[-1], rule)
    assert not a.is_brute_force(three[:2], three[1], rule)


def test_offline_too_long() -> None:
    assert a.offline_too_long(online=False, since=T, now=T + timedelta(seconds=600), after_s=600)
    assert not a.offline_too_long(
        online=False, since=T, now=T + timedelta(seconds=599), after_s=600
    )
    assert not a.offline_too_long(online=True, since=T, now=T + timedelta(days=1), after_s=600)
    assert not a.offline_too_long(online=None, since=None, now=T, after_s=600)


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (Language.ZH_CN, "【告警】Gate 1（1 Road）A02号格口：柜门被撬，5月1日 10:00。"),
        (Language.EN, "ALARM at Gate 1 (1 Road), door A02: Door forced open at 10:00 on 1 May"),
    ],
)
def test_the_managers_text_names_cabinet_door_kind_and_local_time(
    language: Language, expected: str
) -> None:
    policy = SitePolicy(language=language)
    context = NoticeContext(
        cabinet="Gate 1",
        address="1 Road",
        tracking_no="",
        deadline=T,
        link="https://x/console/alarms",
        what=a.kind_name("door.forced", language),
        where=a.where_text("A02", language),
    )
    text = render(NoticeKind.ALARM, language, context, policy)
    assert text.startswith(expected) and text.endswith("https://x/console/alarms")


@pytest.mark.parametrize(
    ("utc_hour", "sent_at"),
    [(2, datetime(2024, 5, 1, 2, tzinfo=UTC)), (15, datetime(2024, 5, 2, 0, tzinfo=UTC))],
    ids=["10:00 local: at once", "23:00 local: at 08:00"],
)
def test_the_managers_notice_waits_out_the_quiet_hours(utc_hour: int, sent_at: datetime) -> None:
    assert a.notice_after(T.replace(hour=utc_hour), SitePolicy()) == sent_at


def fact(deposited: datetime, left: datetime | None, status: str, carrier: str = "SF"):
    return r.ParcelFact(deposited, left, status, carrier)


def test_days_are_the_sites_days() -> None:
    period = r.Period(date(2024, 5, 1), date(2024, 5, 2), SHANGHAI)
    late = datetime(2024, 5, 1, 17, 0, tzinfo=UTC)  # 01:00 on 2 May in Shanghai
    table = r.deposits_and_pickups([fact(late, late + timedelta(hours=2), "picked_up")], period)
    assert table.rows == (("2024-05-01", 0, 0), ("2024-05-02", 1, 1))
    with pytest.raises(ValueError):
        r.Period(date(2024, 5, 2), date(2024, 5, 1), SHANGHAI)
    with pytest.raises(ValueError):
        r.Period(date(2023, 1, 1), date(2024, 5, 1), SHANGHAI)


def test_dwell_buckets_and_occupancy_by_hour() -> None:
    period = r.Period(date(2024, 5, 1), date(2024, 5, 1), SHANGHAI)
    facts = [
        fact(T, T + timedelta(minutes=30), "picked_up"),  # 10:00-10:30: not there at 10:30
        fact(T, T + timedelta(hours=5), "picked_up"),  # 10:00-15:00
        fact(T + timedelta(hours=1), None, "in_locker", "JD"),  # from 11:00 on
    ]
    dwell = dict(r.dwell_distribution(facts, period).rows)
    assert (dwell["<1h"], dwell["4-12h"], sum(dwell.values())) == (1, 1, 2)
    now = datetime(2024, 5, 1, 16, 0, tzinfo=UTC)  # midnight local: the whole day is past
    hours = {h: n for h, n, _ in r.occupancy_by_hour(facts, period, now=now, doors=4).rows}
    assert (hours["09:00"], hours["10:00"], hours["11:00"], hours["15:00"]) == (0, 1, 2, 1)
    assert r.occupancy_by_hour(facts, period, now=now, doors=4).rows[11][2] == 50.0
    assert r.usage_by_carrier(facts, period).rows == (("SF", 2, 2, 0), ("JD", 1, 0, 0))


def test_an_alarm_detail_written_in_english_reads_in_chinese_and_foreign_words_stay() -> None:
    from cloud.core.alarms import AlarmKind, detail, detail_text
    from cloud.core.policies import Language

    zh, en = Language.ZH_CN, Language.EN
    cases = [
        (AlarmKind.DOOR_LEFT_OPEN, {"seconds": 130}, "已开 130 秒"),
        (AlarmKind.CABINET_OFFLINE, {"minutes": 40}, "已离线 40 分钟"),
        (AlarmKind.BRUTE_FORCE, {"count": 3, "minutes": 15}, "15 分钟内键盘锁定 3 次"),
        (
            AlarmKind.OCCUPANCY_MISMATCH,
            {"expected": "empty", "sensed": "occupied"},
            "记录为空，传感器读数为有物品",
        ),
        (
            AlarmKind.NOTICE_FAILED,
            {"notice": "alarm", "id": 12, "audience": "manager", "status": "failed"},
            "发给管理员的 alarm 通知 12：发送失败",
        ),
    ]
    for kind, fields, chinese in cases:
        stored = detail(kind, **fields)
        assert detail_text(kind, stored, zh) == chinese
        assert detail_text(kind, stored, en) == stored
    assert detail("cabinet.offline", minutes=40) == "offline for 40 min"  # type: ignore[arg-type]
    # A cabinet's own words, an unknown kind, a detail of another shape: as stored.
    assert detail_text("lock.fault", "bolt jammed", zh) == "bolt jammed"
    assert detail_text("door.exploded", "boom", zh) == "boom"
    assert detail_text("cabinet.offline", "gone fishing", zh) == "gone fishing"
