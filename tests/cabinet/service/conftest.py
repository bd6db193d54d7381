"""Fixtures for the service tests: a simulated lock board on a pty, a cloud peer, a service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_sim import PtyServer, SimulatedBus
from tests.cabinet.service.harness import ServiceRunner
from tests.services import Mosquitto


@pytest.fixture
def service_factory(
    mosquitto: Mosquitto, sim: tuple[SimulatedBus, PtyServer], tmp_path: Path
) -> Iterator[Callable[..., ServiceRunner]]:
    """Start services on the simulated bus and the test broker (one journal per test)."""
    runners: list[ServiceRunner] = []

    def start(**kwargs: Any) -> ServiceRunner:
        runner = ServiceRunner(mosquitto, sim[1].path, tmp_path / "journal.sqlite3", **kwargs)
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        runner.close()
