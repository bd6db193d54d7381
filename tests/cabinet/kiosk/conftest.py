"""Fixtures for the kiosk's API tests: a simulated board, a broker, a service, its kiosk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim import PtyServer, SimulatedBus
from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.kiosk.harness import KioskRunner
from tests.cabinet.service.harness import ServiceRunner, put_courier
from tests.services import Mosquitto


@pytest.fixture
def service(
    mosquitto: Mosquitto, peer: CloudPeer, sim: tuple[SimulatedBus, PtyServer], tmp_path: Path
) -> Iterator[ServiceRunner]:
    """The cabinet service on the sim and the broker, with courier C1 allowed."""
    runner = ServiceRunner(mosquitto, sim[1].path, tmp_path / "journal.sqlite3")
    runner.wait_online()
    put_courier(peer)
    yield runner
    runner.close()


@pytest.fixture
def kiosk(service: ServiceRunner) -> Iterator[KioskRunner]:
    runner = KioskRunner(service)
    yield runner
    runner.close()
