"""An ERP key's principal is kept a few seconds per API process: the bound a revocation, or a
change of the key's sites, takes to apply, on both databases; and a key in steady use is
re-read ahead of that bound by one request, so requests never miss it together."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlmodel import Session, delete

from cloud.api import create_app
from cloud.api.fast_reads import TrackingFastPath
from cloud.api.key_cache import REFRESH_AFTER, PrincipalCache
from cloud.core.access import Principal, PrincipalKind
from cloud.db.models import ErpApiKey, ErpKeySite
from cloud.settings import CloudSettings
from tests.cloud.api.conftest import HEADERS, Clock, deposit
from tests.cloud.db.builders import T0

TRACKING = "/api/v1/tracking/SF0000000001"


def revoke(engine: Engine) -> None:
    """Revoke the test key as `locker cloud erp-key revoke` does: from another process."""
    with Session(engine) as session:
        key = session.get(ErpApiKey, "erp-1")
        assert key is not None
        key.revoked_at = T0
        session.add(key)
        session.commit()


@pytest.fixture
def key_reads(engine: Engine) -> Iterator[list[str]]:
    """The statements that read an ERP key, as the database receives them."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "erp_api_keys" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


def test_a_revoked_key_works_until_its_refresh_and_is_refused_from_then_on(
    client: TestClient, engine: Engine, settings: CloudSettings, clock: Clock
) -> None:
    bound = settings.erp_key_cache_s
    refresh_at = bound * REFRESH_AFTER  # 5 s * 0.5 = 2.5 s after the read that kept it
    deposit(engine)
    assert client.get(TRACKING, headers=HEADERS).status_code == 200  # the key read and kept
    revoke(engine)
    # Until the entry is due for its refresh this process still serves the kept principal...
    clock.advance(refresh_at - 0.5)
    assert client.get(TRACKING, headers=HEADERS).status_code == 200
    # ... then the first request re-reads the key, is refused, and so is every request after it.
    clock.advance(0.5)
    for path in (TRACKING, TRACKING, "/api/v1/parcels", "/api/v1/shipments"):
        answer = client.get(path, headers=HEADERS)
        assert answer.status_code == 401, path
        assert answer.json() == {"detail": "unknown or revoked X-API-Key"}


def test_a_revoked_key_is_never_served_past_the_bound_even_while_its_refresh_is_out() -> None:
    """The bound is the cache's own arithmetic: an entry is served at most ttl_s after the read
    that found it began, whether or not a refresh was claimed (and however long it takes)."""
    clock = Clock(T0)
    ttl_s = 5.0
    cache = PrincipalCache(ttl_s=ttl_s, clock=clock)
    principal = Principal(PrincipalKind.ERP_CLIENT, "erp-1", frozenset({"site-1"}), carrier_id="sf")
    cache.put("h", principal, read_at=T0)  # read at T0; the key is revoked right after
    clock.advance(ttl_s * REFRESH_AFTER)  # 2.5 s: due; this caller is told to re-read...
    assert cache.lookup("h") == (principal, True)
    clock.advance(ttl_s - ttl_s * REFRESH_AFTER - 0.001)  # ... its read hangs: 4.999 s
    assert cache.lookup("h") == (principal, False)  # the others go on within the bound
    clock.advance(0.001)  # 5 s after the read: served no more, to anyone
    assert cache.lookup("h") == (None, False)
    # The hung read now ends (it began at 2.5 s and found the key live then): it is kept from
    # when it began, so served only until 2.5 + 5 = 7.5 s, and never beyond.
    cache.put("h", principal, read_at=T0 + timedelta(seconds=ttl_s * REFRESH_AFTER))
    clock.advance(ttl_s * REFRESH_AFTER - 0.001)  # 7.499 s
    assert cache.lookup("h")[0] == principal
    clock.advance(0.001)  # 7.5 s
    assert cache.lookup("h") == (None, False)


def test_only_one_request_refreshes_a_due_entry_and_a_failed_refresh_lets_another_try() -> None:
    clock = Clock(T0)
    cache = PrincipalCache(ttl_s=5.0, clock=clock)
    principal = Principal(PrincipalKind.ERP_CLIENT, "erp-1", frozenset({"site-1"}), carrier_id="sf")
    cache.put("h", principal, read_at=T0)
    assert [cache.lookup("h") for _ in range(3)] == [(principal, False)] * 3  # fresh: nobody
    clock.advance(2.5)
    claims = [cache.lookup("h")[1] for _ in range(100)]  # 100 requests in the refresh window
    assert claims.count(True) == 1 and claims[0]
    cache.release("h")  # that refresh failed (the database, not the key)
    assert cache.lookup("h") == (principal, True)  # the next request tries again
    cache.put("h", principal, read_at=clock())
    assert cache.lookup("h") == (principal, False)  # refreshed: nobody is due again
    cache.drop("h")  # a re-read found the key revoked
    assert cache.lookup("h") == (None, False)


def test_a_key_in_steady_use_is_re_read_ahead_of_its_bound_and_never_missed(
    client: TestClient,
    engine: Engine,
    settings: CloudSettings,
    clock: Clock,
    key_reads: list[str],
) -> None:
    bound = settings.erp_key_cache_s
    deposit(engine)
    assert client.get(TRACKING, headers=HEADERS).status_code == 200  # the key read and kept
    reads_per_lookup = len(key_reads)
    assert reads_per_lookup >= 1
    read = mock.patch.object(
        TrackingFastPath, "_read", autospec=True, side_effect=TrackingFastPath._read
    )
    step = bound / 10  # ten requests a bound, for four bounds
    with read as fast:
        for _ in range(40):
            clock.advance(step)
            assert client.get(TRACKING, headers=HEADERS).status_code == 200
    # Every request found the key kept (a miss goes to the route, not the fast path)...
    assert fast.call_count == 40
    # ... and the key was re-read once each time its entry was half a bound old: at 0.5 s steps,
    # 2.5 s after each read, so 40 / 5 = 8 times, by one request each (the fast path's own).
    assert len(key_reads) == reads_per_lookup * (1 + 40 // round(bound * REFRESH_AFTER / step))


def test_a_key_moved_off_its_site_sees_its_parcels_go_within_the_bound(
    client: TestClient, engine: Engine, settings: CloudSettings, clock: Clock
) -> None:
    deposit(engine)  # a parcel the key's carrier's courier deposited at the key's site
    assert client.get(TRACKING, headers=HEADERS).status_code == 200
    with Session(engine) as session:
        session.exec(delete(ErpKeySite).where(ErpKeySite.key_id == "erp-1"))  # type: ignore[call-overload]
        session.commit()
    clock.advance(settings.erp_key_cache_s)
    assert client.get(TRACKING, headers=HEADERS).status_code == 404


@pytest.fixture
def uncached(
    engine: Engine, settings: CloudSettings, clock: Clock, client: TestClient
) -> Iterator[TestClient]:
    """A second API process over the same database that keeps no principal (bound 0)."""
    no_cache = settings.model_copy(update={"erp_key_cache_s": 0.0})
    with TestClient(create_app(no_cache, engine=engine, clock=clock)) as other:
        yield other


def test_with_the_bound_at_zero_a_revocation_applies_at_once(
    uncached: TestClient, engine: Engine
) -> None:
    deposit(engine)
    assert uncached.get(TRACKING, headers=HEADERS).status_code == 200
    revoke(engine)
    assert uncached.get(TRACKING, headers=HEADERS).status_code == 401
