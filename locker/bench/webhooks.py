"""`locker bench webhooks`: time from a webhook outbox row's commit to its arrival at a real
local HTTP receiver, at a steady rate of events, with the worker's dispatcher.

A producer thread commits one `webhook_outbox` row at a time (as a parcel's change does) at
`rate` per second, spread over `parcels` parcels owned by one ERP key with one endpoint; a
dispatcher thread runs `WebhookDispatcher.tick` every `tick_s` seconds (the worker's
housekeeping runs every 1 s, `cloud.worker.service.DISPATCH_EVERY_S`); the receiver records when
each `webhook-id` arrived and verifies its signature. Latency is arrival minus commit, both on
this machine's monotonic clock.
"""

from __future__ import annotations

import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlmodel import Session
from standardwebhooks import Webhook

from cloud.db import repo
from cloud.db.engine import make_engine, write_session
from cloud.db.migrate import upgrade
from cloud.db.models import CabinetCreate, Carrier, ErpApiKey, Parcel, SiteCreate, WebhookOutbox
from cloud.notify.webhooks import WebhookDispatcher
from cloud.services import webhooks as service

SEAL_KEY = b"bench-webhooks-only-0123456789abcdef0123456789abcdef"
TARGET_P99_MS = 1000.0


def _receiver(secret_box: list[str], arrivals: dict[str, float], bad: list[str]):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            at = time.monotonic()
            try:
                Webhook(secret_box[0]).verify(body, dict(self.headers.items()))
            except Exception as err:  # counted: a bench that sends unverifiable events fails
                bad.append(str(err))
            arrivals.setdefault(self.headers["webhook-id"], at)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


def _setup(engine: Any, allow: frozenset[str], url: str, parcels: int) -> tuple[str, list[str]]:
    """A site, a cabinet, a carrier's key with one endpoint at `url`, and `parcels` parcels it
    owns; return the endpoint's secret and the parcels' row ids."""
    now = datetime.now(UTC)
    with Session(engine) as session:
        repo.create_site(session=session, site_create=SiteCreate(id="s1", name="Bench"), now=now)
        repo.create_cabinet(
            session=session,
            cabinet_create=CabinetCreate(id="CAB-1", site_id="s1", name="Bench"),
            code_key=b"k" * 32,
            seal_key=SEAL_KEY,
            now=now,
        )
        session.add(Carrier(id="SF", name="SF", created_at=now))
        session.flush()
        session.add(
            ErpApiKey(
                id="key-1",
                name="bench",
                key_prefix="lk_bench",
                key_hash="x" * 64,
                carrier_id="SF",
                created_at=now,
            )
        )
        ids = [f"P{n:06d}" for n in range(parcels)]
        for parcel_id in ids:
            session.add(
                Parcel(
                    id=parcel_id,
                    tracking_no=f"SF{parcel_id}",
                    status="in_locker",
                    cabinet_id="CAB-1",
                    phone="+8613800000000",
                    owner_key_id="key-1",
                    owner_carrier_id="SF",
                    created_at=now,
                    updated_at=now,
                )
            )
        session.commit()
        created = service.register(
            session=session,
            key_id="key-1",
            url=url,
            event_types=["*"],
            seal_key=SEAL_KEY,
            allow=allow,
            resolve=service.system_resolve,
            now=now,
        )
    return created.secret, ids


def _percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def run_bench(
    *,
    events: int = 3000,
    rate: float = 100.0,
    tick_s: float = 0.2,
    parcels: int = 200,
    database_url: str | None = None,
) -> dict[str, Any]:
    """Produce `events` at `rate`/s, dispatch every `tick_s`; return the latency figures."""
    arrivals: dict[str, float] = {}
    bad: list[str] = []
    secret_box: list[str] = [""]
    server = _receiver(secret_box, arrivals, bad)
    port = server.server_address[1]
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    with tempfile.TemporaryDirectory() as workdir:
        url = database_url or f"sqlite:///{Path(workdir) / 'bench.db'}"
        upgrade(url)
        engine = make_engine(url)
        allow = frozenset({f"127.0.0.1:{port}"})
        secret_box[0], ids = _setup(engine, allow, f"http://127.0.0.1:{port}/hook", parcels)
        dispatcher = WebhookDispatcher(engine=engine, seal_key=SEAL_KEY, allow_hosts=allow)
        committed: dict[str, float] = {}
        stop = threading.Event()

        def produce() -> None:
            start = time.monotonic()
            for n in range(events):
                time.sleep(max(0.0, start + n / rate - time.monotonic()))
                # One write transaction per event, as a parcel's change commits its outbox row.
                with Session(engine, expire_on_commit=False) as session:
                    write_session(session)
                    now = datetime.now(UTC)
                    row = WebhookOutbox(
                        parcel_row_id=ids[n % len(ids)],
                        event="in_locker",
                        payload={"n": n},
                        next_attempt_at=now,
                        created_at=now,
                    )
                    session.add(row)
                    session.commit()
                    committed[f"msg_{row.id}"] = time.monotonic()

        def dispatch() -> None:
            while not stop.is_set():
                started = time.monotonic()
                result = dispatcher.tick(datetime.now(UTC))
                if not result.more:
                    stop.wait(max(0.0, tick_s - (time.monotonic() - started)))

        producer = threading.Thread(target=produce)
        sender = threading.Thread(target=dispatch)
        began = time.monotonic()
        producer.start()
        sender.start()
        producer.join()
        deadline = time.monotonic() + 30
        while len(arrivals) < events and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        sender.join()
        elapsed = time.monotonic() - began
        dispatcher.close()
        engine.dispose()
    server.shutdown()
    server.server_close()
    latencies = sorted((arrivals[k] - committed[k]) * 1000 for k in committed if k in arrivals)
    return {
        "events": events,
        "rate_per_s": rate,
        "tick_s": tick_s,
        "database": "postgresql" if database_url else "sqlite",
        "received": len(latencies),
        "lost": events - len(latencies),
        "bad_signatures": len(bad),
        "elapsed_s": round(elapsed, 1),
        "latency_ms": {
            name: round(_percentile(latencies, q), 1) if latencies else None
            for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
        },
        "target_p99_ms": TARGET_P99_MS,
    }
