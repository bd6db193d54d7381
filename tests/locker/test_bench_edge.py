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
