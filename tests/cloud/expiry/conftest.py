"""Fixtures of the expiry tests: a fake Twilio to receive the worker's texts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cloud.fakes.twilio_server import FakeTwilio


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server
