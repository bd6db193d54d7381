"""`locker bench edge`: a real cabinet daemon's code-to-unlock latency, memory and idle CPU.

Two processes, so that what is measured is the daemon alone:

- the daemon (`python -m locker.bench.edge --daemon ...`): the production `CabinetService`
  (core, SQLite journal in WAL + synchronous=FULL, `Rs485Driver` with the default bus clocks,
  a 1 s tick), with the MQTT link disabled (no broker: the cabinet runs offline, as it must be
  able to). It takes JSON lines on stdin (the kiosk's inputs, the cloud's `codes.put` and
  `couriers.put` as core inputs) and answers one JSON line each on stdout;
- the harness (this module's `run_bench`, in the `locker` process): the firmware simulator on a
  pty (two 48-channel boards sending `82` reports, so a shut door is seen at once), the person
  at the doors, the courier and the recipient.

Latency instrumentation, all inside the daemon with `time.perf_counter_ns`:

- `t_submit`: just before `service.submit(CodeEntered(code))` (the kiosk hands the code over);
- `t_journal` / `t_durable`: a wrapper around the journal's `commit_step` for a step that
  carries unlocks: the core's verdict is in (`apply` returned) and the write-ahead is on disk;
- `t_written`: a `serial.Serial` subclass handed to the driver as its port: the moment its
  `write` of a frame with head 0x8A (an unlock) returns, on the bus thread.

Like the kiosk, the recipient's side calls `service.keypad_active()` at the first digit; status
polls then keep off the bus, and the harness submits the code once a poll already on the bus has
ended (`Rs485Driver.settled`), as it has after a person's few seconds of typing: the unlock never
queues behind a poll.

With `--field` the cabinet runs as it does at a site: four boards of 24 doors polled, the MQTT
link online to a Mosquitto of the benchmark's own, and the production `locker cloud worker`
(SQLite, on tmpfs when there is one: the cloud is another machine, whose commits must not
share the cabinet's disk) ingesting every event, event-acking it and sending its `codes.put`
(the harness's own codes replace the cloud's once those have run, so the recipient knows the
code). The health
counters are on in every mode (they are part of the service). The report adds the RSS slope
after warm-up and the journal's fsync time on this disk.

The headline figure is `t_written - t_submit`: it includes the queue to the owner task and the
core's check as well as the fsync and the driver's dispatch, so it bounds "code accepted ->
unlock frame written" from above. RSS and CPU are read from /proc/<daemon pid> (all threads).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from locker.harness.processes import JsonLinesProcess, cpu_s, memory_mb, write_bytes

CAB = "bench1"
CODE_KEY = b"bench-edge-code-key"
COURIER, PIN = "BENCH-C1", "246810"
PHONE = "13812345678"
BOARDS, CHANNELS = 2, 48  # 96 doors, all size M
PULSE_S = 0.02  # the simulated lock's pulse: after the unlock frame, so outside the window
HEAD_UNLOCK = 0x8A  # docs/lockboard.md: the unlock request's first byte

# Bench-only switches of the daemon (environment, so the harness's command line stays as is):
# a cProfile dump of the whole run, and tracemalloc snapshots every N pickups (RSS creep hunt).
PROFILE_ENV = "LOCKER_BENCH_EDGE_PROFILE"
TRACEMALLOC_ENV = "LOCKER_BENCH_EDGE_TRACEMALLOC"
TRACEMALLOC_EVERY = 500  # pickups between two snapshots
ROUNDS_ENV = "LOCKER_BENCH_EDGE_ROUNDS"  # a JSON-lines file: each round's figures as it ends

TARGET_P99_MS = 6.0  # a 5-byte frame's own wire time at 9600 baud
TARGET_RSS_MB = 60.0
TARGET_IDLE_CPU_PCT = 1.0


def compartment_id(board: int, channel: int) -> str:
    """ "A01".."A48" on board 1, "B01".. on board 2."""
    return f"{chr(ord('A') + board - 1)}{channel:02d}"


def lock_of(compartment: str) -> tuple[int, int]:
    """The (board, channel) behind a compartment id."""
    return ord(compartment[0]) - ord("A") + 1, int(compartment[1:])


# --- the daemon ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Marks:
    """Instants the wrappers saw (perf_counter_ns); the bus thread appends to `written_ns`."""

    written_ns: list[int] = dataclasses.field(default_factory=list)
    journal_ns: list[tuple[int, int]] = dataclasses.field(default_factory=list)

    def clear(self) -> None:
        self.written_ns.clear()
        self.journal_ns.clear()


@dataclasses.dataclass(frozen=True)
class _Shape:
    """The cabinet's boards and, in field conditions, its broker."""

    boards: int = BOARDS
    channels: int = CHANNELS
    mqtt_host: str | None = None
    mqtt_port: int | None = None


