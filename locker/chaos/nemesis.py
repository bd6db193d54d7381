"""The nemesis: faults from the seed, at random instants, each healed after its own while.

Kinds (the report counts each):

- `kill-cabinet`, `kill-worker`, `kill-api`: kill -9 of that process, started again at once (a
  crash and systemd's restart);
- `kill-broker`: kill -9 of Mosquitto, started again on its port and store (it comes back with
  its last snapshot, which is why only the cloud's event-ack lets a cabinet forget an event);
- `cut-cabinet`, `cut-worker`: that one process's broker link refused, stalled or delayed;
- `pg-refuse`: every PostgreSQL connection reset and new ones refused (the machine's server is
  shared, so the outage is the proxy's, never a restart of the cluster);
- `board`: a lock board powered off and on, or its replies garbled, or noise on the bus;
- `sms-fail`: the SMS provider answers errors for the next few messages.

The schedule (which kind, which target, how long, the gaps) comes from the seed alone.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from locker.chaos.cluster import WORKERS, Cluster
from locker.chaos.history import History

KINDS = (
    "kill-cabinet",
    "kill-worker",
    "kill-api",
    "kill-broker",
    "cut-cabinet",
    "cut-worker",
    "pg-refuse",
    "board",
    "sms-fail",
)
CUT_MODES = ("refuse", "stall", "delay")
BOARD_FAULTS = ("power", "corrupt", "garbage")


@dataclass
class Heal:
    at: float  # monotonic
    what: str
    undo: Callable[[], None]


class Nemesis:
    """A thread that injects faults every `gap_s` (on average) until stopped or `limit` is hit."""

    def __init__(
        self,
        cluster: Cluster,
        history: History,
        *,
        seed: int,
        gap_s: float,
        limit: int,
        max_fault_s: float = 8.0,
        kinds: tuple[str, ...] = KINDS,
    ) -> None:
        self.cluster = cluster
        self.history = history
        self.rng = random.Random(f"nemesis-{seed}")
        self.gap_s = gap_s
        self.limit = limit
        self.max_fault_s = max_fault_s
        self.kinds = kinds
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        self._heals: list[Heal] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self._http = httpx.Client(timeout=5)
        self._lock = threading.Lock()

    def start(self) -> Nemesis:
        self._thread.start()
        return self

    def stop_and_heal(self) -> None:
        """Stop injecting and heal everything now."""
        self._stop.set()
        self._thread.join(timeout=60)
        with self._lock:
            heals, self._heals = self._heals, []
        for heal in heals:
            self._undo(heal)
        self.cluster.heal_network()
        for cabinet in self.cluster.cabinets:
            self._post(f"{cabinet.sim_url}/faults/1/clear", None)
            self._post(f"{cabinet.sim_url}/faults/line/clear", None)
        self._http.close()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def _run(self) -> None:
        next_at = time.monotonic() + self.rng.expovariate(1 / self.gap_s)
        while not self._stop.is_set():
            now = time.monotonic()
            self._heal_due(now)
            if now >= next_at and self.total < self.limit:
                kind = self.rng.choice(self.kinds)
                try:
                    self._inject(kind)
                except Exception as err:  # a fault that could not be injected is reported
                    self.errors.append(f"{kind}: {err}")
                    self.history.add("nemesis", "fault.error", kind=kind, error=str(err)[:300])
                next_at = now + self.rng.expovariate(1 / self.gap_s)
            self._stop.wait(0.05)

    def _heal_due(self, now: float) -> None:
        with self._lock:
            due = [h for h in self._heals if h.at <= now]
            self._heals = [h for h in self._heals if h.at > now]
        for heal in due:
            self._undo(heal)

    def _undo(self, heal: Heal) -> None:
        try:
            heal.undo()
            self.history.add("nemesis", "heal", what=heal.what)
        except Exception as err:
            self.errors.append(f"heal {heal.what}: {err}")

    def _later(self, what: str, undo: Callable[[], None]) -> float:
        duration = round(self.rng.uniform(0.5, self.max_fault_s), 2)
        with self._lock:
            self._heals.append(Heal(time.monotonic() + duration, what, undo))
        return duration

    def _busy(self, what: str) -> bool:
        with self._lock:
            return any(h.what == what for h in self._heals)

    def _inject(self, kind: str) -> None:
        rng, cluster = self.rng, self.cluster
        cabinet = rng.choice(cluster.cabinets)
        worker = rng.randint(1, WORKERS)
        fields: dict[str, object] = {}
        if kind == "kill-cabinet":
            fields["target"] = cabinet.id
            cluster.restart(f"cabinet-{cabinet.id}")
        elif kind == "kill-worker":
            fields["target"] = f"worker-{worker}"
            cluster.restart(f"cloud-worker-{worker}")
        elif kind == "kill-api":
            fields["target"] = "api"
            cluster.restart("cloud-api")
        elif kind == "kill-broker":
            fields["target"] = "mosquitto"
            cluster.crash_broker()
        elif kind in ("cut-cabinet", "cut-worker", "pg-refuse"):
            name = {"cut-cabinet": cabinet.id, "cut-worker": f"worker-{worker}"}.get(
                kind, "postgres"
            )
            mode = "refuse" if kind == "pg-refuse" else rng.choice(CUT_MODES)
            delay_s = round(rng.uniform(0.05, 0.5), 2) if mode == "delay" else 0.0
            fields |= {"target": name, "mode": mode, "delay_s": delay_s}
            if self._busy(f"link {name}"):
                return  # already cut: the schedule moves on (not counted)
            proxy = cluster.proxies[name]
            proxy.set_mode(mode, delay_s)
            fields["for_s"] = self._later(f"link {name}", proxy.heal)
        elif kind == "board":
            fault = rng.choice(BOARD_FAULTS)
            fields |= {"target": cabinet.id, "fault": fault}
            base = f"{cabinet.sim_url}/faults"
            if fault == "power":
                if self._busy(f"board {cabinet.id}"):
                    return
                self._post(f"{base}/1", {"fault": "power_off"})
                fields["for_s"] = self._later(
                    f"board {cabinet.id}", lambda: self._post(f"{base}/1", {"fault": "power_on"})
                )
            elif fault == "corrupt":
                mode = rng.choice(("checksum", "flip", "truncate"))
                fields["mode"] = mode
                self._post(f"{base}/1", {"fault": "corrupt", "mode": mode, "count": 3})
            else:
                self._post(f"{base}/line", {"fault": "garbage", "hex": "00ff5513", "count": 2})
        elif kind == "sms-fail":
            assert cluster.stack is not None and cluster.stack.sinks is not None
            count = rng.randint(1, 3)
            fields["count"] = count
            cluster.stack.sinks.twilio.fail_next(count)
        self.counts[kind] += 1
        self.history.add("nemesis", kind, **fields)

    def _post(self, url: str, body: dict[str, object] | None) -> None:
        answer = self._http.post(url, json=body) if body is not None else self._http.post(url)
        if answer.status_code != 200:
            raise RuntimeError(f"{url}: {answer.status_code} {answer.text[:200]}")
