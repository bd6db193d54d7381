"""Fixtures for the service tests: a simulated lock board on a pty, a cloud peer, a service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from firmware_sim import PtyServer, SimulatedBus
from tests.cabinet.service.harness import ServiceFactory, ServiceRunner
from tests.services import Mosquitto


@pytest.fixture
async def service_factory(
    mosquitto: Mosquitto, sim: tuple[SimulatedBus, PtyServer], tmp_path: Path
) -> AsyncIterator[ServiceFactory]:
    """Start services on the test's loop, the simulated bus and the test broker (one journal)."""
    runners: list[ServiceRunner] = []

    async def start(**kwargs: Any) -> ServiceRunner:
        runner = ServiceRunner(mosquitto, sim[1].path, tmp_path / "journal.sqlite3", **kwargs)
        runners.append(runner)
        return await runner.start()

    yield start
    for runner in runners:
        await runner.close()
