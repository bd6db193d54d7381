"""`locker bench queries`: the ERP's reads over a million parcels in PostgreSQL, under load.

A scratch database is migrated and filled with set-based INSERTs in chunks (a progress bar
follows them): SITES sites, CABINETS cabinets (their code keys sealed under the bench's own
secret key, as `locker cloud serve` checks at start), four carriers, and PARCELS parcels over
the last half year, each with its timeline (announced, in the locker, picked up or expired:
about three rows a parcel). A quarter of the parcels are carrier "sf"'s, whose ERP key reads.

Then `locker cloud serve` runs as deploy runs it (one uvicorn process per port, REPLICAS of
them behind the proxy) and a load generator in a process of its own (locker.bench.http_load):

- (a) tracking: `GET /api/v1/tracking/{no}` of random "sf" parcels, open loop at RATE
  requests/s (latency counted from when each request was due, so queueing is in it);
- (b) shipment list: `GET /api/v1/shipments?limit=50` following `next_cursor`, by WALKERS
  readers at once, each starting at a random point of the history (a cursor) and reading
  PAGES pages before it jumps elsewhere.

It reports p50/p99/max, the rate achieved, and the CPU seconds of the API processes, the load
generator and the PostgreSQL backends that served them (all share this machine's cores).
Targets (issue 17): tracking p99 <= 20 ms at 500 requests/s, list p99 <= 50 ms.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from cloud.db.migrate import upgrade
from locker.harness.ports import free_port
from locker.harness.postgres import libpq_url
from locker.harness.processes import clean_env, cpu_s, locker_cli, stop_pid, wait_for

TARGET_TRACKING_P99_MS = 20.0
TARGET_LIST_P99_MS = 50.0
CARRIERS = ("sf", "jd", "yto", "zto")
READER = "sf"  # the carrier whose ERP key the load reads with
CHUNK = 50_000  # parcels a fill statement writes: the progress bar's step
HISTORY = timedelta(days=180)
# A JSON file to write the tracking phase's answers to, each as [due_s, latency_s] (when it was
# due, from start_wall, and how long it took): whether the slow ones come together, and when.
TRACE_ENV = "LOCKER_BENCH_QUERIES_TRACE"

_BASE = """
INSERT INTO sites (id, name, pickup_window_s, code_length, timezone, language,
                   overdue_fee_per_day_minor, currency, resend_limit, resend_window_s, created_at)
SELECT 'site-' || s, 'Site ' || s, 259200, 8, 'Asia/Shanghai', 'zh-CN', 100, 'CNY', 3, 3600,
       now() - interval '1 year'
FROM generate_series(1, %(sites)s::int) AS s;
INSERT INTO carriers (id, name, created_at)
SELECT c, upper(c), now() FROM unnest(%(carriers)s::text[]) AS c;
"""

# Parcels g in [lo, hi): created in order over HISTORY, so the newest are the highest g. Nine in
# ten were picked up, one in twenty is still in a locker, the rest expired.
_PARCELS = """
INSERT INTO parcels (id, parcel_id, tracking_no, order_no, status, cabinet_id, phone, compartment,
                     size, code_generation, announced_at, deposited_at, clock_started_at,
                     window_s, pauses, told_deadline, left_locker_at, owner_key_id,
                     owner_carrier_id, created_at, updated_at)
SELECT 'P' || lpad(g::text, 9, '0'), 'P' || lpad(g::text, 9, '0'),
       upper(c) || lpad(g::text, 12, '0'), 'O' || g,
       CASE WHEN g %% 20 = 0 THEN 'in_locker' WHEN g %% 10 = 5 THEN 'expired'
            ELSE 'picked_up' END,
       'cab-' || (1 + g %% %(cabinets)s::int), '+86138' || lpad((g %% 100000000)::text, 8, '0'),
       CASE WHEN g %% 20 = 0 THEN 'A' || lpad((1 + g %% 48)::text, 2, '0') END, 'M', 1,
       t, t + interval '6 hours', t + interval '6 hours', 259200, '[]'::json,
       t + interval '78 hours',
       CASE WHEN g %% 20 = 0 THEN NULL WHEN g %% 10 = 5 THEN t + interval '78 hours'
            ELSE t + interval '20 hours' END,
       'erp-' || c, c, t, t + interval '20 hours'