async def _serve_daemon(
    port_path: str,
    journal_path: Path,
    poll_interval_s: float,
    kiosk: bool = True,
    shape: _Shape = _Shape(),
) -> None:
    """The daemon's side: build the service, serve the kiosk, answer stdin until it closes."""
    marks = _Marks()
    journal = _timed_journal(journal_path, marks)
    service = _build_service(port_path, journal, poll_interval_s, marks, shape)
    cloud_codes = _count_cloud_codes(service)
    await service.start()
    kiosk_parts = await _start_kiosk(service) if kiosk else None
    answers = _Answers(service, journal, marks, cloud_codes)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    kiosk_url = kiosk_parts[1].url if kiosk_parts is not None else None
    _say({"ready": True, "pid": os.getpid(), "kiosk_url": kiosk_url})
    try:
        while line := await reader.readline():
            _say(await answers.answer(json.loads(line)))
    finally:  # stdin closed: the harness is done
        if kiosk_parts is not None:
            kiosk_app, kiosk_server = kiosk_parts
            await kiosk_app.stop()
            await kiosk_server.stop()
        await service.stop()
        journal.close()


def _timed_journal(journal_path: Path, marks: _Marks) -> Any:
    """The SQLite journal, noting when a step that carries unlocks was durable."""
    from cabinet.journal import Journal

    journal = Journal.open(journal_path, cab=CAB)
    commit_step = journal.commit_step

    def timed_commit_step(snapshot: Any, events: Any = (), pending_unlocks: Any = (), **kw: Any):
        started_ns = time.perf_counter_ns()
        result = commit_step(snapshot, events, pending_unlocks, **kw)
        if pending_unlocks:
            marks.journal_ns.append((started_ns, time.perf_counter_ns()))
        return result

    journal.commit_step = timed_commit_step  # type: ignore[method-assign]
    return journal


@dataclasses.dataclass
class _CloudCodes:
    """The parcels whose `codes.put` from the cloud the service has run (field mode).

    `waiting` holds ids until the harness has seen them (`wait_cloud_codes` takes them out):
    a set of every parcel ever would grow by ~100 bytes a pickup in the daemon whose RSS the
    bench reads.
    """

    waiting: set[str] = dataclasses.field(default_factory=set)
    total: int = 0


def _count_cloud_codes(service: Any) -> _CloudCodes:
    """Count the `codes.put` commands from the cloud the service has run (field mode)."""
    seen = _CloudCodes()
    link = service.link
    if link is None:
        return seen
    from protocol.messages import PutCodes

    run = link._on_command  # the link's handler: the service's `handle_command`

    async def counted(command: Any) -> str | None:
        error = await run(command)
        if error is None and isinstance(command, PutCodes):
            parcels = {entry.parcel_id for entry in command.data.entries}
            seen.total += len(parcels - seen.waiting)
            seen.waiting |= parcels
        return error

    link._on_command = counted
    return seen


def _build_service(
    port_path: str, journal: Any, poll_interval_s: float, marks: _Marks, shape: _Shape
) -> Any:
    """The production CabinetService on the RS485 driver, its port noting unlock writes."""
    import serial

    from cabinet.core import Config
    from cabinet.core.compartments import Compartment, Size
    from cabinet.drivers.rs485 import BoardSpec, BusTiming, Rs485Driver
    from cabinet.mqtt_link import LinkSettings
    from cabinet.service import CabinetService

    class TimedSerial(serial.Serial):
        """The port the driver writes to, noting when an unlock frame's write returned."""

        def write(self, data: Any) -> int | None:
            written = super().write(data)
            if bytes(data[:1]) == bytes([HEAD_UNLOCK]):
                marks.written_ns.append(time.perf_counter_ns())
            return written

    locks = {
        compartment_id(b, ch): (b, ch)
        for b in range(1, shape.boards + 1)
        for ch in range(1, shape.channels + 1)
    }
    driver = Rs485Driver(
        TimedSerial(port_path, baudrate=9600),
        [BoardSpec(b, shape.channels) for b in range(1, shape.boards + 1)],
        locks,
        name="rs485:main",
        timing=BusTiming(poll_interval_s=poll_interval_s),  # otherwise the documented clocks
    )
    link = None  # no broker: offline, events stay in the journal
    if shape.mqtt_port is not None:
        link = LinkSettings(
            cab=CAB, host=shape.mqtt_host or "127.0.0.1", port=shape.mqtt_port, firmware="bench"
        )
    return CabinetService(
        cabinet_id=CAB,
        layout=[Compartment(c, Size.M) for c in locks],
        driver=driver,
        journal=journal,
        code_key=CODE_KEY,
        link_settings=link,
        config=Config(),
        tick_s=1.0,
        door_boards={c: f"main:{board}" for c, (board, _) in locks.items()},
    )


async def _start_kiosk(service: Any) -> tuple[Any, Any]:
    """As deployed: the touchscreen's HTTP server in the same process and loop."""
    from cabinet.kiosk.app import Kiosk, build_app
    from cabinet.kiosk.server import KioskServer

    kiosk_app = Kiosk(service, language="zh-CN")
    kiosk_server = KioskServer(build_app(kiosk_app), "127.0.0.1", 0)
    await kiosk_server.start()
    await kiosk_app.start()
    return kiosk_app, kiosk_server


async def _wait_until(test: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not test():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.001)
    return True


