"""A site's policy: pickup window, reminder, code length, quiet hours, overdue fee, resend limit.

One frozen dataclass with the defaults docs/parcel-life.md and issue 4 name, validated on
construction so a bad value is refused where it is typed (CLI, API) and never surfaces later in a
worker.
Quiet hours are wall-clock times in the site's own time zone (an IANA name such as
"Asia/Shanghai"), so they follow daylight saving where the site has it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloud.core.errors import PolicyError

HOUR_S = 3600
DAY_S = 24 * HOUR_S

MIN_CODE_LENGTH = 6
MAX_CODE_LENGTH = 10
MIN_WINDOW_S = HOUR_S
MAX_WINDOW_S = 30 * DAY_S


class Language(StrEnum):
    """Languages the notices are written in."""

    ZH_CN = "zh-CN"
    EN = "en"


@dataclass(frozen=True)
class SitePolicy:
    """The rules a site runs its cabinets by. Money is in minor units (fen, cents)."""

    pickup_window_s: int = 72 * HOUR_S
    # None: no reminder. Otherwise the reminder goes this long before the deadline.
    reminder_before_s: int | None = 24 * HOUR_S
    code_length: int = 8
    # No reminder SMS between these local wall-clock times; both None: no quiet hours.
    quiet_start: time | None = time(22, 0)
    quiet_end: time | None = time(8, 0)
    timezone: str = "Asia/Shanghai"
    language: Language = Language.ZH_CN
    # 0: no fee. Charged per started day past the deadline, at most `overdue_fee_cap_minor`.
    overdue_fee_per_day_minor: int = 0
    overdue_fee_cap_minor: int | None = None
    currency: str = "CNY"
    # A recipient may ask for their code again at most `resend_limit` times per window.
    resend_limit: int = 3
    resend_window_s: int = HOUR_S
    # The sender's signature an SMS starts with: 【滨江快递柜】 in Chinese texts, [Riverside
    # Lockers] in English ones (Chinese carriers require one); "" for none.
    sms_signature: str = ""
    sms_signature_en: str = ""
    # A cabinet offline this long raises an alarm (`cloud.core.alarms.AlarmKind.CABINET_OFFLINE`).
    offline_alarm_s: int = 10 * 60

    def __post_init__(self) -> None:
        _check_int("pickup_window_s", self.pickup_window_s, MIN_WINDOW_S, MAX_WINDOW_S)
        if self.reminder_before_s is not None:
            _check_int("reminder_before_s", self.reminder_before_s, 60, self.pickup_window_s - 1)
        _check_int("code_length", self.code_length, MIN_CODE_LENGTH, MAX_CODE_LENGTH)
        self._check_quiet_hours()
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise PolicyError(
                "timezone", f"{self.timezone!r} is not an IANA time zone name"
            ) from None
        if not isinstance(self.language, Language):
            try:
                object.__setattr__(self, "language", Language(self.language))
            except ValueError:
                known = ", ".join(language.value for language in Language)
                raise PolicyError("language", f"{self.language!r} is not one of {known}") from None
        _check_int("overdue_fee_per_day_minor", self.overdue_fee_per_day_minor, 0, 10**9)
        if self.overdue_fee_cap_minor is not None:
            _check_int("overdue_fee_cap_minor", self.overdue_fee_cap_minor, 0, 10**12)
        if not (
            isinstance(self.currency, str) and len(self.currency) == 3 and self.currency.isupper()
        ):
            raise PolicyError("currency", f"{self.currency!r} is not an ISO 4217 code like CNY")
        _check_int("resend_limit", self.resend_limit, 1, 100)
        _check_int("resend_window_s", self.resend_window_s, 60, DAY_S)
        if not isinstance(self.sms_signature, str) or not (
            self.sms_signature == "" or 2 <= len(self.sms_signature) <= 12
        ):
            raise PolicyError("sms_signature", "2 to 12 characters (the 【】 are added), or empty")
        if self.sms_signature and any(c in "【】[]" for c in self.sms_signature):
            raise PolicyError("sms_signature", "without brackets: they are added")
        if not isinstance(self.sms_signature_en, str) or not (
            self.sms_signature_en == ""
            or (2 <= len(self.sms_signature_en) <= 20 and _gsm7(self.sms_signature_en))
        ):
            raise PolicyError(
                "sms_signature_en", "2 to 20 plain letters, digits and spaces, or empty"
            )
        _check_int("offline_alarm_s", self.offline_alarm_s, 60, 7 * DAY_S)

    def _check_quiet_hours(self) -> None:
        start, end = self.quiet_start, self.quiet_end
        if start is None and end is None:
            return
        for name, value in (("quiet_start", start), ("quiet_end", end)):
            if not isinstance(value, time):
                raise PolicyError(name, "set both quiet_start and quiet_end (a time), or neither")
            if value.tzinfo is not None:
                raise PolicyError(name, "a local wall-clock time, without a time zone")
        if start == end:
            raise PolicyError("quiet_end", "quiet hours must not start and end at the same time")

    @cached_property
    def zone(self) -> ZoneInfo:
        """The site's time zone."""
        return ZoneInfo(self.timezone)

    @property
    def has_quiet_hours(self) -> bool:
        """Whether the site has quiet hours at all."""
        return self.quiet_start is not None

    def is_quiet(self, at: datetime) -> bool:
        """Return whether `at` falls in the site's quiet hours (start included, end excluded)."""
        if self.quiet_start is None or self.quiet_end is None:
            return False
        local = _aware(at).astimezone(self.zone).time()
        if self.quiet_start < self.quiet_end:  # e.g. 01:00–06:00, within one day
            return self.quiet_start <= local < self.quiet_end
        return local >= self.quiet_start or local < self.quiet_end  # spans midnight

    def outside_quiet_hours(self, at: datetime) -> datetime:
        """Return `at`, or the end of the quiet hours it falls in (in `at`'s time zone)."""
        if not self.is_quiet(at) or self.quiet_end is None:
            return at
        local = at.astimezone(self.zone)
        end = datetime.combine(local.date(), self.quiet_end, tzinfo=self.zone)
        if end <= local:
            end += timedelta(days=1)  # wall-clock day: still quiet_end after a DST change
        return end.astimezone(at.tzinfo)


