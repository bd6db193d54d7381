"""The technician's side of the screen: a PIN-guarded session to test doors and read health.

The PIN is checked against `technician_pin_hash` (protocol/hashing.py's scrypt string, so a
stolen config does not give the PIN away), in a worker thread so the 16 MiB scrypt does not stall
the event loop. Wrong PINs count under the same lockout rules as a courier's PIN
(`COURIER_PIN_POLICY`: 5 in a row lock for 5 minutes, at most 20 a day). A right PIN gives a
random token the page sends back in `X-Maintenance-Token`; it lapses after `session_s` without
use, and only one technician session exists at a time.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cabinet.core.lockout import (
    COURIER_PIN_POLICY,
    Guard,
    attempts_left,
    locked_for_s,
    record_failure,
    record_success,
)
from protocol.hashing import verify_pin

SESSION_S = 300


class MaintenanceRefused(Exception):
    """The maintenance screen refused: not set up, a wrong PIN, or locked."""

    status = 403

    def __init__(self, message: str, **detail: int) -> None:
        super().__init__(message)
        self.detail = detail


class NotConfigured(MaintenanceRefused):
    status = 404


class WrongTechnicianPin(MaintenanceRefused):
    status = 403


class TechnicianLocked(MaintenanceRefused):
    status = 429


@dataclass
class _Session:
    token: str
    last_used: datetime


class Maintenance:
    """Sign a technician in with their PIN; check their token on every maintenance request."""

    def __init__(
        self,
        pin_hash: str | None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        session_s: int = SESSION_S,
        verify: Callable[[str, str], bool] = verify_pin,
    ) -> None:
        self._pin_hash = pin_hash
        self._clock = clock
        self._session_s = session_s
        self._verify = verify
        self._guard = Guard()
        self._session: _Session | None = None

    @property
    def configured(self) -> bool:
        return self._pin_hash is not None

    async def sign_in(self, pin: str) -> str:
        """A new session's token, or MaintenanceRefused saying why not."""
        if self._pin_hash is None:
            raise NotConfigured("maintenance is not set up: the config has no technician_pin_hash")
        now = self._clock()
        if seconds := locked_for_s(self._guard, COURIER_PIN_POLICY, now):
            raise TechnicianLocked("too many wrong PINs", seconds_left=seconds)
        ok = await asyncio.to_thread(self._verify, pin, self._pin_hash)
        now = self._clock()
        if not ok:
            self._guard, lockout = record_failure(self._guard, COURIER_PIN_POLICY, now)
            if lockout is not None:
                raise TechnicianLocked("too many wrong PINs", seconds_left=lockout.seconds)
            left = attempts_left(self._guard, COURIER_PIN_POLICY, now)
            raise WrongTechnicianPin("wrong PIN", attempts_left=left)
        self._guard = record_success(self._guard)
        self._session = _Session(secrets.token_urlsafe(24), now)
        return self._session.token

    def check(self, token: str | None) -> bool:
        """Whether `token` is the live session's (using it keeps the session alive)."""
        session, now = self._session, self._clock()
        if session is None or token is None:
            return False
        if now - session.last_used >= timedelta(seconds=self._session_s):
            self._session = None
            return False
        if not secrets.compare_digest(session.token, token):
            return False
        session.last_used = now
        return True

    def sign_out(self) -> None:
        self._session = None