class _Answers:
    """The daemon's answers to the harness's requests, one method per `op`."""

    def __init__(self, service: Any, journal: Any, marks: _Marks, cloud_codes: _CloudCodes) -> None:
        self.service = service
        self.journal = journal
        self.marks = marks
        self.cloud_codes = cloud_codes
        self.heap_dumps = _HeapDumps.from_env()
        self.ops: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "submit": self.submit,
            "keypad": self.keypad,
            "codes": self.codes,
            "couriers": self.couriers,
            "wait_shut": self.wait_shut,
            "wait_parcels": self.wait_parcels,
            "events": self.events,
            "cloud_codes": self.wait_cloud_codes,
            "link": self.link,
        }

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = self.ops.get(request["op"])
        if op is None:
            return {"ok": False, "error": f"unknown op {request['op']!r}"}
        return await op(request)

    async def submit(self, request: dict[str, Any]) -> dict[str, Any]:
        from cabinet.core import inputs as core_inputs
        from cabinet.core.errors import CoreError

        if request["input"] == "CodeEntered" and self.heap_dumps is not None:
            self.heap_dumps.pickup()
        inp = getattr(core_inputs, request["input"])(**request.get("args", {}))
        self.marks.clear()
        submitted_ns = time.perf_counter_ns()
        try:
            shows = await self.service.submit(inp)
        except CoreError as err:
            return {"ok": False, "error": str(err)}
        screens = [{"type": type(s.screen).__name__, **dataclasses.asdict(s.screen)} for s in shows]
        timing = await self._timing(submitted_ns) if request.get("timed") else None
        return {"ok": True, "screens": screens, "timing": timing}

    async def _timing(self, submitted_ns: int) -> dict[str, int] | None:
        marks = self.marks
        # The unlock may wait for an earlier door to be seen open (one door at a time).
        await _wait_until(lambda: bool(marks.written_ns), 5)
        if not marks.written_ns:
            return None
        journal_ns = marks.journal_ns[0] if marks.journal_ns else (0, 0)
        return {
            "written_ns": marks.written_ns[0] - submitted_ns,
            "verdict_ns": journal_ns[0] - submitted_ns,
            "journal_ns": journal_ns[1] - journal_ns[0],
            "dispatch_ns": marks.written_ns[0] - journal_ns[1],
        }

    async def keypad(self, _request: dict[str, Any]) -> dict[str, Any]:
        """The first digit: polls are held; answer once a poll already on the bus has ended.

        A person takes seconds over the other seven digits, so by the submit the bus is free;
        waiting for that here, rather than sleeping out a poll's reply timeout, is what lets
        10,000 pickups run in minutes.
        """
        self.service.keypad_active()
        await self.service.driver.settled()
        return {"ok": True}

    async def codes(self, request: dict[str, Any]) -> dict[str, Any]:
        from cabinet.core import inputs as core_inputs

        expires_at = datetime.now(UTC) + timedelta(days=3)
        grants = tuple(
            core_inputs.CodeGrant(e["parcel_id"], e["compartment"], e["code_hash"], expires_at)
            for e in request["entries"]
        )
        await self.service.submit(core_inputs.CodesPut(grants))
        return {"ok": True}

    async def couriers(self, request: dict[str, Any]) -> dict[str, Any]:
        from cabinet.core import inputs as core_inputs

        grants = tuple(
            core_inputs.CourierGrant(c["courier_id"], c["pin_hash"]) for c in request["couriers"]
        )
        await self.service.submit(core_inputs.CouriersPut(grants))
        return {"ok": True}

    async def wait_shut(self, request: dict[str, Any]) -> dict[str, Any]:
        from cabinet.core.compartments import Door

        # The deposit door seen open then closed, and closed now (a poll reply read just
        # before the door shut can report it open again after the board's `82` report).
        def shut() -> bool:
            cabinet = self.service.cabinet
            session = cabinet.session
            return (
                session is not None
                and session.draft.door_cycled
                and cabinet.compartments[request["compartment"]].door is Door.CLOSED
            )

        # The board's `82` report of the shut door is read when the bus thread next listens
        # (every `idle_read_s`, 0.1 s); reading the door now saves the bench that wait.
        await self.service.driver.read(request["compartment"])
        return {"ok": await _wait_until(shut, request.get("timeout_s", 10))}

    async def wait_parcels(self, request: dict[str, Any]) -> dict[str, Any]:
        service, count = self.service, request["count"]
        ok = await _wait_until(
            lambda: len(service.cabinet.parcels) == count, request.get("timeout_s", 10)
        )
        return {"ok": ok, "parcels": len(service.cabinet.parcels)}

    async def wait_cloud_codes(self, request: dict[str, Any]) -> dict[str, Any]:
        wanted = set(request["parcels"])
        codes = self.cloud_codes
        ok = await _wait_until(lambda: wanted <= codes.waiting, request.get("timeout_s", 60))
        missing = len(wanted - codes.waiting)
        codes.waiting -= wanted
        return {"ok": ok, "missing": missing}

    async def link(self, request: dict[str, Any]) -> dict[str, Any]:
        """The link's state; with `drain`, wait for the cloud to event-ack every event first."""
        link = self.service.link
        if request.get("drain"):
            await _wait_until(lambda: self.journal.backlog()[0] == 0, request.get("timeout_s", 60))
        return {
            "ok": True,
            "online": link is not None and link.online.is_set(),
            "last_seq": self.journal.last_seq,
            "unacked": self.journal.backlog()[0],
            "cloud_codes_run_for": self.cloud_codes.total,
            "health_boards": self.service.health.summary()["boards"],
        }

    async def events(self, _request: dict[str, Any]) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for event in self.journal.unacked():
            counts[event.type] = counts.get(event.type, 0) + 1
        return {"ok": True, "events": counts}