NO_QUIET_HOURS = "none"


def parse_quiet_hours(text: str) -> tuple[time | None, time | None]:
    """Return (start, end) of quiet hours written `HH:MM-HH:MM`, or (None, None) for "none"."""
    cleaned = text.strip().lower()
    if cleaned in (NO_QUIET_HOURS, "off", ""):
        return None, None
    start_text, dash, end_text = cleaned.partition("-")
    try:
        if not dash:
            raise ValueError
        start = datetime.strptime(start_text.strip(), "%H:%M").time()
        end = datetime.strptime(end_text.strip(), "%H:%M").time()
    except ValueError:
        raise PolicyError(
            "quiet_hours", f"{text!r} is not HH:MM-HH:MM (e.g. 22:00-08:00) or {NO_QUIET_HOURS!r}"
        ) from None
    return start, end


def format_quiet_hours(start: time | None, end: time | None) -> str:
    """Return quiet hours as `parse_quiet_hours` reads them back."""
    if start is None or end is None:
        return NO_QUIET_HOURS
    return f"{start:%H:%M}-{end:%H:%M}"


def _check_int(field: str, value: object, low: int, high: int) -> None:
    # bool is an int to Python, but `True` seconds is always a mistake.
    if not isinstance(value, int) or isinstance(value, bool):
        raise PolicyError(field, f"must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise PolicyError(field, f"must be between {low} and {high}, not {value}")


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("times must be timezone-aware (UTC)")
    return at


def _gsm7(text: str) -> bool:
    """Whether an English signature keeps a text in the GSM-7 alphabet (and bracket-free)."""
    return all(c.isascii() and (c.isalnum() or c in " .&'-") for c in text)
