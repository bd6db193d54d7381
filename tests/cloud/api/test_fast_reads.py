"""The tracking read's fast path (cloud/api/fast_reads.py) answers exactly as the route does, and
leaves every other answer to the route, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from cloud.api import create_app
from cloud.api.fast_reads import TrackingFastPath
from cloud.settings import CloudSettings
from tests.cloud.api.conftest import HEADERS, Clock, deposit

TRACKING = "/api/v1/tracking/SF0000000001"
TEMPLATE = "/api/v1/tracking/{tracking_no}"


@pytest.fixture
def route_only(
    engine: Engine, settings: CloudSettings, clock: Clock, client: TestClient
) -> Iterator[TestClient]:
    """A second API process that keeps no principal, so its fast path never answers."""
    no_cache = settings.model_copy(update={"erp_key_cache_s": 0.0})
    with TestClient(create_app(no_cache, engine=engine, clock=clock)) as other:
        yield other


def answered(client: TestClient, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    response = client.get(path, headers=headers)
    return response.status_code, response.headers["content-type"], response.content


def test_a_cached_keys_read_is_the_routes_answer_byte_for_byte(
    client: TestClient, route_only: TestClient, engine: Engine
) -> None:
    deposit(engine)
    read = mock.patch.object(
        TrackingFastPath, "_read", autospec=True, side_effect=TrackingFastPath._read
    )
    with read as fast:
        first = answered(client, TRACKING, HEADERS)  # the key is read: the route answers
        assert fast.call_count == 0
        second = answered(client, TRACKING, HEADERS)  # its principal is kept: the fast path
        assert fast.call_count == 1
    assert first[0] == 200
    assert second == first == answered(route_only, TRACKING, HEADERS)
    # Timed under the route's template like the route's own answers.
    registry = client.app.state.metrics_registry  # type: ignore[attr-defined]
    labels = {"method": "GET", "route": TEMPLATE, "status": "2xx"}
    assert registry.get_sample_value("locker_http_request_duration_seconds_count", labels) == 2


# What the route refuses or does not find (one app per database: a setup costs a migration).
OTHERS = [
    ("/api/v1/tracking/SF9999999999", HEADERS, 404),  # no such parcel
    ("/api/v1/tracking/" + "S" * 65, HEADERS, 422),  # longer than the route takes
    (TRACKING, {}, 401),  # no key
    (TRACKING, {"X-API-Key": "not-a-key"}, 401),  # a key never cached
]


def test_every_other_answer_is_the_routes(
    client: TestClient, route_only: TestClient, engine: Engine
) -> None:
    deposit(engine)
    assert client.get(TRACKING, headers=HEADERS).status_code == 200  # the key's principal kept
    for path, headers, status in OTHERS:
        got = answered(client, path, headers)
        assert got[0] == status, path
        assert got == answered(route_only, path, headers), path