class _HeapDumps:
    """tracemalloc snapshots of the daemon every `every` pickups, for `tracemalloc_diff`.

    Enabled by LOCKER_BENCH_EDGE_TRACEMALLOC=<directory>: what the daemon still holds after
    5,000 pickups that it did not after 1,000 is what makes its RSS creep. Tracing slows the
    daemon and its bookkeeping adds to the RSS, so the figures of such a run are not reported.
    """

    def __init__(self, directory: Path, every: int) -> None:
        import tracemalloc

        self.directory, self.every, self.pickups = directory, every, 0
        directory.mkdir(parents=True, exist_ok=True)
        tracemalloc.start(12)

    @classmethod
    def from_env(cls) -> _HeapDumps | None:
        directory = os.environ.get(TRACEMALLOC_ENV)
        every = int(os.environ.get(f"{TRACEMALLOC_ENV}_EVERY", TRACEMALLOC_EVERY))
        return cls(Path(directory), every) if directory else None

    def pickup(self) -> None:
        import gc
        import tracemalloc

        if self.pickups % self.every == 0:
            gc.collect()
            tracemalloc.take_snapshot().dump(str(self.directory / f"pickups-{self.pickups:06d}"))
        self.pickups += 1


def tracemalloc_diff(earlier: Path, later: Path, top: int = 25) -> list[str]:
    """The allocation sites that grew most between two of `_HeapDumps`'s snapshots."""
    import tracemalloc

    before = tracemalloc.Snapshot.load(str(earlier))
    after = tracemalloc.Snapshot.load(str(later))
    return [str(stat) for stat in after.compare_to(before, "traceback")[:top]]


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, default=str) + "\n")
    sys.stdout.flush()


# --- the harness ----------------------------------------------------------------------------


class DaemonProcess(JsonLinesProcess):
    """The daemon in a subprocess, spoken to one JSON line at a time."""

    def __init__(
        self,
        port_path: str,
        workdir: Path,
        poll_interval_s: float,
        kiosk: bool = True,
        shape: _Shape = _Shape(),
    ) -> None:
        argv = [sys.executable, "-m", "locker.bench.edge", "--daemon", "--port", port_path]
        argv += ["--journal", str(workdir / "journal.sqlite3")]
        argv += ["--poll-interval-s", str(poll_interval_s), "--kiosk" if kiosk else "--no-kiosk"]
        argv += ["--boards", str(shape.boards), "--channels", str(shape.channels)]
        if shape.mqtt_port is not None:
            argv += ["--mqtt-host", shape.mqtt_host or "127.0.0.1"]
            argv += ["--mqtt-port", str(shape.mqtt_port)]
        from locker.harness.processes import clean_env

        switches = (PROFILE_ENV, TRACEMALLOC_ENV, f"{TRACEMALLOC_ENV}_EVERY")
        passed = {k: os.environ[k] for k in switches if k in os.environ}
        super().__init__(
            argv, log_path=workdir / "daemon.log", name="the daemon", env=clean_env(**passed)
        )
        try:
            ready = self.next(30)
        except BaseException:
            self.close()
            raise
        if not ready.get("ready"):
            self.close()
            raise RuntimeError(f"the daemon did not start: {ready}")
        self.kiosk_url: str | None = ready.get("kiosk_url")
        self.confirm_retries = 0  # Confirms refused because a stale reading showed the door open

    def ask(
        self, request: dict[str, Any], timeout_s: float = 30, *, refused_ok: bool = False
    ) -> dict[str, Any]:
        answer = super().ask(request, timeout_s)
        if not answer.get("ok") and not refused_ok:
            raise RuntimeError(
                f"the daemon refused {request.get('input', request['op'])}: {answer}"
            )
        return answer

    def submit(self, name: str, timed: bool = False, **args: Any) -> dict[str, Any]:
        return self.ask({"op": "submit", "input": name, "args": args, "timed": timed})

    def close(self) -> None:
        """Close stdin (the daemon stops its service and exits); kill it if it lingers."""
        self.finish(timeout_s=10)


class _Page:
    """What the touchscreen's page does to the daemon: an event stream open all along."""

    def __init__(self, url: str) -> None:
        import httpx

        self.url = url
        self.screens = 0
        self.statuses = 0
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        import httpx

        with (
            contextlib.suppress(httpx.HTTPError, RuntimeError),
            self._client.stream("GET", f"{self.url}/api/events") as answer,
        ):
            for line in answer.iter_lines():
                if line == "event: screen":
                    self.screens += 1

    def status(self) -> dict[str, Any]:
        self.statuses += 1
        return self._client.get(f"{self.url}/api/status").json()

    def figures(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "screens_streamed": self.screens,
            "status_reads": self.statuses,
            "free_by_size": self.status()["free_by_size"],
        }

    def close(self) -> None:
        self._client.close()


