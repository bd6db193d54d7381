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
- `sms-fail`: the SMS provider answers errors for the next few messages;
- `duplicate`: a cabinet's or a worker's broker proxy sends every PUBLISH twice (the cloud sees
  each event twice, the cabinet each command twice) for a while;
- `jam`: a lock ignores its unlock pulses for a while (the door stays shut), then frees;
- `stuck-sensor`: a door's feedback switch reads shut (or open) whatever the door does, a while;
- `clock-skew`: a cabinet's clock jumps minutes to hours ahead or behind (the offset file its
  daemon reads, `LOCKER_CABINET_CLOCK_OFFSET_FILE`), and later back.

The schedule (which kind, which target, how long, the gaps) comes from the seed alone. Each
fault is recorded with every detail and `at_step`, the workload's step count when it came: a
replay (`schedule=`, read from a run's history by `faults_of`) injects the same faults at the
same steps, whatever the machine's pace.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from locker.chaos.cluster import WORKERS, Cluster, clock_offset_file
from locker.chaos.history import History
from locker.demo.stack import CabinetInfo

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
    "duplicate",
    "jam",
    "stuck-sensor",
    "clock-skew",
)
SKEW_S = (120.0, 3 * 3600.0)  # how far a cabinet's clock jumps: minutes to hours
SKEW_FOR_S = (5.0, 30.0)  # and how long before it is set right
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
        schedule: list[dict[str, Any]] | None = None,
    ) -> None:
        self.cluster = cluster
        # A replay: these faults, each at its step, instead of the seed's choices.
        self.schedule = list(schedule) if schedule is not None else None
        self.history = history
        self.rng = random.Random(f"nemesis-{seed}")
        self.gap_s = gap_s
        self.limit = limit
        self.max_fault_s = max_fault_s
        self.kinds = kinds
        self._deck: list[str] = []  # the kinds still to deal in this round
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
            clock_offset_file(cabinet).write_text("0\n")
            self._post(f"{cabinet.sim_url}/faults/1/clear", None)
            self._post(f"{cabinet.sim_url}/faults/line/clear", None)
        self._http.close()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def _run(self) -> None:
        if self.schedule is not None:
            self._replay()
            return
        next_at = time.monotonic() + self.rng.expovariate(1 / self.gap_s)
        while not self._stop.is_set():
            now = time.monotonic()
            self._heal_due(now)
            if now >= next_at and self.total < self.limit:
                kind = self._deal()
                try:
                    self._inject(kind)
                except Exception as err:  # a fault that could not be injected is reported
                    self.errors.append(f"{kind}: {err}")
                    self.history.add("nemesis", "fault.error", kind=kind, error=str(err)[:300])
                next_at = now + self.rng.expovariate(1 / self.gap_s)
            self._stop.wait(0.05)

    def _deal(self) -> str:
        """The next kind: each kind once per round, in the seed's order, so a short run (the
        suite's 20 faults) still injects every kind and a long one injects them evenly."""
        if not self._deck:
            self._deck = list(self.kinds)
            self.rng.shuffle(self._deck)
        return self._deck.pop()

    def _replay(self) -> None:
        pending = sorted(self.schedule or [], key=lambda f: f["at_step"])
        while not self._stop.is_set():
            self._heal_due(time.monotonic())
            while pending and pending[0]["at_step"] <= self.history.steps:
                fault = pending.pop(0)
                try:
                    self._apply(fault)
                except Exception as err:
                    self.errors.append(f"{fault['kind']}: {err}")
                    self.history.add(
                        "nemesis", "fault.error", kind=fault["kind"], error=str(err)[:300]
                    )
                    continue
                self.counts[fault["kind"]] += 1
                self.history.add("nemesis", fault["kind"], **fault)
            self._stop.wait(0.02)
        if pending:
            self.errors.append(f"replay: {len(pending)} faults never came due (the run ended)")

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

    def _duration(self, between: tuple[float, float] | None = None) -> float:
        low, high = between or (0.5, self.max_fault_s)
        return round(self.rng.uniform(low, high), 2)

    def _later(self, what: str, duration: float, undo: Callable[[], None]) -> None:
        with self._lock:
            self._heals.append(Heal(time.monotonic() + duration, what, undo))

    def _busy(self, what: str) -> bool:
        with self._lock:
            return any(h.what == what for h in self._heals)

    def _inject(self, kind: str) -> None:
        at_step = self.history.steps
        fault = self._choose(kind)
        if fault is None:
            return  # its target is already faulted: the schedule moves on (not counted)
        self._apply(fault)
        self.counts[kind] += 1
        self.history.add("nemesis", kind, at_step=at_step, **fault)

    def _choose(self, kind: str) -> dict[str, Any] | None:
        """The fault's every detail, from the seed: what `_apply` does and a replay repeats."""
        rng, cluster = self.rng, self.cluster
        cabinet = rng.choice(cluster.cabinets)
        worker = rng.randint(1, WORKERS)
        fault: dict[str, Any] = {"kind": kind}
        if kind == "kill-cabinet":
            fault["target"] = cabinet.id
        elif kind == "kill-worker":
            fault["target"] = f"worker-{worker}"
        elif kind == "kill-api":
            fault["target"] = "api"
        elif kind == "kill-broker":
            fault["target"] = "mosquitto"
        elif kind in ("cut-cabinet", "cut-worker", "pg-refuse", "duplicate"):
            name = {"cut-cabinet": cabinet.id, "cut-worker": f"worker-{worker}"}.get(
                kind, "postgres"
            )
            if kind == "duplicate":
                name = rng.choice([cabinet.id, f"worker-{worker}"])
            mode = {"pg-refuse": "refuse", "duplicate": "duplicate"}.get(kind) or rng.choice(
                CUT_MODES
            )
            delay_s = round(rng.uniform(0.05, 0.5), 2) if mode == "delay" else 0.0
            fault |= {"target": name, "mode": mode, "delay_s": delay_s}
            fault["for_s"] = self._duration()
            if self._busy(f"link {name}"):
                return None
        elif kind == "board":
            board_fault = rng.choice(BOARD_FAULTS)
            fault |= {"target": cabinet.id, "fault": board_fault}
            if board_fault == "power":
                fault["for_s"] = self._duration()
                if self._busy(f"board {cabinet.id}"):
                    return None
            elif board_fault == "corrupt":
                fault["mode"] = rng.choice(("checksum", "flip", "truncate"))
        elif kind in ("jam", "stuck-sensor"):
            fault |= {"target": cabinet.id, "door": self._door_for(cabinet, rng)}
            if kind == "stuck-sensor":
                # Reads latched (a shut door) or released (an open one) whatever the door does.
                fault["latched"] = rng.random() < 0.5
            fault["for_s"] = self._duration()
            if self._busy(f"door {cabinet.id} {fault['door']}"):
                return None
        elif kind == "clock-skew":
            sign = rng.choice((-1, 1))
            fault |= {
                "target": cabinet.id,
                "offset_s": sign * round(rng.uniform(*SKEW_S)),
                "for_s": self._duration(SKEW_FOR_S),
            }
            if self._busy(f"clock {cabinet.id}"):
                return None
        elif kind == "sms-fail":
            fault["count"] = rng.randint(1, 3)
        else:
            raise ValueError(f"no fault kind {kind!r}; known: {', '.join(KINDS)}")
        return fault

    def _door_for(self, cabinet: CabinetInfo, rng: random.Random) -> str:
        """A door to fault: half the time one holding a parcel (so someone will come to open it
        while it is faulted), else any of the cabinet's doors."""
        ids = [d["id"] for d in cabinet.doors]
        pick = rng.random()
        if pick < 0.5:
            try:
                state = self._http.get(f"{cabinet.sim_url}/state").json()
                by_wiring = {
                    (b["address"], d["channel"]): d for b in state["boards"] for d in b["doors"]
                }
                full = [
                    d["id"]
                    for d in cabinet.doors
                    if by_wiring[(d["board"], d["channel"])]["occupied"]
                ]
            except (httpx.HTTPError, KeyError, ValueError):
                full = []
            if full:
                return full[int(pick * 2 * len(full)) % len(full)]
        return ids[int(pick * len(ids)) % len(ids)]

    def _apply(self, fault: dict[str, Any]) -> None:
        """Inject `fault` now and schedule its healing (`for_s` later)."""
        cluster, kind, target = self.cluster, fault["kind"], fault.get("target")
        if kind == "kill-cabinet":
            cluster.restart(f"cabinet-{target}")
        elif kind == "kill-worker":
            cluster.restart(f"cloud-{target}")
        elif kind == "kill-api":
            cluster.restart("cloud-api")
        elif kind == "kill-broker":
            cluster.crash_broker()
        elif kind in ("cut-cabinet", "cut-worker", "pg-refuse", "duplicate"):
            proxy = cluster.proxies[target]
            proxy.set_mode(fault["mode"], fault["delay_s"])
            self._later(f"link {target}", fault["for_s"], proxy.heal)
        elif kind == "board":
            base = f"{self._cabinet(target).sim_url}/faults"
            if fault["fault"] == "power":
                self._post(f"{base}/1", {"fault": "power_off"})
                self._later(
                    f"board {target}",
                    fault["for_s"],
                    lambda: self._post(f"{base}/1", {"fault": "power_on"}),
                )
            elif fault["fault"] == "corrupt":
                self._post(f"{base}/1", {"fault": "corrupt", "mode": fault["mode"], "count": 3})
            else:
                self._post(f"{base}/line", {"fault": "garbage", "hex": "00ff5513", "count": 2})
        elif kind in ("jam", "stuck-sensor"):
            cabinet = self._cabinet(target)
            wiring = next(d for d in cabinet.doors if d["id"] == fault["door"])
            url = f"{cabinet.sim_url}/faults/{wiring['board']}"
            channel = wiring["channel"]
            if kind == "jam":
                on = {"fault": "jam", "channel": channel, "jammed": True}
                off = {"fault": "jam", "channel": channel, "jammed": False}
            else:
                on = {"fault": "stick_sensor", "channel": channel, "latched": fault["latched"]}
                off = {"fault": "stick_sensor", "channel": channel, "latched": None}
            self._post(url, on)
            self._later(
                f"door {target} {fault['door']}", fault["for_s"], lambda: self._post(url, off)
            )
        elif kind == "clock-skew":
            offset_file = clock_offset_file(self._cabinet(target))
            offset_file.write_text(f"{fault['offset_s']}\n")
            self._later(f"clock {target}", fault["for_s"], lambda: offset_file.write_text("0\n"))
        elif kind == "sms-fail":
            assert cluster.stack is not None and cluster.stack.sinks is not None
            cluster.stack.sinks.twilio.fail_next(fault["count"])

    def _cabinet(self, cab: str) -> CabinetInfo:
        return next(c for c in self.cluster.cabinets if c.id == cab)

    def _post(self, url: str, body: dict[str, object] | None) -> None:
        answer = self._http.post(url, json=body) if body is not None else self._http.post(url)
        if answer.status_code != 200:
            raise RuntimeError(f"{url}: {answer.status_code} {answer.text[:200]}")


def faults_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The faults a run injected, as its history recorded them: a replay's schedule."""
    keep = ("i", "t", "mono", "step", "who", "op")
    return [
        {k: v for k, v in r.items() if k not in keep}
        for r in records
        if r.get("who") == "nemesis" and r.get("op") in KINDS and "at_step" in r
    ]
