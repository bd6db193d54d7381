"""Tell systemd how the daemon is doing: READY=1, watchdog pings, STOPPING=1 (sd_notify(3)).

The unit is `Type=notify` with `WatchdogSec=` (deploy/systemd/locker-cabinet.service): systemd
counts the daemon as started only once it sent READY=1 (journal restored, every door read), and
kills and restarts it when no WATCHDOG=1 arrives for WatchdogSec. The pings are earned by the
cabinet's owner task, not by a bare timer: each one waits for `CabinetService.beat()`, which
returns only once the owner has run every step queued before it. A wedged owner (a step that
never ends, a blocked event loop) therefore stops the pings and systemd restarts the daemon,
which then resumes from the journal.

The protocol is one datagram of `KEY=VALUE` lines to the unix socket named by NOTIFY_SOCKET
(a leading `@` means Linux's abstract namespace). It is written out here in a few lines rather
than taken from PyPI: the `sdnotify` package has had no release since 2017 and drops every error
silently, and `systemd-python` needs libsystemd's headers to build. Without NOTIFY_SOCKET (run by
hand, in tests, in a container) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

log = logging.getLogger(__name__)


class Beating(Protocol):
    """What the watchdog needs of the service: proof its owner task still runs steps."""

    async def beat(self) -> None: ...


class Notifier:
    """Send sd_notify datagrams to NOTIFY_SOCKET; a no-op when there is none."""

    def __init__(self, address: str | None) -> None:
        self._address: str | bytes | None = None
        self._sock: socket.socket | None = None
        if address:
            # An abstract socket's name starts with a NUL byte where systemd writes an `@`.
            self._address = b"\0" + address[1:].encode() if address[0] == "@" else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never block the event loop: a reader that stopped reading costs a ping, not the
            # cabinet (a full queue is an OSError below).
            self._sock.setblocking(False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *lines: str) -> bool:
        """Send `lines` as one message; return whether it was sent (False: no socket or error).

        A failure is logged, never raised: systemd being away must not stop the cabinet.
        """
        if self._sock is None or self._address is None:
            return False
        try:
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as err:
            log.warning("sd_notify to %r failed: %s", self._address, err)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s(env: Mapping[str, str] | None = None, pid: int | None = None) -> float:
    """Seconds between pings: half of WATCHDOG_USEC (as sd_watchdog_enabled(3) advises); 0: off.

    WATCHDOG_PID, when set, names the process the watchdog is for: another one (a child that
    inherited the environment) must not ping.
    """
    env = os.environ if env is None else env
    pid = os.getpid() if pid is None else pid
    watchdog_pid = env.get("WATCHDOG_PID")
    if watchdog_pid and watchdog_pid.strip() != str(pid):
        return 0.0
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        log.warning("ignoring a bad WATCHDOG_USEC=%r", env.get("WATCHDOG_USEC"))
        return 0.0
    return usec / 2e6 if usec > 0 else 0.0


async def keep_watchdog_fed(
    service: Beating,
    notifier: Notifier,
    interval_s: float,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Forever: wait for the owner task to run a beat, ping, wait `interval_s`."""
    while True:
        await service.beat()  # a wedged owner never returns here: the pings stop
        notifier.notify("WATCHDOG=1")
        await sleep(interval_s)


@contextlib.asynccontextmanager
async def supervised(
    service: Beating, cabinet_id: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[Notifier]:
    """Around a started service: READY=1 now, watchdog pings while inside, STOPPING=1 at exit."""
    notifier = Notifier.from_env(env)
    interval_s = watchdog_interval_s(env)
    notifier.notify("READY=1", f"STATUS=cabinet {cabinet_id} running")
    pinger = None
    if notifier.enabled and interval_s > 0:
        log.info("cabinet %s: systemd watchdog on, a ping every %.3g s", cabinet_id, interval_s)
        pinger = asyncio.create_task(
            keep_watchdog_fed(service, notifier, interval_s), name="cabinet-watchdog"
        )
    try:
        yield notifier
    finally:
        notifier.notify("STOPPING=1", f"STATUS=cabinet {cabinet_id} stopping")
        if pinger is not None:
            pinger.cancel()
            # A pinger that ended on its own (the service stopped under it) has nothing to add.
            await asyncio.gather(pinger, return_exceptions=True)
        notifier.close()
