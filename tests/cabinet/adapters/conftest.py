"""Fixtures for the adapter tests: a cloud peer and a running link on a per-test Mosquitto."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cabinet.adapters.harness import CloudPeer, LinkRunner
from tests.services import Mosquitto


@pytest.fixture
def runner(mosquitto: Mosquitto, peer: CloudPeer, tmp_path: Path) -> Iterator[LinkRunner]:
    """A link for cabinet `cab1` started after the peer (so the peer sees everything)."""
    link = LinkRunner(mosquitto, tmp_path / "journal.db")
    link.wait_online()
    yield link
    link.close()
