"""Fixtures for the kiosk's API tests: a simulated board, a broker, a service, its kiosk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from firmware_sim import PtyServer, SimulatedBus
from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.kiosk.harness import KioskRunner, start_kiosk_for
from tests.cabinet.service.harness import ServiceRunner, put_courier
from tests.services import Mosquitto


@pytest.fixture
async def service(
    mosquitto: Mosquitto, peer: CloudPeer, sim: tuple[SimulatedBus, PtyServer], tmp_path: Path
) -> AsyncIterator[ServiceRunner]:
    """The cabinet service on the test's loop, the sim and the broker, with courier C1 allowed."""
    runner = await ServiceRunner(mosquitto, sim[1].path, tmp_path / "journal.sqlite3").start()
    await runner.wait_online()
    await put_courier(peer)
    yield runner
    await runner.close()


@pytest.fixture
async def kiosk(service: ServiceRunner) -> AsyncIterator[KioskRunner]:
    runner = await start_kiosk_for(service)
    yield runner
    await runner.close()