def _confirm(daemon: DaemonProcess, compartment: str) -> dict[str, Any]:
    """The courier confirms once the door is seen shut; again if a stale reading reopened it."""
    for _ in range(5):
        daemon.ask({"op": "wait_shut", "compartment": compartment})
        answer = daemon.ask({"op": "submit", "input": "Confirm"}, refused_ok=True)
        if answer["ok"]:
            (deposited,) = answer["screens"]
            return deposited
        daemon.confirm_retries += 1
    raise RuntimeError(f"the deposit in {compartment} could not be confirmed: {answer}")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclasses.dataclass
class _Laps:
    """What the rounds measured: per pickup the latency and its parts, per round the RSS."""

    written_ms: list[float] = dataclasses.field(default_factory=list)
    verdict_ms: list[float] = dataclasses.field(default_factory=list)
    journal_ms: list[float] = dataclasses.field(default_factory=list)
    # bytes the daemon wrote to disk over the rounds: its journal (WAL and checkpoints)
    write_bytes: int = 0
    # journal durable -> frame written: the driver's queue and bus
    dispatch_ms: list[float] = dataclasses.field(default_factory=list)
    deposits: int = 0
    # after each fill-and-empty of the doors: growth shows
    rss_by_round_mb: list[float] = dataclasses.field(default_factory=list)

    def add(self, timing: dict[str, int]) -> None:
        self.written_ms.append(timing["written_ns"] / 1e6)
        self.verdict_ms.append(timing["verdict_ns"] / 1e6)
        self.journal_ms.append(timing["journal_ns"] / 1e6)
        self.dispatch_ms.append(timing["dispatch_ns"] / 1e6)


FIELD_BOARDS, FIELD_CHANNELS = 4, 24  # field conditions: four boards polled, still 96 doors
SITE = "bench-site"


