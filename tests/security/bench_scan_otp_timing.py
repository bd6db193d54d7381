"""Benchmark, not a test: how long `POST /api/v1/scan/{cab}/{nonce}/otp` takes for a phone with a
parcel and for one without (issue 11 part 3: the route must not tell who has a parcel).

    .venv/bin/python -m tests.security.bench_scan_otp_timing [ROUNDS]

Interleaves the two kinds of request over the real app (SQLite file, in-process client, injected
clock moved past every limit's window between requests) and prints each kind's median and p90.
The tests prove the same statements run either way (`test_scan_open.py`); this shows the time.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from cloud.api import create_app
from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.services.scan_open import OTP_WINDOW_S
from cloud.settings import CloudSettings
from tests.cloud.api.conftest import NOW, Clock, deposit, fetch_nonce
from tests.cloud.db.builders import CAB, PHONE, SEAL_KEY

NO_PARCEL = "+8613900001111"


def main(rounds: int) -> None:
    url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'cloud.db'}"
    upgrade(url)
    engine = make_engine(url)
    deposit(engine)  # PHONE has a parcel at CAB; NO_PARCEL has none
    clock = Clock(NOW)
    settings = CloudSettings(
        database_url=url, base_url="https://lockers.example", secret_key=SEAL_KEY.decode()
    )
    times: dict[str, list[float]] = {"with a parcel": [], "without": []}
    with TestClient(create_app(settings, engine=engine, clock=clock)) as client:
        for _ in range(rounds):
            for kind, phone in (("with a parcel", PHONE), ("without", NO_PARCEL)):
                clock.advance(OTP_WINDOW_S + 1)
                nonce = fetch_nonce(client)
                started = time.perf_counter()
                answer = client.post(f"/api/v1/scan/{CAB}/{nonce}/otp", json={"phone": phone})
                times[kind].append(time.perf_counter() - started)
                assert answer.status_code == 202, answer.text
    engine.dispose()
    for kind, samples in times.items():
        samples.sort()
        print(
            f"{kind:>14}: median {statistics.median(samples) * 1000:.2f} ms, "
            f"p90 {samples[int(len(samples) * 0.9)] * 1000:.2f} ms ({len(samples)} requests)"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
