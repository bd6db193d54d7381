"""`locker bench console`: the console's pages over a big fleet in PostgreSQL, server time.

A scratch database gets SITES sites, CABINETS cabinets of 48 doors each and PARCELS parcels
(set-based INSERTs: seconds): about half behind doors, a few past their deadline, the rest
picked up; and some open alarms. Then the real app (`cloud.api.create_app`, in process, over
ASGI: no network in the figure) serves, to a signed-in operator admin and a site manager:

- the fleet page (every cabinet in scope, sorted by status),
- the cabinet page of random cabinets,
- the live stream's per-poll read (the cabinet's fingerprint and its grid, rendered),

each timed from request to the last byte. The issue's target: fleet and cabinet pages in at
most 200 ms p95 server time with 1,000 cabinets and 100,000 parcels.
"""

from __future__ import annotations

import random
import re
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from cloud.db.migrate import upgrade
from locker.harness.postgres import libpq_url

TARGET_P95_MS = 200.0
DOORS = 48
PASSWORD = "bench-password-0123456789"

_FILL = """
INSERT INTO sites (id, name, pickup_window_s, code_length, timezone, language,
                   overdue_fee_per_day_minor, currency, resend_limit, resend_window_s, created_at)
SELECT 'site-' || s, 'Site ' || s, 259200, 8, 'Asia/Shanghai', 'zh-CN', 0, 'CNY', 3, 3600, now()
FROM generate_series(1, %(sites)s::int) AS s;
INSERT INTO cabinets (id, site_id, name, address, code_key, online, boot, firmware,
                      last_seen_at, presence_since, applied_upto, created_at)
SELECT 'cab-' || c, 'site-' || (1 + (c - 1) %% %(sites)s::int), 'Cabinet ' || c, '', 'x',
       c %% 17 <> 0, 1, '1.4.' || (c %% 3), now() - (c %% 300) * interval '1 second',
       now() - interval '3 hours', 0, now()
FROM generate_series(1, %(cabinets)s::int) AS c;
INSERT INTO compartments (cabinet_id, id, size, low_door, state, in_service)
SELECT 'cab-' || c, 'A' || lpad(d::text, 2, '0'),
       CASE WHEN d <= 16 THEN 'S' WHEN d <= 40 THEN 'M' ELSE 'L' END, d <= 8,
       CASE WHEN d = 47 AND c %% 9 = 0 THEN 'faulted' ELSE 'free' END, NOT (d = 48 AND c %% 11 = 0)
FROM generate_series(1, %(cabinets)s::int) AS c, generate_series(1, 48) AS d;
INSERT INTO parcels (id, parcel_id, tracking_no, status, cabinet_id, phone, compartment, size,
                     code_generation, deposited_at, clock_started_at, window_s, pauses,
                     told_deadline, left_locker_at, created_at, updated_at)
SELECT 'P' || g, 'P' || g, 'SF' || lpad(g::text, 10, '0'),
       CASE WHEN g %% 2 = 0 THEN 'picked_up' WHEN g %% 50 = 1 THEN 'expired' ELSE 'in_locker' END,
       'cab-' || (1 + (g / 2) %% %(cabinets)s::int),
       '+86138' || lpad((g %% 100000000)::text, 8, '0'),
       CASE WHEN g %% 2 = 0 THEN NULL
            ELSE 'A' || lpad((1 + (g / (2 * %(cabinets)s::int)) %% 46)::text, 2, '0') END,
       'M', 1, d, d, 259200, '[]'::json, d + interval '3 days',
       CASE WHEN g %% 2 = 0 THEN d + interval '5 hours' END, d, d
FROM (SELECT g, now() - (g %% 500) * interval '10 minutes' AS d
      FROM generate_series(1, %(parcels)s::int) AS g) AS s;
UPDATE compartments AS c SET state = 'occupied'
FROM parcels AS p
WHERE p.cabinet_id = c.cabinet_id AND p.compartment = c.id AND p.left_locker_at IS NULL
  AND c.state = 'free';
INSERT INTO alarms (cabinet_id, compartment, kind, detail, at)
SELECT 'cab-' || (1 + a %% %(cabinets)s::int), 'A02', 'door.forced', '', now()
FROM generate_series(1, %(alarms)s::int) AS a;
ANALYZE;
"""


@dataclass(frozen=True)
class Timing:
    n: int
    p50_ms: float
    p95_ms: float
    max_ms: float


