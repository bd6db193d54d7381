"""A cabinet service on its own event-loop thread, driven from the test's thread."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cabinet.core.compartments import Compartment, Door, Size
from cabinet.core.effects import Show
from cabinet.core.inputs import Input
from cabinet.drivers.rs485 import BoardSpec, BusTiming, Rs485Driver
from cabinet.journal import Journal
from cabinet.mqtt_link import LinkSettings
from cabinet.service import CabinetService
from protocol.hashing import code_hash, pin_hash
from tests.cabinet.adapters.harness import CAB, CloudPeer
from tests.services import Mosquitto, wait_for

T = TypeVar("T")
CODE_KEY = b"service-test-code-key"
COURIER, PIN = "C1", "246810"
PHONE = "13812345678"
# Four doors on board 1, one of each size: compartment -> channel.
LAYOUT = (
    Compartment("A01", Size.S),
    Compartment("A02", Size.M),
    Compartment("A03", Size.L, low=True),
    Compartment("A04", Size.XL, low=True),
)
CHANNELS = {"A01": 1, "A02": 2, "A03": 3, "A04": 4}
# Short bus clocks and a fast poll, so a door moved by the test is seen within ~50 ms.
TIMING = BusTiming(
    query_timeout_s=0.05,
    unlock_timeout_s=0.3,
    quiet_gap_s=0.01,
    inter_request_gap_s=0.001,
    poll_interval_s=0.02,
    query_retries=2,
    idle_read_s=0.005,
)


class FakeClock:
    """A clock the test moves: it starts at the real time (commands' deadlines are real)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ServiceRunner:
    """A `CabinetService` (RS485 driver on the sim's pty, real journal and link) on a thread."""

    def __init__(
        self,
        broker: Mosquitto,
        port: str,
        journal_path: Path,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tick_s: float | None = None,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._closed = False
        self.journal = Journal.open(journal_path, cab=CAB)
        driver = Rs485Driver(
            port, [BoardSpec(1, 24)], {c: (1, ch) for c, ch in CHANNELS.items()}, timing=TIMING
        )
        self.service = CabinetService(
            cabinet_id=CAB,
            layout=LAYOUT,
            driver=driver,
            journal=self.journal,
            code_key=CODE_KEY,
            link_settings=LinkSettings(
                cab=CAB,
                host=broker.host,
                port=broker.port,
                keepalive_s=5,
                connect_timeout_s=5,
                # Small, so the reconnect after a broker restart does not slow the suite down.
                reconnect_min_delay_s=0.05,
                reconnect_max_delay_s=0.5,
                firmware="test-1",
            ),
            clock=clock,
            # By default no timers run: tests submit a Tick when they need one. With `tick_s`
            # (and a FakeClock) the service ticks by itself, as in production.
            tick_s=tick_s,
        )
        self.screens: list[object] = []  # what the kiosk would show unasked (door shut, timers)
        self.service.add_screen_listener(lambda show: self.screens.append(show.screen))
        self.run(self.service.start())

    @property
    def link(self) -> Any:
        return self.service.link

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def submit(self, inp: Input) -> list[object]:
        """Run a kiosk input; return the screens shown."""
        screens: list[Show] = self.run(self.service.submit(inp))
        return [show.screen for show in screens]

    def door(self, compartment: str) -> Door:
        return self.service.cabinet.compartments[compartment].door

    def wait_door(self, compartment: str, door: Door, timeout_s: float = 5) -> None:
        wait_for(lambda: self.door(compartment) is door, timeout_s, f"{compartment} {door}")

    def wait_online(self, online: bool = True, timeout_s: float = 10) -> None:
        wait_for(lambda: self.link.online.is_set() == online, timeout_s, f"online={online}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # stop() may take the owner's drain (5 s) plus the driver thread's join (5 s) and paho's
        # loop_stop; a loaded CI machine needs more than run()'s 10 s default for all three.
        self.run(self.service.stop(), timeout_s=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.journal.close()


def put_courier(peer: CloudPeer, command_id: str = "cmd-couriers", cab: str = CAB) -> None:
    """The cloud allows courier C1 (PIN 246810) and the cabinet acks it."""
    entry = {"courier_id": COURIER, "pin_hash": pin_hash(PIN, os.urandom(16))}
    peer.command(command_id, cab=cab, type="couriers.put", data={"couriers": [entry]})
    wait_for(lambda: peer.acks_for(command_id), 10, "the couriers.put ack")
    assert peer.acks_for(command_id) == [{"v": 1, "cmd": command_id, "ok": True}]


def put_code(
    peer: CloudPeer, parcel_id: str, compartment: str, code: str, command_id: str, cab: str = CAB
) -> None:
    """The cloud sends the pickup code of `parcel_id` and the cabinet acks it."""
    expires_at = (datetime.now(UTC) + timedelta(days=3)).isoformat().replace("+00:00", "Z")
    entry = {
        "parcel_id": parcel_id,
        "compartment": compartment,
        "code_hash": code_hash(CODE_KEY, code),
        "expires_at": expires_at,
    }
    peer.command(command_id, cab=cab, type="codes.put", data={"entries": [entry]})
    wait_for(lambda: peer.acks_for(command_id), 10, "the codes.put ack")
    assert peer.acks_for(command_id)[0]["ok"] is True, peer.acks_for(command_id)


def events_of(peer: CloudPeer, event_type: str) -> list[dict[str, Any]]:
    return [e for e in list(peer.events) if e["type"] == event_type]
