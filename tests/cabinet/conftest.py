"""Fixtures shared by the cabinet's adapter and service tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cabinet.adapters.harness import CloudPeer
from tests.services import Mosquitto


@pytest.fixture
def peer(mosquitto: Mosquitto) -> Iterator[CloudPeer]:
    """A scripted cloud subscribed to every cabinet's events, states and acks."""
    cloud = CloudPeer(mosquitto)
    yield cloud
    cloud.close()
