"""`locker bench edge` end to end, small: the figures are there and sane (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LOCKER = Path(sys.executable).parent / "locker"


def test_bench_edge_runs_20_pickups_and_writes_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "edge.json"
    done = subprocess.run(
        [str(LOCKER), "bench", "edge", "--pickups", "20", "--idle-s", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MQTT link disabled" in done.stdout  # it says the daemon ran offline
    figures = json.loads(out.read_text())

    # 20 pickups, each a real unlock the simulator received (the rest were the deposits).
    assert figures["pickups"] == 20
    assert figures["deposits"] == 20
    assert figures["sim_unlock_pulses"] == 40
    assert figures["sim_pickup_unlocks"] == 20
    assert figures["events"]["parcel.picked_up"] == 20
    assert figures["events"]["parcel.deposited"] == 20

    latency = figures["latency_ms"]
    assert set(latency) >= {"p50", "p95", "p99", "max"}
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"] < 5_000
    assert 1 < figures["rss_mb"] < 1_000  # the daemon's own resident memory, in MB
    assert figures["peak_rss_mb"] >= figures["rss_mb"]
    assert 0 <= figures["idle_cpu_pct"] < 100
    assert figures["idle_s"] >= 1
    assert figures["targets"] == {"p99_ms": 6.0, "rss_mb": 60.0, "idle_cpu_pct": 1.0}
    # The journal is on disk: each parcel costs at least its commits' WAL pages.
    assert figures["journal_bytes_written_per_pickup"] > 4096
    assert "journal bytes written per pickup" in done.stdout


def test_bench_edge_in_field_conditions_talks_to_a_real_broker_and_cloud_worker(
    tmp_path: Path,
) -> None:
    out = tmp_path / "field.json"
    json_arg = ("--json", str(out))
    done = subprocess.run(
        [str(LOCKER), "bench", "edge", "--field", "--pickups", "6", "--idle-s", "1", *json_arg],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MQTT link online" in done.stdout
    figures = json.loads(out.read_text())
    assert figures["setup"]["boards"] == 4 and figures["setup"]["doors"] == 96
    assert figures["pickups"] == 6 and figures["sim_pickup_unlocks"] == 6
    link = figures["link"]
    # The worker stored and acked every event, and its codes.put ran for every parcel.
    assert link["online"] and link["last_seq"] == 12 and link["unacked"] == 0
    assert link["cloud_codes_run_for"] == 6
    assert figures["cloud_rows"] == {"events": 12, "door_health": 96, "parcels": 6}
    # Four boards polled all along, each counted by the health ledger.
    boards = {b["board"]: b for b in link["health_boards"]}
    assert set(boards) == {"main:1", "main:2", "main:3", "main:4"}
    assert all(b["requests"] > 0 for b in boards.values())
    fsync = figures["journal_fsync_ms"]
    assert 0 < fsync["commit_p50"] <= fsync["commit_p99"]
    assert fsync["write_fsync_4k_p50"] > 0
