"""sd_notify: datagrams to a real unix socket, the watchdog interval, pings only after a beat."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cabinet.sd_notify import Notifier, keep_watchdog_fed, supervised, watchdog_interval_s


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket bound where systemd's would be; the test reads what the daemon sends."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield str(path), sock
    sock.close()


def test_notify_sends_one_datagram_of_lines(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.notify("READY=1", "STATUS=up")
    assert sock.recv(4096) == b"READY=1\nSTATUS=up"
    notifier.close()


def test_abstract_socket_names_start_with_an_at_sign() -> None:
    name = f"locker-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        notifier = Notifier(f"@{name}")
        assert notifier.notify("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"
        notifier.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False


def test_a_vanished_socket_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"))
    assert notifier.notify("READY=1") is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}, pid=7) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=7) == 15.0
    # A child that inherited the environment is not the process systemd watches.
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, pid=7) == 0
    assert watchdog_interval_s({}, pid=7) == 0
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}, pid=7) == 0


class GatedService:
    """A service whose owner task runs a beat only when the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.beats = 0

    async def beat(self) -> None:
        await self.gate.wait()
        self.beats += 1


async def test_no_ping_while_the_owner_is_wedged(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    sock.setblocking(False)
    service = GatedService()
    notifier = Notifier(path)
    sleeps: list[float] = []

    async def no_wait(seconds: float) -> None:  # time is injected: no timer runs
        sleeps.append(seconds)
        await asyncio.sleep(0)

    task = asyncio.create_task(keep_watchdog_fed(service, notifier, 0.5, sleep=no_wait))
    for _ in range(50):
        await asyncio.sleep(0)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)  # the owner never ran the beat: not a single ping
    service.gate.set()
    for _ in range(6):  # a few rounds: fewer pings than the socket's queue holds
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert service.beats > 1 and sleeps[0] == 0.5
    assert sock.recv(4096) == b"WATCHDOG=1"
    notifier.close()


async def test_supervised_says_ready_then_stopping(
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, sock = notify_socket
    service = GatedService()
    async with supervised(service, "cab9", {"NOTIFY_SOCKET": path}):
        assert sock.recv(4096) == b"READY=1\nSTATUS=cabinet cab9 running"
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=cabinet cab9 stopping"


def test_a_reader_that_stopped_reading_never_blocks_the_daemon(
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, _sock = notify_socket  # nobody reads: the socket's queue fills up
    notifier = Notifier(path)
    sent = [notifier.notify("WATCHDOG=1") for _ in range(1000)]
    assert sent[0] and not sent[-1]  # the first went through; past the full queue, dropped
    notifier.close()
