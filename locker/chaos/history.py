"""The run's history: every operation the workload tried and every fault the nemesis injected,
in the order they happened, with what came of each. Written as JSON lines as it grows (so a run
that dies leaves its history behind), read by the checker, excerpted on a violation."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class History:
    """An append-only, thread-safe list of records: `{"i", "t", "who", "op", ...}`."""

    def __init__(self, path: Path | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        # The workload's steps so far: the nemesis records each fault at the step it came, and a
        # replay injects it at the same step (the instants depend on the machine's pace).
        self.steps = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._file = path.open("w") if path is not None else None

    def add(self, who: str, op: str, **fields: Any) -> dict[str, Any]:
        """Record one step; `who` is "workload" or "nemesis"."""
        with self._lock:
            now = time.monotonic()
            if who == "workload":
                self.steps += 1
            record = {
                "i": len(self.records),
                "t": round(now - self._started, 3),
                # CLOCK_MONOTONIC itself, the clock the simulators stamp their pulses with
                "mono": round(now, 4),
                "step": self.steps,
                "who": who,
                "op": op,
                **fields,
            }
            self.records.append(record)
            if self._file is not None:
                self._file.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
                self._file.flush()
        return record

    def of(self, op: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.records if r["op"] == op]

    def about(self, key: str, value: Any) -> list[dict[str, Any]]:
        """Every record whose `key` is `value` (a parcel's tracking number, a cabinet)."""
        with self._lock:
            return [r for r in self.records if r.get(key) == value]

    def excerpt(self, around: Iterable[dict[str, Any]], faults_within_s: float = 30.0) -> str:
        """The shortest history that shows a violation: its own records, and the faults
        injected from `faults_within_s` before the first of them to the last."""
        own = sorted(around, key=lambda r: r["i"])
        if not own:
            return ""
        first, last = own[0]["t"] - faults_within_s, own[-1]["t"]
        with self._lock:
            faults = [r for r in self.records if r["who"] == "nemesis" and first <= r["t"] <= last]
        shown = sorted({r["i"]: r for r in own + faults}.values(), key=lambda r: r["i"])
        return "\n".join(_line(r) for r in shown)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_history(path: Path) -> list[dict[str, Any]]:
    """The records of a history file a run wrote (a half-written last line is skipped)."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _line(record: dict[str, Any]) -> str:
    rest = {k: v for k, v in record.items() if k not in ("i", "t", "mono", "step", "who", "op")}
    return f"  #{record['i']:<5} {record['t']:>9.3f}s {record['who']:<8} {record['op']:<14} " + (
        json.dumps(rest, default=str, ensure_ascii=False)
    )
