"""Fixtures for the adapter tests: a cloud peer and a running link on a per-test Mosquitto."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cabinet.adapters.harness import CloudPeer, LinkRunner, start_link
from tests.services import Mosquitto


@pytest.fixture
async def runner(
    mosquitto: Mosquitto, peer: CloudPeer, tmp_path: Path
) -> AsyncIterator[LinkRunner]:
    """A link for cabinet `cab1` on the test's loop, started after the peer (it sees everything)."""
    link = await start_link(mosquitto, tmp_path / "journal.db")
    await link.wait_online()
    yield link
    await link.close()
