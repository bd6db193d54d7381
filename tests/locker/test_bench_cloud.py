"""`locker bench cloud` end to end, small: the report's counts agree with each other and the
database (no timing asserted: figures are the benchmark's business, not a test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import Mosquitto

LOCKER = Path(sys.executable).parent / "locker"


def test_bench_cloud_handles_every_event_once_on_postgres(
    tmp_path: Path, mosquitto: Mosquitto, postgres_url: str
) -> None:
    out = tmp_path / "cloud.json"
    done = subprocess.run(
        [
            str(LOCKER),
            "bench",
            "cloud",
            "--cabinets",
            "20",
            "--rates",
            "50,100",
            "--step-s",
            "2",
            "--broker",
            f"mqtt://{mosquitto.host}:{mosquitto.port}",
            "--database-url",
            postgres_url,
            "--all-steps",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "against the targets" in done.stdout
    figures = json.loads(out.read_text())
    check = figures["consistency"]

    # 2 steps of 2 s at 50 and 100 events/s for each phase: 300 events each.
    published = check["published"]
    assert published == 300
    assert check["pubacked"] == 2 * published  # the worker phase's and the bare phase's
    # Every published deposit got exactly one codes.put, for itself, and its event-ack.
    assert check["codes_put_received"] == published
    assert check["codes_put_commands_received"] == published
    assert check["published_without_codes_put"] == 0
    assert check["codes_put_for_unpublished"] == 0
    assert check["command_redeliveries"] == 0
    assert check["bad_messages"] == 0
    assert check["every_event_acked"] is True
    assert check["drained"] is True
    # The database holds each once: stored, applied, a parcel, a codes.put sent and acked, a notice.
    db = check["database"]
    assert db["events"] == db["events_applied"] == published
    assert db["anomalies"] == 0
    assert db["parcels_in_locker"] == published
    assert db["codes_put_rows"] == db["codes_put_sent"] == db["codes_put_acked"] == published
    assert db["codes_put_resent"] == 0
    assert db["notices_queued"] == published
    assert db["applied_upto_sum"] == published
    # The bare ingest stored every raw event of its phase.
    assert check["bare_published"] == check["bare_stored"] == published
    assert check["bare_drained"] is True

    for part in ("worker", "bare_ingest"):
        steps = figures[part]["steps"]
        assert [s["target_rate"] for s in steps] == [50, 100]
        assert sum(s["published"] for s in steps) == published
        for step in steps:
            latency = step["latency_ms"]
            assert step["handled"] == step["published"]
            assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    # What each process spent per event; the broker is the test's own, so not counted.
    by_role = figures["worker"]["cpu_ms_per_event_by_role"]
    assert set(by_role) == {
        "worker",
        "cabinets_side",
        "publishers",
        "broker",
        "postgresql",
        "total",
    }
    assert by_role["worker"] > 0 and by_role["publishers"] > 0 and by_role["postgresql"] > 0
    assert by_role["broker"] == 0
    assert by_role["total"] == pytest.approx(sum(v for k, v in by_role.items() if k != "total"))
    assert set(figures["bare_ingest"]["cpu_ms_per_event_by_role"]) >= {"bare_ingest", "total"}
    assert figures["worker"]["logs"]["worker-0.log"]["tracebacks"] == 0
    assert figures["setup"]["cabinets"] == 20
    assert figures["targets"] == {
        "sustained_per_s": 2000.0,
        "share_of_bare": 0.5,
        "p99_ms_at_1000": 100.0,
    }


def test_bench_cloud_refuses_falling_rates() -> None:
    done = subprocess.run(
        [str(LOCKER), "bench", "cloud", "--rates", "500,100"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "rising" in done.stdout + done.stderr
