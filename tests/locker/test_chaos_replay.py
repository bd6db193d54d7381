"""Exact replay: the nemesis records each fault with the workload step it came at, and a replay
injects the same faults at the same steps (no processes: a cluster that only counts)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from locker.chaos.history import History, read_history
from locker.chaos.nemesis import Nemesis, faults_of


class _Twilio:
    def __init__(self) -> None:
        self.failures: list[int] = []

    def fail_next(self, count: int) -> None:
        self.failures.append(count)


def _cluster(twilio: _Twilio) -> Any:
    return SimpleNamespace(
        cabinets=[SimpleNamespace(id="cab-1")],
        stack=SimpleNamespace(sinks=SimpleNamespace(twilio=twilio)),
    )


def _until(probe, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        assert time.monotonic() < deadline, "the nemesis did not act in time"
        time.sleep(0.01)


def test_a_recorded_fault_is_replayed_at_its_workload_step_not_its_instant(
    tmp_path: Path,
) -> None:
    # A run: the nemesis injects an SMS failure at workload step 2, and the history keeps it.
    path = tmp_path / "chaos-history.jsonl"
    history = History(path)
    history.add("workload", "start", seed=5, cycles=3)
    history.add("workload", "deposit.ok")
    twilio = _Twilio()
    live = Nemesis(_cluster(twilio), history, seed=5, gap_s=1, limit=1, kinds=("sms-fail",))
    live._inject("sms-fail")
    history.close()
    schedule = faults_of(read_history(path))
    assert len(schedule) == 1 and schedule[0]["at_step"] == 2
    assert schedule[0]["kind"] == "sms-fail" and schedule[0]["count"] == twilio.failures[0]

    # Its replay: nothing until the workload reaches step 2, then the same fault, once.
    replay_history, replayed = History(), _Twilio()
    nemesis = Nemesis(
        _cluster(replayed), replay_history, seed=99, gap_s=1, limit=0, schedule=schedule
    ).start()
    try:
        replay_history.add("workload", "start")
        time.sleep(0.1)
        assert replayed.failures == []
        replay_history.add("workload", "deposit.ok")
        _until(lambda: replayed.failures)
        assert replayed.failures == twilio.failures
        assert [r["op"] for r in replay_history.records if r["who"] == "nemesis"] == ["sms-fail"]
    finally:
        nemesis._stop.set()
        nemesis._thread.join(timeout=5)
    assert nemesis.errors == []