@dataclass(frozen=True)
class Figures:
    cabinets: int
    parcels: int
    fill_s: float
    fleet_admin: Timing  # every cabinet
    fleet_manager: Timing  # one site's
    cabinet_page: Timing
    live_poll: Timing  # one poll of an open cabinet page's stream
    target_p95_ms: float = TARGET_P95_MS


def fill(url: str, *, sites: int, cabinets: int, parcels: int) -> float:
    """Migrate the empty database at `url` and fill it; return the seconds."""
    upgrade(url)
    started = time.perf_counter()
    with psycopg.connect(libpq_url(url), autocommit=False) as conn:
        values = {"sites": sites, "cabinets": cabinets, "parcels": parcels, "alarms": cabinets * 2}
        for statement in _FILL.split(";\n"):
            if statement.strip():
                names = set(re.findall(r"%\((\w+)\)s", statement))
                conn.execute(statement, {k: v for k, v in values.items() if k in names})  # type: ignore[arg-type]
        conn.commit()
    # A bulk fill leaves the visibility map empty until autovacuum gets to it (minutes later);
    # a running system's tables are vacuumed, so its index-only reads skip the heap. Measure that.
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return round(time.perf_counter() - started, 1)


def _timing(samples: list[float]) -> Timing:
    ordered = sorted(samples)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return Timing(
        n=len(ordered),
        p50_ms=round(statistics.median(ordered) * 1000, 1),
        p95_ms=round(p95 * 1000, 1),
        max_ms=round(ordered[-1] * 1000, 1),
    )


def _signed_in(app: Any, username: str) -> Any:
    from fastapi.testclient import TestClient

    client = TestClient(app, base_url="https://bench")
    form = client.get("/console/sign-in").text
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token is not None
    response = client.post(
        "/console/sign-in",
        data={"username": username, "password": PASSWORD, "csrf": token.group(1)},
        follow_redirects=False,
    )
    if response.status_code != 303:
        raise RuntimeError(f"bench account {username} could not sign in: {response.status_code}")
    return client


def _time(client: Any, path: str, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        samples.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code}")
    return samples


def run(url: str, *, sites: int, cabinets: int, parcels: int, requests: int) -> Figures:
    """Fill the scratch database at `url`, then time the pages; return the figures."""
    import secrets

    from sqlmodel import Session

    from cloud.api import create_app
    from cloud.core.access import Principal, PrincipalKind
    from cloud.db.engine import make_engine
    from cloud.services import console_views
    from cloud.services.accounts import add_account
    from cloud.settings import CloudSettings

    fill_s = fill(url, sites=sites, cabinets=cabinets, parcels=parcels)
    engine = make_engine(url)
    now = datetime.now(UTC)
    with Session(engine) as session:
        add_account(session=session, username="bench-ops", role="operator_admin",
                    password=PASSWORD, now=now)  # fmt: skip
    with Session(engine) as session:
        add_account(session=session, username="bench-mgr", role="site_manager",
                    password=PASSWORD, now=now, site_ids=("site-1",))  # fmt: skip
    settings = CloudSettings(database_url=url, secret_key=secrets.token_hex(32))
    app = create_app(settings, engine=engine, clock=lambda: datetime.now(UTC))
    admin, manager = _signed_in(app, "bench-ops"), _signed_in(app, "bench-mgr")
    _time(admin, "/console/fleet", 2)  # warm the pools and the template cache
    fleet_admin = _time(admin, "/console/fleet", requests)
    fleet_manager = _time(manager, "/console/fleet", requests)
    draw = random.Random(14)
    cabinet_samples: list[float] = []
    for _ in range(requests * 4):
        cabinet_samples += _time(admin, f"/console/cabinets/cab-{draw.randint(1, cabinets)}", 1)
    principal = Principal(PrincipalKind.OPERATOR_ADMIN, "bench")
    poll_samples = []
    for _ in range(requests * 4):
        cab = f"cab-{draw.randint(1, cabinets)}"
        started = time.perf_counter()
        with Session(engine) as session:
            console_views.cabinet_fingerprint(session=session, cab=cab)
            console_views.cabinet_page(session=session, principal=principal, cab=cab, now=now)
        poll_samples.append(time.perf_counter() - started)
    engine.dispose()
    return Figures(
        cabinets=cabinets,
        parcels=parcels,
        fill_s=fill_s,
        fleet_admin=_timing(fleet_admin),
        fleet_manager=_timing(fleet_manager),
        cabinet_page=_timing(cabinet_samples),
        live_poll=_timing(poll_samples),
    )


def as_dict(figures: Figures) -> dict[str, Any]:
    return asdict(figures)
