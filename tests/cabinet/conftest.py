"""Fixtures shared by the cabinet's adapter, service and kiosk tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim import BoardConfig, PtyServer, SimulatedBus
from tests.cabinet.adapters.harness import CloudPeer
from tests.services import Mosquitto


@pytest.fixture
def peer(mosquitto: Mosquitto) -> Iterator[CloudPeer]:
    """A scripted cloud subscribed to every cabinet's events, states and acks."""
    cloud = CloudPeer(mosquitto)
    yield cloud
    cloud.close()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[SimulatedBus, PtyServer]]:
    """One 24-channel board on a pty, reachable at `tmp_path/ttyLOCK` too."""
    bus = SimulatedBus([BoardConfig(address=1, channels=24)], pulse_s=0.01, query_reply_s=0.001)
    server = PtyServer(bus, link=tmp_path / "ttyLOCK").start()
    yield bus, server
    server.close()
