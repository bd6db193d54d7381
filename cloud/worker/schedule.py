"""The worker's timed housekeeping: reminders and expiry, command resends, notice dispatch, the
alarms check (cabinets offline too long, `cloud.services.alarms.evaluate`), and about hourly
the deletion of rows that served their purpose (scan-to-open one-time codes and WeChat push
records older than a day).

`Housekeeper.tick(now)` is called by the worker's loop about every second with the worker's
clock, which tests inject and advance instead of sleeping. Every step is safe with any number of
workers (see `cloud.services.expiry`, `cloud.worker.commands`, `cloud.notify.dispatcher`), and a
failing step (the database away, a bug) is logged without keeping the others from running.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Engine
from sqlmodel import Session

from cloud.services.alarms import Evaluation, evaluate
from cloud.services.expiry import DueCounts, run_due
from cloud.services.scan_open import forget_old_otps
from cloud.services.wechat_codes import forget_old_pushes
from cloud.worker.commands import CommandDispatcher
from cloud.worker.commands import TickResult as CommandTick

if TYPE_CHECKING:
    from cloud.notify.dispatcher import Dispatcher
    from cloud.settings import CloudSettings

log = logging.getLogger(__name__)

# Reminders and expiries are due to the minute at best: scanning the in-locker parcels more often
# than this only costs queries.
EXPIRY_EVERY_S = 30.0
# Each scan judges only the parcels whose check time has come (new or changed ones, and those
# whose reminder or deadline is near: `cloud.services.expiry`); this often it judges them all.
EXPIRY_FULL_EVERY_S = 3600.0


class NoticeTicker(Protocol):
    """What the housekeeper needs of the notice dispatcher (`cloud.notify.dispatcher`)."""

    def tick(self, now: datetime) -> Any: ...


# A site's offline threshold is minutes: checking twice a minute is late by at most 30 s.
ALARMS_EVERY_S = 30.0

# Old rows are only clutter (the rate limits look back minutes): an hourly sweep is plenty.
CLEANUP_EVERY_S = 3600.0


@dataclass(frozen=True)
class Cleanup:
    """Rows one sweep deleted."""

    scan_otps: int = 0
    wechat_pushes: int = 0


@dataclass(frozen=True)
class Housekeeping:
    """What one tick did; None for a step that did not run (not due, not configured, failed)."""

    expiry: DueCounts | None = None
    commands: CommandTick | None = None
    notices: Any = None
    cleanup: Cleanup | None = None
    alarms: Evaluation | None = None


class Housekeeper:
    """Runs the timed steps of one worker: `run_due`, the command and the notice dispatchers."""

    def __init__(
        self,
        *,
        engine: Engine,
        seal_key: bytes,
        commands: CommandDispatcher | None = None,
        notices: NoticeTicker | None = None,
        expiry_every_s: float = EXPIRY_EVERY_S,
        expiry_full_every_s: float = EXPIRY_FULL_EVERY_S,
        cleanup_every_s: float = CLEANUP_EVERY_S,
        alarms_every_s: float = ALARMS_EVERY_S,
    ) -> None:
        self.engine = engine
        self.seal_key = seal_key
        self.commands = commands
        self.notices = notices
        self.expiry_every = timedelta(seconds=expiry_every_s)
        self.expiry_full_every = timedelta(seconds=expiry_full_every_s)
        self._expiry_full_at: datetime | None = None  # the next full scan (None: the first)
        self.cleanup_every = timedelta(seconds=cleanup_every_s)
        self._expiry_next_at: datetime | None = None
        self._cleanup_next_at: datetime | None = None
        self.alarms_every = timedelta(seconds=alarms_every_s)
        self._alarms_next_at: datetime | None = None

    def tick(self, now: datetime) -> Housekeeping:
        """Run every step due at `now`: expiry first, so what it queued goes out in this tick."""
        expiry = None
        if self._expiry_next_at is None or now >= self._expiry_next_at:
            expiry = self._step("expiry", self._expire, now)
            if expiry is not None:
                self._expiry_next_at = now if expiry.more else now + self.expiry_every
        commands = (
            self._step("command dispatch", self.commands.tick, now) if self.commands else None
        )
        notices = self._step("notice dispatch", self.notices.tick, now) if self.notices else None
        cleanup = None
        if self._cleanup_next_at is None or now >= self._cleanup_next_at:
            cleanup = self._step("cleanup", self._clean, now)
            if cleanup is not None:
                self._cleanup_next_at = now + self.cleanup_every
        alarms = None
        if self._alarms_next_at is None or now >= self._alarms_next_at:
            alarms = self._step("alarms check", self._check_alarms, now)
            self._alarms_next_at = now + self.alarms_every
        return Housekeeping(
            expiry=expiry, commands=commands, notices=notices, cleanup=cleanup, alarms=alarms
        )

    def _check_alarms(self, now: datetime) -> Evaluation:
        with Session(self.engine) as session:
            return evaluate(session=session, now=now)

    def _expire(self, now: datetime) -> DueCounts:
        full = self._expiry_full_at is None or now >= self._expiry_full_at
        with Session(self.engine) as session:
            counts = run_due(session=session, now=now, seal_key=self.seal_key, full=full)
        if full:
            self._expiry_full_at = now + self.expiry_full_every
        return counts

    def _clean(self, now: datetime) -> Cleanup:
        with Session(self.engine) as session:
            done = Cleanup(
                scan_otps=forget_old_otps(session=session, now=now),
                wechat_pushes=forget_old_pushes(session=session, now=now),
            )
        if done.scan_otps or done.wechat_pushes:
            log.info(
                "cleanup: %d one-time codes, %d WeChat push records deleted",
                done.scan_otps,
                done.wechat_pushes,
            )
        return done

    def _step(self, what: str, step: Any, now: datetime) -> Any:
        try:
            return step(now)
        except Exception as err:  # the next tick tries again; the other steps still run now
            log.error("%s failed: %s", what, " ".join(str(err).split())[:300] or type(err).__name__)
            return None


def notice_dispatcher_from_settings(*, engine: Engine, settings: CloudSettings) -> Dispatcher:
    """Return the notice dispatcher the settings describe: Twilio SMS, WeChat if configured.

    Bound phones go by WeChat (`wechat_bindings`); couriers are reached at their registry phone.
    """
    from cloud.notify.bindings_db import DbBindings, DbCourierPhones
    from cloud.notify.dispatcher import Dispatcher
    from cloud.notify.sms_twilio import TwilioSms
    from cloud.notify.wechat import WechatTemplates

    wechat = WechatTemplates.from_settings(settings) if settings.wechat_app_id else None
    return Dispatcher(
        engine=engine,
        sms=TwilioSms.from_settings(settings),
        wechat=wechat,
        bindings=DbBindings(engine) if wechat else None,
        courier_phones=DbCourierPhones(engine),
        seal_key=settings.secret_key_bytes,
        base_url=settings.base_url,
    )


def webhook_dispatcher_from_settings(*, engine: Engine, settings: CloudSettings) -> Any:
    """Return the ERP webhook dispatcher, its SSRF allow-list from the settings."""
    from cloud.notify.webhooks import WebhookDispatcher
    from cloud.services.webhooks import allow_hosts

    return WebhookDispatcher(
        engine=engine,
        seal_key=settings.secret_key_bytes,
        allow_hosts=allow_hosts(settings.webhook_allow_hosts),
        retention=timedelta(days=settings.webhook_retention_days),
    )