FROM (SELECT g, %(carriers)s::text[] AS cs,
             now() - %(history_s)s::float8 * (1 - g::float8 / %(parcels)s) * interval '1 second'
             AS t
      FROM generate_series(%(lo)s::int, %(hi)s::int - 1) AS g) AS s,
     LATERAL (SELECT cs[1 + g %% 4] AS c) AS pick;
INSERT INTO parcel_events (parcel_row_id, status, at, source, note, created_at)
SELECT p.id, e.status, e.at, e.source, '', e.at
FROM parcels AS p,
     LATERAL (VALUES ('announced', p.announced_at, 'erp'),
                     ('in_locker', p.deposited_at, 'cabinet'),
                     (CASE WHEN p.status = 'expired' THEN 'expired' ELSE 'picked_up' END,
                      p.left_locker_at, 'cabinet')) AS e(status, at, source)
WHERE p.id >= 'P' || lpad(%(lo)s::text, 9, '0') AND p.id < 'P' || lpad(%(hi)s::text, 9, '0')
  AND e.at IS NOT NULL;
"""


@dataclass(frozen=True)
class Latency:
    n: int
    rate_per_s: float  # achieved: answers per second of the phase
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]
    errors: int
    error_kinds: dict[str, int]


@dataclass(frozen=True)
class Cpu:
    """CPU seconds during one phase, and the share of one core that is per second."""

    api_s: float
    load_generator_s: float
    postgres_s: float
    wall_s: float


@dataclass(frozen=True)
class Load:
    """What the bench sends: tracking reads at `rate` a second for `seconds`, then `walkers`
    list readers for `list_seconds`, against `replicas` API processes."""

    rate: float = 500.0
    seconds: float = 20.0
    list_seconds: float = 15.0
    walkers: int = 4
    replicas: int = 2


@dataclass(frozen=True)
class Figures:
    parcels: int
    timeline_rows: int
    fill_s: float
    replicas: int
    tracking_rate: float
    tracking: Latency
    tracking_cpu: Cpu
    listing: Latency
    listing_cpu: Cpu
    plans: dict[str, str] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)  # the APIs' last error lines
    target_tracking_p99_ms: float = TARGET_TRACKING_P99_MS
    target_list_p99_ms: float = TARGET_LIST_P99_MS


Progress = Callable[[str, int, int], None]  # (what, done, total)


def _statements(sql: str) -> list[str]:
    return [s for s in sql.split(";\n") if s.strip()]


def _seal_code_keys(conn: psycopg.Connection, cabinets: int, secret_key: bytes) -> None:
    from cloud.db.cabinets import code_key_context
    from cloud.db.sealing import seal_bytes

    rows = [
        (f"cab-{c}", f"site-{1 + c % 20}", f"Cabinet {c}",
         seal_bytes(secret_key, os.urandom(64), context=code_key_context(f"cab-{c}")))
        for c in range(1, cabinets + 1)
    ]  # fmt: skip
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO cabinets (id, site_id, name, address, code_key, online, applied_upto,"
            " created_at) VALUES (%s, %s, %s, '', %s, true, 0, now() - interval '1 year')",
            rows,
        )


def fill(
    url: str, *, parcels: int, cabinets: int, secret_key: bytes, progress: Progress
) -> tuple[float, int]:
    """Migrate the empty database at `url` and fill it; return (seconds, timeline rows)."""
    upgrade(url)
    started = time.perf_counter()
    values: dict[str, Any] = {
        "sites": 20,
        "cabinets": cabinets,
        "carriers": list(CARRIERS),
        "parcels": parcels,
        "history_s": HISTORY.total_seconds(),
    }
    with psycopg.connect(libpq_url(url)) as conn:
        for statement in _statements(_BASE):
            conn.execute(statement, values)
        _seal_code_keys(conn, cabinets, secret_key)
        conn.commit()
        for lo in range(1, parcels + 1, CHUNK):
            hi = min(lo + CHUNK, parcels + 1)
            for statement in _statements(_PARCELS):
                conn.execute(statement, {**values, "lo": lo, "hi": hi})
            conn.commit()
            progress("fill", hi - 1, parcels)
        conn.execute("ANALYZE")
        row = conn.execute("SELECT count(*) FROM parcel_events").fetchone()
    assert row is not None
    return round(time.perf_counter() - started, 1), int(row[0])


def _erp_key(url: str) -> str:
    from sqlmodel import Session

    from cloud.db.engine import make_engine
    from cloud.services.registry import add_erp_key

    engine = make_engine(url)
    try:
        with Session(engine) as session:
            credentials = add_erp_key(
                session=session,
                key_id=f"erp-{READER}",
                name="bench ERP",
                now=datetime.now(UTC),
                carrier_id=READER,
                site_ids=[f"site-{s}" for s in range(1, 21)],
            )
    finally:
        engine.dispose()
    return credentials.key


def _backend_pids(url: str) -> list[int]:
    """The PostgreSQL backends connected to the bench's database (the APIs' pools)."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(r[0]) for r in rows]


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_s(pid)
        except (OSError, ValueError):
            continue  # a backend that ended meanwhile
    return total