def run_bench(
    pickups: int,
    idle_s: float,
    *,
    poll_interval_s: float = 0.5,
    kiosk: bool = True,
    field: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Deposit, code and pick up `pickups` parcels through a daemon; return the figures.

    With `kiosk` the daemon also serves the touchscreen's HTTP API, and a page's event stream
    stays open throughout (as Chromium's does), so its memory is counted. With `field`, four
    boards, the link online to our own Mosquitto, and `locker cloud worker` answering.
    """
    from firmware_sim import BoardConfig, PtyServer, SimulatedBus

    boards, channels = (FIELD_BOARDS, FIELD_CHANNELS) if field else (BOARDS, CHANNELS)
    bus = SimulatedBus(
        [BoardConfig(b, channels, sends_reports=True) for b in range(1, boards + 1)],
        pulse_s=PULSE_S,
    )
    laps = _Laps()
    with (
        tempfile.TemporaryDirectory(prefix="locker-bench-") as tmp,
        PtyServer(bus) as server,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        shape = _Shape(boards, channels)
        cloud = _start_cloud(workdir, stack, boards, channels) if field else None
        if cloud is not None:
            shape = dataclasses.replace(shape, mqtt_host=cloud["host"], mqtt_port=cloud["port"])
        daemon = DaemonProcess(server.path, workdir, poll_interval_s, kiosk, shape)
        page = _Page(daemon.kiosk_url) if daemon.kiosk_url else None
        try:
            if field:
                daemon.ask({"op": "link", "drain": False})
            _register_courier(daemon)
            written_before = write_bytes(daemon.pid)
            _run_rounds(daemon, bus, page, pickups, laps, progress, field=field)
            laps.write_bytes = write_bytes(daemon.pid) - written_before
            link = daemon.ask({"op": "link", "drain": field, "timeout_s": 120}) if field else None
            at_rest = _measure_at_rest(daemon, bus, page, idle_s)
        finally:
            if page is not None:
                page.close()
            daemon.close()
        fsync = measure_fsync(workdir)
        report = _report(laps, at_rest, poll_interval_s=poll_interval_s, kiosk=kiosk, shape=shape)
        report["journal_fsync_ms"] = fsync
        if cloud is not None:
            report["link"] = {**(link or {}), "cloud": cloud["shown"]}
            report["cloud_rows"] = _cloud_rows(cloud["url"])
    return report


def _start_cloud(
    workdir: Path, stack: contextlib.ExitStack, boards: int, channels: int
) -> dict[str, Any]:
    """Our own Mosquitto, a SQLite cloud with the cabinet registered, `locker cloud worker`."""
    from locker.bench.cloud import WorkerProcess, own_broker
    from locker.harness.processes import clean_env

    broker = own_broker(workdir)
    stack.callback(broker.stop)
    url = f"sqlite:///{_cloud_dir(stack, workdir) / 'cloud.db'}"
    secret_key = os.urandom(32).hex()
    _register_cabinet(url, boards, channels, seal_key=secret_key.encode())
    worker = WorkerProcess(
        url=url,
        host=broker.host,
        port=broker.port,
        name="bench-edge-worker",
        env=clean_env(LOCKER_CLOUD_SECRET_KEY=secret_key),
        log_path=workdir / "worker.log",
    )
    stack.callback(worker.stop)
    worker.wait_subscribed()
    shown = f"own mosquitto on {broker.host}:{broker.port}, `locker cloud worker` on SQLite"
    return {"host": broker.host, "port": broker.port, "url": url, "shown": shown}


def _cloud_dir(stack: contextlib.ExitStack, workdir: Path) -> Path:
    """Where the cloud's SQLite file goes: in memory (tmpfs) when there is one.

    At a site the cloud is another machine. Its commits on the cabinet's own disk made the
    journal's fsync wait behind them (one filesystem journal), which no cabinet sees.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        return workdir
    path = Path(tempfile.mkdtemp(prefix="locker-bench-cloud-", dir=shm))
    stack.callback(shutil.rmtree, path, ignore_errors=True)
    return path


def _register_cabinet(url: str, boards: int, channels: int, *, seal_key: bytes) -> None:
    from sqlmodel import Session

    from cloud.db.engine import make_engine
    from cloud.db.migrate import upgrade
    from cloud.db.models import CabinetCreate, SiteCreate
    from cloud.services.registry import CompartmentSpec, add_cabinet, add_site

    upgrade(url)
    engine = make_engine(url)
    now = datetime.now(UTC)
    layout = [
        CompartmentSpec(compartment_id(b, ch), "M")
        for b in range(1, boards + 1)
        for ch in range(1, channels + 1)
    ]
    try:
        with Session(engine) as session:
            add_site(session=session, site_create=SiteCreate(id=SITE, name="Bench site"), now=now)
        with Session(engine) as session:
            add_cabinet(
                session=session,
                cabinet_create=CabinetCreate(id=CAB, site_id=SITE, name="Bench cabinet"),
                compartments=layout,
                now=now,
                seal_key=seal_key,
            )
    finally:
        engine.dispose()


def _cloud_rows(url: str) -> dict[str, int]:
    """What the cloud holds after the run: the events it stored, the doors' health rows."""
    from sqlalchemy import text

    from cloud.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("events", "door_health", "parcels")
            }
    finally:
        engine.dispose()


def measure_fsync(workdir: Path, commits: int = 300) -> dict[str, float]:
    """The journal's own commit (WAL, synchronous=FULL: one fsync) on this disk, `commits` times.

    A step's snapshot of ~2 KB, as a 96-door cabinet writes; and a bare 4 KiB write + fsync
    for comparison.
    """
    from cabinet.journal import Journal

    snapshot = {"doors": {compartment_id(1, ch): {"state": "free"} for ch in range(1, 97)}}
    laps: list[float] = []
    with Journal.open(workdir / "fsync.sqlite3", cab=CAB) as journal:
        for _ in range(commits):
            started = time.perf_counter_ns()
            journal.commit_step(snapshot)
            laps.append((time.perf_counter_ns() - started) / 1e6)
    bare: list[float] = []
    fd = os.open(workdir / "fsync.bin", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = os.urandom(4096)
        for _ in range(commits):
            started = time.perf_counter_ns()
            os.pwrite(fd, block, 0)
            os.fsync(fd)
            bare.append((time.perf_counter_ns() - started) / 1e6)
    finally:
        os.close(fd)
    return {
        "commit_p50": percentile(laps, 50),
        "commit_p99": percentile(laps, 99),
        "write_fsync_4k_p50": percentile(bare, 50),
        "write_fsync_4k_p99": percentile(bare, 99),
        "commits": commits,
    }


def rss_slope(rss_by_round_mb: list[float], per_round: int, warm_up: int) -> float | None:
    """MB per 1,000 pickups after the first `warm_up` rounds (least squares), None if too few."""
    points = rss_by_round_mb[warm_up:]
    if len(points) < 3:
        return None
    n = len(points)
    mean_x, mean_y = (n - 1) / 2, sum(points) / n
    num = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(points))
    den = sum((i - mean_x) ** 2 for i in range(n))
    return num / den / per_round * 1000


def _register_courier(daemon: DaemonProcess) -> None:
    from protocol.hashing import pin_hash

    courier = {"courier_id": COURIER, "pin_hash": pin_hash(PIN, os.urandom(16))}
    daemon.ask({"op": "couriers", "couriers": [courier]})


def _run_rounds(
    daemon: DaemonProcess,
    bus: Any,
    page: _Page | None,
    pickups: int,
    laps: _Laps,
    progress: Callable[[int, int], None] | None,
    *,
    field: bool = False,
) -> None:
    """Round after round: fill up to every door, put their codes, pick every parcel up."""
    done = 0
    rounds_log = os.environ.get(ROUNDS_ENV)
    started = time.monotonic()
    doors = FIELD_BOARDS * FIELD_CHANNELS if field else BOARDS * CHANNELS
    while done < pickups:
        parcels = _fill(daemon, bus, min(doors, pickups - done), laps)
        if field:  # the cloud's own codes first, so ours are the ones that stand
            ids = [parcel_id for parcel_id, _ in parcels]
            daemon.ask({"op": "cloud_codes", "parcels": ids, "timeout_s": 120}, 150)
        codes = _put_codes(daemon, parcels)
        for parcel_id, compartment in parcels:
            _pick_up(daemon, bus, compartment, codes[parcel_id], laps)
            done += 1
            if progress is not None:
                progress(done, pickups)
        daemon.ask({"op": "wait_parcels", "count": 0})
        if page is not None:
            page.status()
        laps.rss_by_round_mb.append(round(memory_mb(daemon.pid)[0], 1))
        if rounds_log:
            _log_round(Path(rounds_log), laps, len(parcels), time.monotonic() - started)


def _log_round(path: Path, laps: _Laps, batch: int, wall_s: float) -> None:
    """One JSON line per round: a long run's figures so far, should it not finish."""
    line = {
        "pickups": len(laps.written_ms),
        "wall_s": round(wall_s, 1),
        "rss_mb": laps.rss_by_round_mb[-1],
        "round_p50_ms": percentile(laps.written_ms[-batch:], 50),
        "round_p99_ms": percentile(laps.written_ms[-batch:], 99),
        "round_journal_p99_ms": percentile(laps.journal_ms[-batch:], 99),
        "round_dispatch_p99_ms": percentile(laps.dispatch_ms[-batch:], 99),
        "load_average": os.getloadavg()[0],
        # this round's pickups, for percentiles over any part of a run that did not finish
        "written_ms": [round(ms, 3) for ms in laps.written_ms[-batch:]],
        "journal_ms": [round(ms, 3) for ms in laps.journal_ms[-batch:]],
        "dispatch_ms": [round(ms, 3) for ms in laps.dispatch_ms[-batch:]],
        "verdict_ms": [round(ms, 3) for ms in laps.verdict_ms[-batch:]],
    }
    with path.open("a") as out:
        out.write(json.dumps(line) + "\n")


def _fill(daemon: DaemonProcess, bus: Any, batch: int, laps: _Laps) -> list[tuple[str, str]]:
    """A courier fills `batch` doors, one parcel at a time, through the kiosk flow."""
    daemon.submit("CourierSignIn", courier_id=COURIER, pin=PIN)
    parcels: list[tuple[str, str]] = []
    for _ in range(batch):
        laps.deposits += 1
        daemon.submit("TrackingEntered", tracking_no=f"BENCH{laps.deposits:07d}")
        daemon.submit("PhoneEntered", phone=PHONE)
        (opening,) = daemon.submit("SizeChosen", size="M")["screens"]
        board, channel = lock_of(opening["compartment"])
        bus.person.put_parcel(board, channel)
        bus.person.close_door(board, channel)
        deposited = _confirm(daemon, opening["compartment"])
        parcels.append((deposited["parcel_id"], deposited["compartment"]))
    daemon.submit("CourierSignOut")
    return parcels


def _put_codes(daemon: DaemonProcess, parcels: list[tuple[str, str]]) -> dict[str, str]:
    """The cloud's codes.put: one fresh 8-digit code per parcel, hashed under the key."""
    from protocol.hashing import code_hash

    codes = {pid: f"{secrets.randbelow(10**8):08d}" for pid, _ in parcels}
    entries = [
        {"parcel_id": p, "compartment": c, "code_hash": code_hash(CODE_KEY, codes[p])}
        for p, c in parcels
    ]
    daemon.ask({"op": "codes", "entries": entries})
    return codes


def _pick_up(daemon: DaemonProcess, bus: Any, compartment: str, code: str, laps: _Laps) -> None:
    """A recipient types the code (timed to the unlock frame), takes the parcel, shuts the door."""
    daemon.ask({"op": "keypad"})  # the first digit; the rest typed once the bus is free
    answer = daemon.submit("CodeEntered", timed=True, code=code)
    screen = answer["screens"][0]
    if screen["type"] != "DoorsOpening" or compartment not in screen["compartments"]:
        raise RuntimeError(f"code for {compartment} gave {screen}")
    if answer["timing"] is None:
        raise RuntimeError(f"no unlock frame was written for {compartment}")
    laps.add(answer["timing"])
    # The recipient takes the parcel and shuts the door; the `82` report tells.
    board, channel = lock_of(compartment)
    bus.person.take_parcel(board, channel)
    bus.person.close_door(board, channel)


def _measure_at_rest(
    daemon: DaemonProcess, bus: Any, page: _Page | None, idle_s: float
) -> dict[str, Any]:
    """After the rounds: the pulses the boards saw, RSS, and the idle CPU over `idle_s`."""
    with bus.lock:
        pulses = sum(d.pulses for b in bus.boards for d in b.doors.values())
    rss_busy_mb, _ = memory_mb(daemon.pid)
    # Idle: no input, the driver polling both boards and the tick running, as deployed.
    time.sleep(min(1.0, idle_s))  # let the last steps and closes settle first
    cpu_before_s, wall_before_s = cpu_s(daemon.pid), time.monotonic()
    time.sleep(idle_s)
    idle_cpu_s = cpu_s(daemon.pid) - cpu_before_s
    wall_s = time.monotonic() - wall_before_s
    rss_mb, peak_rss_mb = memory_mb(daemon.pid)
    return {
        "pulses": pulses,
        "rss_busy_mb": rss_busy_mb,
        "idle_cpu_pct": 100 * idle_cpu_s / wall_s,
        "idle_s": wall_s,
        "rss_mb": rss_mb,
        "peak_rss_mb": peak_rss_mb,
        "confirm_retries": daemon.confirm_retries,
        # Last: loading every journalled event leaves the daemon's heap bigger than it was.
        "events": daemon.ask({"op": "events"})["events"],
        "kiosk": page.figures() if page is not None else None,
    }


def _report(
    laps: _Laps, at_rest: dict[str, Any], *, poll_interval_s: float, kiosk: bool, shape: _Shape
) -> dict[str, Any]:
    written_ms, pulses = laps.written_ms, at_rest["pulses"]
    per_round = shape.boards * shape.channels
    warm_up = max(1, len(laps.rss_by_round_mb) // 5)
    return {
        "pickups": len(written_ms),
        "deposits": laps.deposits,
        "sim_unlock_pulses": pulses,
        "sim_pickup_unlocks": pulses - laps.deposits,
        "events": at_rest["events"],
        "confirm_retries": at_rest["confirm_retries"],
        "latency_ms": _summary(written_ms),
        "latency_parts_ms": {
            "submit_to_verdict_p50": percentile(laps.verdict_ms, 50),
            "journal_commit_p50": percentile(laps.journal_ms, 50),
            "journal_commit_p99": percentile(laps.journal_ms, 99),
            "dispatch_p50": percentile(laps.dispatch_ms, 50),
            "dispatch_p99": percentile(laps.dispatch_ms, 99),
        },
        # Every deposit, codes.put and pickup of the rounds: the SD card's wear per parcel.
        "journal_bytes_written_per_pickup": laps.write_bytes / len(written_ms),
        "journal_bytes_written": laps.write_bytes,
        "over_p99_target_pct": 100 * sum(ms > TARGET_P99_MS for ms in written_ms) / len(written_ms),
        "rss_mb": at_rest["rss_mb"],
        "rss_after_pickups_mb": at_rest["rss_busy_mb"],
        "peak_rss_mb": at_rest["peak_rss_mb"],
        "rss_by_round_mb": laps.rss_by_round_mb,
        "rss_warm_up_rounds": warm_up,
        "rss_slope_mb_per_1000_pickups": rss_slope(laps.rss_by_round_mb, per_round, warm_up),
        "idle_cpu_pct": at_rest["idle_cpu_pct"],
        "idle_s": at_rest["idle_s"],
        "kiosk": at_rest["kiosk"],
        "setup": _setup(poll_interval_s, kiosk, shape),
        "targets": {
            "p99_ms": TARGET_P99_MS,
            "rss_mb": TARGET_RSS_MB,
            "idle_cpu_pct": TARGET_IDLE_CPU_PCT,
        },
    }


def _setup(poll_interval_s: float, kiosk: bool, shape: _Shape) -> dict[str, Any]:
    return {
        "doors": shape.boards * shape.channels,
        "boards": shape.boards,
        "poll_interval_s": poll_interval_s,
        "sim_pulse_s": PULSE_S,
        "link": "online: own mosquitto, `locker cloud worker` (SQLite on tmpfs) acking and "
        "sending codes.put"
        if shape.mqtt_port is not None
        else "disabled (no broker: offline)",
        "health_counters": "on (per door and board, in the journal)",
        "kiosk": "served on 127.0.0.1 in the daemon, one page's event stream open"
        if kiosk
        else "not served",
        "journal": "SQLite WAL, synchronous=FULL, in a temporary directory",
        "latency": "submit(CodeEntered) called -> serial write of the 0x8A frame returned",
        "rss": "the daemon process alone (/proc/<pid>/status VmRSS)",
        "idle_cpu": "daemon utime+stime delta / wall time, all threads",
    }


def _summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values_ms, 50),
        "p95": percentile(values_ms, 95),
        "p99": percentile(values_ms, 99),
        "max": max(values_ms),
        "mean": sum(values_ms) / len(values_ms),
    }


def main(argv: list[str] | None = None) -> None:
    """The daemon's entry point: `python -m locker.bench.edge --daemon --port ... --journal ...`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemon", action="store_true", required=True)
    parser.add_argument("--port", required=True)
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--poll-interval-s", type=float, default=0.5)
    parser.add_argument("--kiosk", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--boards", type=int, default=BOARDS)
    parser.add_argument("--channels", type=int, default=CHANNELS)
    parser.add_argument("--mqtt-host", default=None)
    parser.add_argument("--mqtt-port", type=int, default=None)
    args = parser.parse_args(argv)
    shape = _Shape(args.boards, args.channels, args.mqtt_host, args.mqtt_port)
    serve = _serve_daemon(args.port, args.journal, args.poll_interval_s, args.kiosk, shape)
    profile_path = os.environ.get(PROFILE_ENV)
    if not profile_path:
        asyncio.run(serve)
        return
    import cProfile  # where the daemon's CPU goes, for whoever tunes it

    with cProfile.Profile() as profiler:
        asyncio.run(serve)
    profiler.dump_stats(profile_path)


if __name__ == "__main__":
    main()
