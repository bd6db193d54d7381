"""A burst of ERP reads larger than the database pool queues instead of locking up the API."""

from __future__ import annotations

import asyncio
import secrets

import httpx

from cloud.api import create_app
from cloud.api.admission import pool_capacity
from cloud.db.engine import make_engine
from cloud.settings import CloudSettings
from locker.bench.queries import _erp_key, fill


def test_a_burst_bigger_than_the_pool_is_answered_in_full(postgres_url: str) -> None:
    secret = secrets.token_hex(32)
    fill(postgres_url, parcels=400, cabinets=10, secret_key=secret.encode(),
         progress=lambda *_: None)  # fmt: skip
    key = _erp_key(postgres_url)
    # Two connections and a short checkout time-out: 40 threads against 2 connections had
    # every thread waiting in the checkout while the requests holding them waited for a thread.
    engine = make_engine(postgres_url, pool_size=2, max_overflow=0, pool_timeout=3)
    assert pool_capacity(engine) == 2
    app = create_app(CloudSettings(database_url=postgres_url, secret_key=secret), engine=engine)

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            answers = await asyncio.gather(
                *(client.get(f"/api/v1/tracking/SF{g:012d}", headers={"X-API-Key": key})
                  for g in range(4, 400, 4))
            )  # fmt: skip
        return [a.status_code for a in answers]

    try:
        assert asyncio.run(burst()) == [200] * 99
    finally:
        engine.dispose()
