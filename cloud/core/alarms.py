"""Alarms: their kinds and severity, how repeats collapse, when a pattern becomes one, the texts.

Pure: no I/O. The storage side (`cloud.db.alarms`) keeps one open alarm per cabinet, door and
kind, named by `open_key`: a repeat while it is open raises its `count` and `last_seen_at`
instead of adding a row, so a door that keeps being forced is one line on the console and one
message to its managers, not a hundred.

An alarm is open until someone resolves it (or, for a cabinet that went offline, until it comes
back); acknowledging says "someone is on it" and keeps it open. Critical kinds tell the site's
managers when they are first raised (`NOTIFIED`), never on a repeat.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from cloud.core.policies import Language, SitePolicy


class AlarmKind(StrEnum):
    """What went wrong. The first five are cabinet events of the same name."""

    DOOR_LEFT_OPEN = "door.left_open"
    DOOR_FORCED = "door.forced"
    LOCK_FAULT = "lock.fault"
    KEYPAD_LOCKOUT = "keypad.lockout"
    # A door's occupancy sensor disagrees with the cabinet's record (a parcel left behind, or
    # one gone from a door nobody opened for it).
    OCCUPANCY_MISMATCH = "door.occupancy_mismatch"
    # Raised by the cloud itself:
    CABINET_OFFLINE = "cabinet.offline"  # offline longer than the site's `offline_alarm_s`
    BRUTE_FORCE = "keypad.brute_force"  # several keypad lockouts within `BruteForceRule.window`
    NOTICE_FAILED = "notice.failed"  # a notice to a recipient or courier could not be delivered
    # A door's pulse-to-open time drifted up (`cloud.core.health`): a lock going stiff.
    SLOW_OPEN = "door.slow_open"


class Severity(StrEnum):
    CRITICAL = "critical"  # someone must go there: the managers are told at once
    WARNING = "warning"  # on the console; nobody is woken for it


SEVERITY: dict[AlarmKind, Severity] = {
    AlarmKind.DOOR_LEFT_OPEN: Severity.WARNING,
    AlarmKind.DOOR_FORCED: Severity.CRITICAL,
    AlarmKind.LOCK_FAULT: Severity.CRITICAL,
    AlarmKind.KEYPAD_LOCKOUT: Severity.WARNING,
    AlarmKind.OCCUPANCY_MISMATCH: Severity.CRITICAL,
    AlarmKind.CABINET_OFFLINE: Severity.CRITICAL,
    AlarmKind.BRUTE_FORCE: Severity.CRITICAL,
    AlarmKind.NOTICE_FAILED: Severity.WARNING,
    AlarmKind.SLOW_OPEN: Severity.WARNING,
}

# Told to the site's managers when first raised (a repeat of an open alarm tells nobody).
NOTIFIED = frozenset(kind for kind, severity in SEVERITY.items() if severity is Severity.CRITICAL)

# Kinds that end by themselves when their cause ends (the cabinet is back online).
SELF_CLEARING = frozenset({AlarmKind.CABINET_OFFLINE})


def severity(kind: AlarmKind | str) -> Severity:
    """Return the severity of an alarm kind (an unknown kind, e.g. a newer cabinet's, warns)."""
    try:
        return SEVERITY[AlarmKind(kind)]
    except ValueError:
        return Severity.WARNING


def open_key(cabinet_id: str, compartment: str | None, kind: str) -> str:
    """Name the one open alarm of a cabinet, door (or the whole cabinet) and kind.

    Stored in a unique column while the alarm is open and cleared when it is resolved: a repeat
    finds the open one, a new occurrence after the resolve starts a new alarm.
    """
    return f"{cabinet_id}/{compartment or '*'}/{kind}"


# --- patterns -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BruteForceRule:
    """`lockouts` keypad lockouts within `window_s` at one cabinet: someone is guessing codes.

    One lockout is a recipient who mistyped a few times; the cabinet's own lockout already slows
    a guesser down. Several in a short while are a pattern nobody mistypes into.
    """

    lockouts: int = 3
    window_s: int = 15 * 60

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_s)


BRUTE_FORCE = BruteForceRule()


def is_brute_force(lockouts_at: Iterable[datetime], now: datetime, rule: BruteForceRule) -> bool:
    """Return whether the lockouts at `lockouts_at` (the latest at `now`) make the pattern."""
    recent = [at for at in lockouts_at if now - rule.window < at <= now]
    return len(recent) >= rule.lockouts


def offline_too_long(
    *, online: bool | None, since: datetime | None, now: datetime, after_s: int
) -> bool:
    """Return whether a cabinet has been offline for `after_s` or more at `now`.

    `since` is when the cloud last heard it (its Will, or the last message before the cut).
    A cabinet never seen (`online` None) is not offline: it is not installed yet.
    """
    if online is not False or since is None:
        return False
    return now - since >= timedelta(seconds=after_s)


# --- what the managers are told -------------------------------------------------------------------