def plans(url: str, tracking_no: str, cursor_at: tuple[datetime, str]) -> dict[str, str]:
    """EXPLAIN ANALYZE of the two reads as the API sends them for the reader's key."""
    scope = f"""(owner_carrier_id = '{READER}' OR (courier_id IN (SELECT id FROM couriers
        WHERE carrier = '{READER}') AND owner_carrier_id IS NULL AND owner_merchant_id IS NULL
        AND cabinet_id IN (SELECT id FROM cabinets WHERE site_id IN ('site-1', 'site-2'))))"""
    queries = {
        "tracking": f"SELECT * FROM parcels WHERE tracking_no = %(no)s AND {scope}"
        " ORDER BY created_at DESC LIMIT 1",
        "timeline": "SELECT * FROM parcel_events WHERE parcel_row_id = %(id)s ORDER BY at, id",
        "list_page": f"SELECT * FROM parcels WHERE {scope} AND (created_at, id) > (%(at)s, %(id)s)"
        " ORDER BY created_at, id LIMIT 51",
    }
    out = {}
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        row = conn.execute("SELECT id FROM parcels WHERE tracking_no = %s", (tracking_no,))
        found = row.fetchone()
        args = {"no": tracking_no, "id": found[0] if found else "", "at": cursor_at[0]}
        for name, sql in queries.items():
            if name == "list_page":
                args["id"] = cursor_at[1]
            lines = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", args)
            out[name] = "\n".join(r[0] for r in lines.fetchall())
    return out


def _latency(raw: dict[str, Any]) -> Latency:
    ordered = sorted(raw["latencies_s"]) or [0.0]

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return Latency(
        n=len(raw["latencies_s"]),
        rate_per_s=round(len(raw["latencies_s"]) / raw["elapsed_s"], 1) if raw["elapsed_s"] else 0,
        p50_ms=pick(0.50),
        p99_ms=pick(0.99),
        max_ms=round(ordered[-1] * 1000, 1),
        statuses=raw["statuses"],
        errors=raw["errors"],
        error_kinds=raw.get("error_kinds", {}),
    )


