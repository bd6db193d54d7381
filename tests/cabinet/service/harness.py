"""A cabinet service on the test's own event loop: the test awaits each step itself."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cabinet.core.compartments import Compartment, Door, Size
from cabinet.core.effects import Show
from cabinet.core.inputs import Input
from cabinet.drivers.rs485 import BoardSpec, BusTiming, Rs485Driver
from cabinet.journal import Journal
from cabinet.mqtt_link import LinkSettings
from cabinet.service import CabinetService
from protocol.hashing import code_hash, pin_hash
from tests.cabinet.adapters.harness import CAB, CloudPeer
from tests.cabinet.aio import eventually
from tests.services import Mosquitto, wait_for

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


# What the `service_factory` fixture gives: `await service_factory(clock=..., tick_s=...)`.
ServiceFactory = Callable[..., Awaitable["ServiceRunner"]]


class ServiceRunner:
    """A `CabinetService`: RS485 driver on the sim's pty, real journal and link; `await start()`."""

    def __init__(
        self,
        broker: Mosquitto,
        port: str,
        journal_path: Path,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tick_s: float | None = None,
        **service_kwargs: Any,  # door_boards, ticks, health_every
    ) -> None:
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
            **service_kwargs,
        )
        self.screens: list[object] = []  # what the kiosk would show unasked (door shut, timers)
        self.service.add_screen_listener(lambda show: self.screens.append(show.screen))

    async def start(self) -> ServiceRunner:
        await self.service.start()
        return self

    @property
    def link(self) -> Any:
        return self.service.link

    async def submit(self, inp: Input) -> list[object]:
        """Run a kiosk input; return the screens shown."""
        screens: list[Show] = await self.service.submit(inp)
        return [show.screen for show in screens]

    def door(self, compartment: str) -> Door:
        return self.service.cabinet.compartments[compartment].door

    async def wait_door(self, compartment: str, door: Door, timeout_s: float = 5) -> None:
        await eventually(lambda: self.door(compartment) is door, timeout_s, f"{compartment} {door}")

    async def wait_online(self, online: bool = True, timeout_s: float = 10) -> None:
        """Wait for the link to be online (and subscribed: a command sent next must arrive)."""
        await eventually(
            lambda: (
                self.link.online.is_set() == online
                and (not online or self.link.subscribed.is_set())
            ),
            timeout_s,
            f"online={online}",
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.service.stop()
        self.journal.close()


def send_courier(peer: CloudPeer, command_id: str = "cmd-couriers", cab: str = CAB) -> None:
    """The cloud allows courier C1 (PIN 246810)."""
    entry = {"courier_id": COURIER, "pin_hash": pin_hash(PIN, os.urandom(16))}
    peer.command(command_id, cab=cab, type="couriers.put", data={"couriers": [entry]})


def courier_acked(peer: CloudPeer, command_id: str = "cmd-couriers") -> None:
    assert peer.acks_for(command_id) == [{"v": 1, "cmd": command_id, "ok": True}]


async def put_courier(peer: CloudPeer, command_id: str = "cmd-couriers", cab: str = CAB) -> None:
    """The cloud allows courier C1 (PIN 246810) and the cabinet on this loop acks it."""
    send_courier(peer, command_id, cab)
    await eventually(lambda: peer.acks_for(command_id), 10, "the couriers.put ack")
    courier_acked(peer, command_id)


def put_courier_to_process(peer: CloudPeer, command_id: str = "cmd-couriers") -> None:
    """`put_courier` for a daemon in another process (the browser tests): a blocking wait."""
    send_courier(peer, command_id)
    wait_for(lambda: peer.acks_for(command_id), 10, "the couriers.put ack")
    courier_acked(peer, command_id)


def send_code(
    peer: CloudPeer, parcel_id: str, compartment: str, code: str, command_id: str, cab: str = CAB
) -> None:
    """The cloud sends the pickup code of `parcel_id`."""
    expires_at = (datetime.now(UTC) + timedelta(days=3)).isoformat().replace("+00:00", "Z")
    entry = {
        "parcel_id": parcel_id,
        "compartment": compartment,
        "code_hash": code_hash(CODE_KEY, code),
        "expires_at": expires_at,
    }
    peer.command(command_id, cab=cab, type="codes.put", data={"entries": [entry]})


async def put_code(
    peer: CloudPeer, parcel_id: str, compartment: str, code: str, command_id: str, cab: str = CAB
) -> None:
    """The cloud sends the pickup code of `parcel_id` and the cabinet on this loop acks it."""
    send_code(peer, parcel_id, compartment, code, command_id, cab)
    await eventually(lambda: peer.acks_for(command_id), 10, "the codes.put ack")
    assert peer.acks_for(command_id)[0]["ok"] is True, peer.acks_for(command_id)


def put_code_to_process(
    peer: CloudPeer, parcel_id: str, compartment: str, code: str, command_id: str
) -> None:
    """`put_code` for a daemon in another process (the browser tests): a blocking wait."""
    send_code(peer, parcel_id, compartment, code, command_id)
    wait_for(lambda: peer.acks_for(command_id), 10, "the codes.put ack")
    assert peer.acks_for(command_id)[0]["ok"] is True, peer.acks_for(command_id)


def events_of(peer: CloudPeer, event_type: str) -> list[dict[str, Any]]:
    return [e for e in list(peer.events) if e["type"] == event_type]