KIND_NAMES: dict[AlarmKind, dict[Language, str]] = {
    AlarmKind.DOOR_LEFT_OPEN: {Language.ZH_CN: "柜门未关", Language.EN: "Door left open"},
    AlarmKind.DOOR_FORCED: {Language.ZH_CN: "柜门被撬", Language.EN: "Door forced open"},
    AlarmKind.LOCK_FAULT: {Language.ZH_CN: "锁故障", Language.EN: "Lock fault"},
    AlarmKind.KEYPAD_LOCKOUT: {Language.ZH_CN: "键盘锁定", Language.EN: "Keypad lockout"},
    AlarmKind.OCCUPANCY_MISMATCH: {
        Language.ZH_CN: "格口有无包裹与记录不符",
        Language.EN: "Door's contents differ from the record",
    },
    AlarmKind.CABINET_OFFLINE: {Language.ZH_CN: "柜机离线", Language.EN: "Cabinet offline"},
    AlarmKind.BRUTE_FORCE: {
        Language.ZH_CN: "疑似暴力试码",
        Language.EN: "Code guessing (brute force)",
    },
    AlarmKind.NOTICE_FAILED: {Language.ZH_CN: "通知发送失败", Language.EN: "Notice not delivered"},
    AlarmKind.SLOW_OPEN: {
        Language.ZH_CN: "柜门开启变慢（锁需检修）",
        Language.EN: "Door slow to open (lock wearing)",
    },
}


# --- an alarm's detail, in the reader's language --------------------------------------------------
#
# The stored `detail` is English (log lines, the CSV, the JSON API read it as is). Every detail the
# cloud writes is made here from a template, so a page reads it back into its parameters and says
# it in the page's language; a detail from elsewhere (a cabinet's lock fault text) shows as stored.

_WORDS = {
    "empty": {Language.ZH_CN: "空", Language.EN: "empty"},
    "parcel": {Language.ZH_CN: "有包裹", Language.EN: "parcel"},
    "occupied": {Language.ZH_CN: "有物品", Language.EN: "occupied"},
    "recipient": {Language.ZH_CN: "收件人", Language.EN: "recipient"},
    "courier": {Language.ZH_CN: "快递员", Language.EN: "courier"},
    "manager": {Language.ZH_CN: "管理员", Language.EN: "manager"},
    "failed": {Language.ZH_CN: "发送失败", Language.EN: "failed"},
    "unsendable": {Language.ZH_CN: "无法发送", Language.EN: "unsendable"},
    "unknown": {Language.ZH_CN: "状态不明", Language.EN: "unknown"},
}


@dataclass(frozen=True)
class DetailTemplate:
    en: str  # what is stored, with {name} fields
    zh: str
    words: tuple[str, ...] = ()  # fields whose values are translated through _WORDS

    def pattern(self) -> re.Pattern[str]:
        parts = re.split(r"\{(\w+)\}", self.en)
        regex = "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)" for i, part in enumerate(parts)
        )
        return re.compile(f"^{regex}$")


DETAILS: dict[AlarmKind, DetailTemplate] = {
    AlarmKind.DOOR_LEFT_OPEN: DetailTemplate("{seconds} s", "已开 {seconds} 秒"),
    AlarmKind.OCCUPANCY_MISMATCH: DetailTemplate(
        "expected {expected}, sensor reads {sensed}",
        "记录为{expected}，传感器读数为{sensed}",
        words=("expected", "sensed"),
    ),
    AlarmKind.CABINET_OFFLINE: DetailTemplate("offline for {minutes} min", "已离线 {minutes} 分钟"),
    AlarmKind.BRUTE_FORCE: DetailTemplate(
        "{count} keypad lockouts within {minutes} min", "{minutes} 分钟内键盘锁定 {count} 次"
    ),
    AlarmKind.NOTICE_FAILED: DetailTemplate(
        "{notice} notice {id} to a {audience}: {status}",
        "发给{audience}的 {notice} 通知 {id}：{status}",
        words=("audience", "status"),
    ),
}


def detail(kind: AlarmKind, **fields: object) -> str:
    """The detail of an alarm of `kind` as stored (English), from its template."""
    return DETAILS[kind].en.format(**fields)


def detail_text(kind: str, stored: str, language: Language) -> str:
    """Return a stored detail in `language`: re-worded if the cloud's template made it, else
    as stored (a cabinet's own words, or a detail written before the template existed)."""
    try:
        template = DETAILS.get(AlarmKind(kind))
    except ValueError:
        return stored
    if template is None or language is Language.EN:
        return stored
    found = template.pattern().match(stored)
    if found is None:
        return stored
    fields = {
        name: _WORDS.get(value, {}).get(language, value) if name in template.words else value
        for name, value in found.groupdict().items()
    }
    return template.zh.format(**fields)


def kind_name(kind: str, language: Language) -> str:
    """Return an alarm kind as a person reads it (the raw kind if it is not known)."""
    try:
        return KIND_NAMES[AlarmKind(kind)][language]
    except ValueError:
        return kind


def where_text(compartment: str | None, language: Language) -> str:
    """Return the door of an alarm as a phrase of a manager's text ("" for the whole cabinet)."""
    if not compartment:
        return ""
    return f"{compartment}号格口" if language is Language.ZH_CN else f", door {compartment}"


def notice_after(now: datetime, policy: SitePolicy) -> datetime:
    """Return when a manager's alarm notice queued at `now` may go: after the quiet hours.

    A night-time alarm waits for the morning like any non-urgent notice: the site's quiet hours
    are a promise to the people on its list, and the console shows the alarm meanwhile.
    """
    return policy.outside_quiet_hours(now)