def _serve(url: str, port: int, secret_hex: str, log: Any) -> subprocess.Popen[bytes]:
    # Its log goes to a file: a pipe nobody reads would stop the server once it filled.
    env = clean_env(LOCKER_CLOUD_SECRET_KEY=secret_hex, LOCKER_CLOUD_DATABASE_URL=url)
    return subprocess.Popen(
        # No access log: the proxy in front (deploy/) logs requests; see docs/benchmarks.md.
        locker_cli("cloud", "serve", "--port", str(port), "--no-access-log"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def _up(port: int) -> bool:
    import http.client

    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/api/v1/openapi.json")
        return connection.getresponse().status == 200
    except OSError:
        return False


def _longest(plan: dict[str, Any]) -> float:
    """How long a load generator may take: its schedule, plus its requests' time-out."""
    open_s = len(plan["open"]["paths"]) / plan["open"]["rate"] if plan.get("open") else 0
    walk_s = plan["walk"]["duration_s"] if plan.get("walk") else 0
    return open_s + walk_s + 30


def _phase(
    plan: dict[str, Any], api: list[subprocess.Popen[bytes]], url: str
) -> tuple[dict[str, Any], Cpu]:
    backends = _backend_pids(url)
    api_before, pg_before = _cpu_of([p.pid for p in api]), _cpu_of(backends)
    started = time.perf_counter()
    generator = subprocess.Popen(
        [sys.executable, "-m", "locker.bench.http_load"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        answer, _ = generator.communicate(json.dumps(plan).encode(), timeout=_longest(plan))
    except subprocess.TimeoutExpired:
        generator.kill()
        generator.wait()
        raise RuntimeError("the load generator did not finish in time") from None
    wall = time.perf_counter() - started
    backends = sorted(set(backends) | set(_backend_pids(url)))
    cpu = Cpu(
        api_s=round(_cpu_of([p.pid for p in api]) - api_before, 2),
        load_generator_s=round(json.loads(answer)["cpu_s"], 2) if answer else 0.0,
        postgres_s=round(_cpu_of(backends) - pg_before, 2),
        wall_s=round(wall, 1),
    )
    if generator.returncode != 0 or not answer:
        raise RuntimeError(f"the load generator failed (exit {generator.returncode})")
    return json.loads(answer), cpu


@dataclass(frozen=True)
class Seed:
    """A filled database: the secret key its code keys are sealed under and the reader's key."""

    parcels: int
    timeline_rows: int
    fill_s: float
    secret_hex: str
    api_key: str


# A reused database (`--reuse-db`) keeps what a later run needs to serve it in this table.
_SEED_TABLE = "bench_queries_seed"


def seed(url: str, *, parcels: int, cabinets: int = 1000, progress: Progress) -> Seed:
    """Migrate and fill the empty database at `url`, make the reader's key, and record both."""
    secret_hex = secrets.token_hex(32)
    fill_s, timeline_rows = fill(
        url, parcels=parcels, cabinets=min(cabinets, parcels), secret_key=secret_hex.encode(),
        progress=progress,
    )  # fmt: skip
    made = Seed(parcels, timeline_rows, fill_s, secret_hex, _erp_key(url))
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute(
            f"CREATE TABLE {_SEED_TABLE} (parcels int, timeline_rows int, fill_s float8,"
            " secret_hex text, api_key text)"
        )
        conn.execute(
            f"INSERT INTO {_SEED_TABLE} VALUES (%s, %s, %s, %s, %s)",
            (made.parcels, made.timeline_rows, made.fill_s, made.secret_hex, made.api_key),
        )
    return made


def seeded(url: str) -> Seed | None:
    """The seed a reused database was filled with; None if it was never filled (or not fully)."""
    with psycopg.connect(libpq_url(url)) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (_SEED_TABLE,)).fetchone()
        if exists is None or exists[0] is None:
            return None
        row = conn.execute(f"SELECT * FROM {_SEED_TABLE}").fetchone()
    return Seed(*row) if row is not None else None


def kept_database(admin_url: str, name: str) -> str:
    """The URL of database `name`, kept between runs: created if missing, and made afresh if an
    earlier fill of it did not finish (it has no seed record)."""
    from psycopg import sql

    from locker.harness.postgres import admin_connect, database_exists, database_url

    url = database_url(admin_url, name)
    if database_exists(name, admin_url) and seeded(url) is not None:
        return url
    with admin_connect(admin_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url


def run(
    url: str,
    *,
    parcels: int,
    load: Load = Load(),
    cabinets: int = 1000,
    progress: Progress = lambda _what, _done, _total: None,
) -> Figures:
    """Fill the scratch database at `url` (unless it holds a seed already), serve it, load it;
    return the figures."""
    filled = seeded(url)
    if filled is None:
        filled = seed(url, parcels=parcels, cabinets=cabinets, progress=progress)
    else:
        upgrade(url)  # kept from an older revision: `locker cloud serve` serves only the head
    return measure(url, filled, load, progress=progress)


def measure(
    url: str,
    filled: Seed,
    load: Load,
    *,
    progress: Progress = lambda _what, _done, _total: None,
) -> Figures:
    """Serve the filled database at `url` and send it `load`; return the figures."""
    parcels, secret_hex, key = filled.parcels, filled.secret_hex, filled.api_key
    rate, seconds, replicas = load.rate, load.seconds, load.replicas
    walkers, list_seconds = load.walkers, load.list_seconds
    draw = random.Random(17)
    mine = [g for g in range(1, parcels + 1) if CARRIERS[g % 4] == READER]
    requests = max(1, int(rate * seconds))
    tracking_paths = [
        f"/api/v1/tracking/{READER.upper()}{draw.choice(mine):012d}" for _ in range(requests)
    ]
    list_starts = []
    from cloud.services.shipments import encode_cursor

    with psycopg.connect(libpq_url(url)) as conn:
        for g in draw.sample(mine, min(len(mine), 200)):
            row = conn.execute(
                "SELECT created_at, id FROM parcels WHERE id = %s", (f"P{g:09d}",)
            ).fetchone()
            assert row is not None
            list_starts.append(f"/api/v1/shipments?limit=50&cursor={encode_cursor(row[0], row[1])}")
        deep = conn.execute(
            "SELECT created_at, id FROM parcels ORDER BY created_at LIMIT 1 OFFSET %s",
            (parcels // 2,),
        ).fetchone()
    assert deep is not None
    ports = [free_port() for _ in range(replicas)]
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    api = [_serve(url, port, secret_hex, log) for port in ports]
    try:
        for port, process in zip(ports, api, strict=True):
            wait_for(lambda p=port, pr=process: _up(p) or pr.poll() is not None, 60, "the API")
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"locker cloud serve exited: {log.read().decode()[-2000:]}")
        progress("warm", 0, 1)
        warm = {"ports": ports, "headers": {"X-API-Key": key},
                "open": {"rate": 100, "paths": tracking_paths[:200]}}  # fmt: skip
        _phase(warm, api, url)
        progress("tracking", 0, 1)
        plan = {"ports": ports, "headers": {"X-API-Key": key},
                "open": {"rate": rate, "paths": tracking_paths}}  # fmt: skip
        tracked, tracking_cpu = _phase(plan, api, url)
        if trace := os.environ.get(TRACE_ENV):
            answers = zip(tracked["open"]["due_s"], tracked["open"]["latencies_s"], strict=True)
            with open(trace, "w") as out:
                json.dump(
                    {"start_wall": tracked["open"]["start_wall"], "answers": sorted(answers)}, out
                )
        progress("list", 0, 1)
        plan = {"ports": ports, "headers": {"X-API-Key": key},
                "walk": {"walkers": walkers, "starts": ["/api/v1/shipments?limit=50", *list_starts],
                         "pages": 20, "duration_s": list_seconds}}  # fmt: skip
        listed, listing_cpu = _phase(plan, api, url)
    finally:
        for process in api:
            stop_pid(process)
        log.seek(0)
        server_log = log.read().decode(errors="replace")
        log.close()
    return Figures(
        parcels=parcels,
        timeline_rows=filled.timeline_rows,
        fill_s=filled.fill_s,
        replicas=replicas,
        tracking_rate=rate,
        tracking=_latency(tracked["open"]),
        tracking_cpu=tracking_cpu,
        listing=_latency(listed["walk"]),
        listing_cpu=listing_cpu,
        plans=plans(url, tracking_paths[0].rsplit("/", 1)[1], (deep[0], deep[1])),
        server_errors=[line for line in server_log.splitlines() if "Error" in line][-5:],
    )


def as_dict(figures: Figures) -> dict[str, Any]:
    return asdict(figures)
