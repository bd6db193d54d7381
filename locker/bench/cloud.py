"""`locker bench cloud`: the cloud worker's sustained event rate, beside a bare durable ingest.

Processes, so that what is measured is the worker alone (each stopped by its pid at the end):

- the broker: a `mosquitto` of the benchmark's own on a free port (or `--broker`);
- the database: a scratch PostgreSQL database made and dropped by the run (or `--database-url`,
  or `--sqlite`), migrated, with `--cabinets` cabinets registered through the registry;
- the worker(s): `locker cloud worker`, the production command, unchanged (`--workers`);
- the cabinets, two sides of them (`python -m locker.bench.cloud publisher|cabinets`):
  publishers send valid `parcel.deposited` events (protocol models, `protocol.codec.encode`,
  contiguous seq per cabinet, a fresh parcel id each) on `lockers/v1/{cab}/event` at a paced
  rate, round-robin over their cabinets; the cabinets' side subscribes to `lockers/v1/+/cmd`
  and `lockers/v1/+/event-ack`, notes when each parcel's `codes.put` arrived, and acks every
  command on `lockers/v1/{cab}/ack` as the cabinet's daemon does (so the outbox never resends);
- the bare ingest (`python -m locker.bench.cloud bare-ingest`): a plain paho subscriber on
  `lockers/v1/+/event` that inserts the raw payloads into one table of the same database in
  batches (one multi-row INSERT and one commit per batch), nothing else. It runs after the
  workers stopped, against the same broker, database, publishers and rate steps.

An event is *handled* when its `codes.put` reached the cabinets' side: by then it was stored,
applied (parcel row, code issued, timeline, notice queued) and its command published; for the
bare ingest, when its batch committed. Every process stamps with `time.monotonic_ns()` (one
clock for the whole machine on Linux), and the figures are computed from those stamps at the end:
per step the offered rate (events published in the step / its length), the handled rate (events
handled in the step / its length), publish -> handled latency of the step's events (p50 / p95 /
p99) and the backlog (published - handled) at the step's start and end. A step is *kept up*
when the handled rate is at least 95 % of the offered one and the backlog grew by no more than
half a second of the offered rate (what is in flight at a few hundred ms of latency); the
sustained rate is the highest kept-up step with every lower one kept up too. A step at which
the publishers themselves fell behind their schedule is marked so: above it the load generator,
not the worker, is what was measured.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import math
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from locker.harness import ServiceMissing
from locker.harness.mosquitto import Mosquitto
from locker.harness.postgres import DEFAULT_ADMIN_URL, create_database
from locker.harness.processes import JsonLinesProcess, clean_env, cpu_s, locker_cli, stop_pid

HOST = "127.0.0.1"
SITE = "bench-site"
COMPARTMENTS = 24  # per simulated cabinet, A01..A24 (deposits cycle through them)
COURIER = "bench-courier"
DEFAULT_RATES = (25, 50, 100, 200, 400, 700, 1000, 1500, 2000, 3000, 4000, 6000)
DEFAULT_STEP_S = 10.0
KEPT_UP_SHARE = 0.95  # handled / offered
BACKLOG_GROWTH_S = 0.5  # allowed growth of the backlog over a step, in seconds of offered rate
PUBLISHER_BEHIND_SHARE = 0.95  # published / scheduled below this: the load generator fell behind
DRAIN_TIMEOUT_S = 180.0
LATENCY_RATE = 1000  # the step whose p99 is held to the latency target
TARGET_SUSTAINED = 2000.0
TARGET_BARE_SHARE = 0.5
TARGET_P99_MS = 100.0
BARE_TABLE = "bench_raw_events"
BARE_BATCH = 500
_SEQ = re.compile(rb'"seq":(\d+)')


def cabinet_id(index: int) -> str:
    """The id of simulated cabinet number `index` (0-based)."""
    return f"bench-{index:05d}"


def cabinet_index(cab: str) -> int:
    return int(cab.rsplit("-", 1)[1])


def parcel_id(index: int, seq: int) -> str:
    """The parcel a deposit names: cabinet and seq in it, so the cmd side can tell which event."""
    return f"{cabinet_id(index)}.{seq}"


# --- records: (cabinet index, seq, monotonic ns) triples written by the roles ---------------------


@dataclass
class Records:
    """Stamps of events: which cabinet, which seq, when (time.monotonic_ns)."""

    cabs: array = field(default_factory=lambda: array("q"))
    seqs: array = field(default_factory=lambda: array("q"))
    times: array = field(default_factory=lambda: array("q"))

    def add(self, cab: int, seq: int, at_ns: int) -> None:
        self.cabs.append(cab)
        self.seqs.append(seq)
        self.times.append(at_ns)

    def __len__(self) -> int:
        return len(self.times)

    def write(self, path: Path) -> None:
        with path.open("wb") as out:
            array("q", [len(self)]).tofile(out)
            for column in (self.cabs, self.seqs, self.times):
                column.tofile(out)

    @classmethod
    def read(cls, path: Path) -> Records:
        records = cls()
        with path.open("rb") as source:
            header = array("q")
            header.fromfile(source, 1)
            for column in (records.cabs, records.seqs, records.times):
                column.fromfile(source, header[0])
        return records

    def by_key(self) -> dict[tuple[int, int], int]:
        """The first stamp of each (cabinet, seq)."""
        first: dict[tuple[int, int], int] = {}
        for cab, seq, at in zip(self.cabs, self.seqs, self.times, strict=True):
            first.setdefault((cab, seq), at)
        return first


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _mqtt_client(client_id: str):
    import paho.mqtt.client as mqtt

    from cloud.worker.mqtt import no_delay

    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    # No inflight limit (0): QoS 1 messages flow without waiting on PUBACKs in lockstep, and
    # paho skips its scan of every unacked message at each PUBACK (`cloud.worker.mqtt`).
    client.max_inflight_messages_set(0)
    client.on_socket_open = no_delay
    return client


def _connect_and_subscribe(client: Any, host: str, port: int, topics: Sequence[str]) -> None:
    subscribed = threading.Event()

    def on_connect(c, _u, _f, reason, _p):
        if not reason.is_failure and topics:
            c.subscribe([(t, 1) for t in topics])
        elif not topics:
            subscribed.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(host, port, keepalive=60)
    client.loop_start()
    if not subscribed.wait(30):
        raise RuntimeError(f"no connection/subscription to {host}:{port} within 30 s")


# --- role: publisher (the cabinets' event side) ---------------------------------------------------


def _publisher(args: argparse.Namespace) -> None:
    cabinets = [i for i in range(args.cabinets) if i % args.of == args.index]
    publisher = _Publisher(cabinets, f"bench-publisher-{args.index}-{os.getpid()}")
    _connect_and_subscribe(publisher.client, args.host, args.port, [])
    _say({"ready": True, "cabinets": len(cabinets)})
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "prepare":
            _say({"prepared": publisher.prepare(request["rate"], request["duration_s"])})
        elif request["op"] == "go":
            _say(publisher.go(request["rate"], request["start_at_ns"]))
    # stdin closed: wait for the broker's PUBACKs, then leave the stamps behind.
    publisher.close(Path(args.out))
    _say({"closed": True, "published": len(publisher.records), "pubacked": publisher.acked})


class _Publisher:
    """The events of its cabinets, round-robin, prepared ahead and published on schedule."""

    def __init__(self, cabinets: list[int], client_id: str) -> None:
        from protocol.topics import event_topic

        self.cabinets = cabinets
        self.next_seq = dict.fromkeys(cabinets, 1)
        self.topics = {i: event_topic(cabinet_id(i)) for i in cabinets}
        self.client = _mqtt_client(client_id)
        self.acked = 0
        self.client.on_publish = self._on_publish
        self.records = Records()
        self.turn = 0  # round-robin over this publisher's cabinets
        self.prepared: list[tuple[int, int, str, bytes]] = []

    def _on_publish(self, *_args: Any) -> None:
        self.acked += 1

    def prepare(self, rate: float, duration_s: float) -> int:
        """Encode the next step's events (not timed: only their sending is paced)."""
        from protocol.codec import encode

        self.prepared = []
        ts = datetime.now(UTC)
        for _ in range(round(rate * duration_s)):
            cab = self.cabinets[self.turn % len(self.cabinets)]
            self.turn += 1
            seq = self.next_seq[cab]
            self.next_seq[cab] = seq + 1
            self.prepared.append((cab, seq, self.topics[cab], encode(_deposit(cab, seq, ts))))
        return len(self.prepared)

    def go(self, rate: float, start_ns: int) -> dict[str, Any]:
        """Publish the prepared events at `rate`, the first at `start_ns`; say how late it ran."""
        interval_ns = round(1e9 / rate) if rate else 0
        worst_late_ns = 0
        for n, (cab, seq, topic, payload) in enumerate(self.prepared):
            due_ns = start_ns + n * interval_ns
            now_ns = time.monotonic_ns()
            if due_ns > now_ns + 200_000:
                time.sleep((due_ns - now_ns) / 1e9)
                now_ns = time.monotonic_ns()
            worst_late_ns = max(worst_late_ns, now_ns - due_ns)
            self.records.add(cab, seq, now_ns)
            self.client.publish(topic, payload, qos=1)
        done = len(self.prepared)
        self.prepared = []
        return {"done": done, "ended_ns": time.monotonic_ns(), "worst_late_ms": worst_late_ns / 1e6}

    def close(self, out: Path) -> None:
        deadline = time.monotonic() + 30
        while self.acked < len(self.records) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.records.write(out)
        self.client.disconnect()
        self.client.loop_stop()


def _deposit(cab: int, seq: int, ts: datetime) -> Any:
    """A valid `parcel.deposited` of cabinet `cab`, its parcel named after cabinet and seq."""
    from protocol.messages import ParcelDeposited, ParcelDepositedData, Size

    return ParcelDeposited(
        id=f"{cabinet_id(cab)}-e{seq}",
        cab=cabinet_id(cab),
        seq=seq,
        ts=ts,
        data=ParcelDepositedData(
            parcel_id=parcel_id(cab, seq),
            compartment=f"A{(seq - 1) % COMPARTMENTS + 1:02d}",
            size=Size.M,
            tracking_no=f"BT{cab:05d}{seq:08d}",
            phone=f"+86138{(cab * 7919 + seq) % 10**8:08d}",
            courier_id=COURIER,
        ),
    )


# --- role: the cabinets' command side -------------------------------------------------------------


def _cabinets_side(args: argparse.Namespace) -> None:
    side = _CabinetsSide(f"bench-cabinets-{os.getpid()}")
    _connect_and_subscribe(
        side.client, args.host, args.port, ["lockers/v1/+/cmd", "lockers/v1/+/event-ack"]
    )
    _say({"ready": True})
    _report_until_stdin_closes(lambda: {"codes": side.counts["codes"]}, side.lock)
    side.client.disconnect()
    side.client.loop_stop()
    side.records.write(Path(args.out))
    summary = {**side.counts, "by_type": side.by_type, "acked_upto": side.acked_upto}
    Path(args.out).with_suffix(".json").write_text(json.dumps(summary))
    _say({"closed": True, **side.counts})


class _CabinetsSide:
    """Every cabinet's command side: acks each command, notes when each codes.put came."""

    def __init__(self, client_id: str) -> None:
        import orjson

        from protocol.topics import ack_topic

        # Bound once: on_message runs for every command of the run.
        self._loads, self._dumps, self._ack_topic = orjson.loads, orjson.dumps, ack_topic
        self._bad = (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError)
        self.records = Records()
        self.lock = threading.Lock()
        self.seen_commands: set[str] = set()
        self.counts = {"codes": 0, "commands": 0, "redelivered": 0, "bad": 0, "event_acks": 0}
        self.by_type: dict[str, int] = {}
        self.acked_upto: dict[int, int] = {}
        self.client = _mqtt_client(client_id)
        self.client.on_message = self.on_message

    def on_message(self, client: Any, _userdata: Any, message: Any) -> None:
        at_ns = time.monotonic_ns()
        parts = message.topic.split("/")
        cab = parts[2]
        # Read with orjson, not the protocol's models: this side is load, and what it costs
        # the machine is not the worker's. The worker builds every command with those models;
        # the test suite holds the daemon's side of the contract.
        try:
            body = self._loads(message.payload)
            if parts[3] == "event-ack":
                self._event_ack(cab, int(body["upto"]))
                return
            command_id, command_type = str(body["id"]), str(body["type"])
            if body["cab"] != cab:
                raise ValueError("a command for another cabinet")
        except self._bad:
            with self.lock:
                self.counts["bad"] += 1
            return
        self._command(client, cab, command_id, command_type, body, at_ns)

    def _event_ack(self, cab: str, upto: int) -> None:
        with self.lock:
            self.counts["event_acks"] += 1
            index = cabinet_index(cab)
            self.acked_upto[index] = max(self.acked_upto.get(index, 0), upto)

    def _command(
        self, client: Any, cab: str, command_id: str, command_type: str, body: Any, at_ns: int
    ) -> None:
        # Like the daemon: run a command id once, ack it every time it comes.
        ack = self._dumps({"v": 1, "cmd": command_id, "ok": True})
        client.publish(self._ack_topic(cab), ack, qos=1)
        with self.lock:
            self.counts["commands"] += 1
            if command_id in self.seen_commands:
                self.counts["redelivered"] += 1
                return
            self.seen_commands.add(command_id)
            self.by_type[command_type] = self.by_type.get(command_type, 0) + 1
            if command_type == "codes.put":
                for entry in body["data"]["entries"]:
                    cab_part, _, seq = entry["parcel_id"].rpartition(".")
                    self.records.add(cabinet_index(cab_part), int(seq), at_ns)
                    self.counts["codes"] += 1


def _report_until_stdin_closes(snapshot: Callable[[], dict[str, Any]], lock: Any) -> None:
    closed = threading.Event()

    def wait_stdin() -> None:
        for _ in sys.stdin:
            pass
        closed.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    while not closed.wait(0.2):
        with lock:
            _say({"progress": snapshot(), "at_ns": time.monotonic_ns()})


# --- role: the bare ingest ------------------------------------------------------------------------


def _bare_ingest(args: argparse.Namespace) -> None:
    from cloud.db.engine import make_engine

    engine = make_engine(args.database_url)
    table = _bare_table()
    inbox: queue.Queue[tuple[str, bytes, int]] = queue.Queue()
    client = _mqtt_client(f"bench-bare-{os.getpid()}")
    client.on_message = lambda _c, _u, m: inbox.put(
        (m.topic, bytes(m.payload), time.monotonic_ns())
    )
    _connect_and_subscribe(client, args.host, args.port, ["lockers/v1/+/event"])
    records = Records()
    lock = threading.Lock()
    stored = [0]
    stopping = threading.Event()

    def store_loop() -> None:
        while not (stopping.is_set() and inbox.empty()):
            batch = _take_batch(inbox)
            if not batch:
                continue
            rows = [{"topic": t, "payload": p, "received_ns": r} for t, p, r in batch]
            with engine.begin() as connection:  # one INSERT of the batch, one commit
                connection.execute(table.insert(), rows)
            at_ns = time.monotonic_ns()
            with lock:
                for topic, payload, _ in batch:
                    match = _SEQ.search(payload)
                    records.add(
                        cabinet_index(topic.split("/")[2]), int(match[1]) if match else 0, at_ns
                    )
                stored[0] += len(batch)

    storer = threading.Thread(target=store_loop)
    storer.start()
    _say({"ready": True})
    _report_until_stdin_closes(lambda: {"stored": stored[0]}, lock)
    client.disconnect()
    client.loop_stop()
    stopping.set()
    storer.join()
    records.write(Path(args.out))
    engine.dispose()
    _say({"closed": True, "stored": stored[0]})


def _bare_table() -> Any:
    from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, String, Table

    return Table(
        BARE_TABLE,
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("topic", String(200), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("received_ns", BigInteger, nullable=False),
    )


def _take_batch(inbox: queue.Queue[tuple[str, bytes, int]]) -> list[tuple[str, bytes, int]]:
    """What has arrived, up to BARE_BATCH (waiting 0.1 s for the first); [] if nothing came."""
    try:
        batch = [inbox.get(timeout=0.1)]
    except queue.Empty:
        return []
    while len(batch) < BARE_BATCH:
        try:
            batch.append(inbox.get_nowait())
        except queue.Empty:
            break
    return batch


# --- the harness: processes -----------------------------------------------------------------------


def own_broker(workdir: Path) -> Mosquitto:
    """A mosquitto of the benchmark's own on a free loopback port, in a temporary directory."""
    try:
        broker = Mosquitto(
            workdir,
            # Anonymous, on loopback, for the benchmark's own clients only. One publisher speaks
            # for every simulated cabinet, which per-cabinet users and ACLs would refuse, so
            # there are no user names to pin the client ids to (`use_username_as_clientid`,
            # set in every broker config we ship, refuses a client that gives none).
            allow_anonymous=True,
            persistence=False,
            max_queued_messages=10_000_000,
        )
        broker.start()
    except ServiceMissing as err:
        raise RuntimeError(f"{err} (run `./dev services`), or pass --broker mqtt://...") from None
    except (RuntimeError, TimeoutError) as err:
        raise RuntimeError(f"mosquitto did not start: {err}") from None
    return broker


class Role(JsonLinesProcess):
    """A subprocess of this module spoken to in JSON lines; its progress lines are kept."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.progress: dict[str, Any] = {}
        super().__init__(
            [sys.executable, "-m", "locker.bench.cloud", *argv],
            log_path=log_path,
            name=argv[0],
            env=env,
        )
        self.expect("ready", 60)

    def on_line(self, line: str) -> None:
        message = json.loads(line)
        if "progress" in message:
            self.progress = message["progress"]
        else:
            super().on_line(line)

    def expect(self, key: str, timeout_s: float) -> dict[str, Any]:
        try:
            message = self.next(timeout_s)
        except TimeoutError as err:
            raise RuntimeError(f"{err} (log: {self.log_name})") from None
        if key not in message:
            raise RuntimeError(f"{self.name} answered {message}, not {key!r}")
        return message

    def close(self, timeout_s: float = 60) -> dict[str, Any] | None:
        """Close stdin (the role writes its stamps and exits); return its last words."""
        if self.process.poll() is not None:
            self.stop()
            return None
        self.close_stdin()
        try:
            words = self.expect("closed", timeout_s)
            self.process.wait(10)
        finally:
            self.stop()
        return words


class WorkerProcess:
    """`locker cloud worker`, the production command, in a subprocess."""

    def __init__(
        self, *, url: str, host: str, port: int, name: str, env: dict[str, str], log_path: Path
    ) -> None:
        self.log_path = log_path
        command = locker_cli("cloud", "worker", "--database-url", url, "--client-id", name)
        command += ["--broker", f"mqtt://{host}:{port}"]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_subscribed(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited: {self.log_path.read_text()[-1500:]}")
            if "subscribed to" in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the worker did not subscribe in {timeout_s:g} s")

    def stop(self) -> None:
        stop_pid(self.process, timeout_s=30)


def _database_backends(url: str) -> Callable[[], list[int]]:
    """The pids of the local PostgreSQL backends connected to `url`'s database (the worker's,
    the bench's own, an autovacuum worker on it), not this query's own.

    Not the whole server's processes: on a machine other jobs share, their databases' work
    counted as the bench's. What every database shares (the WAL writer, the checkpointer) is
    left out with them.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)

    def pids() -> list[int]:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalars()
            return [int(pid) for pid in rows]

    return pids


class CpuMeter:
    """CPU seconds used by groups of processes between `start` and `stop`."""

    def __init__(self, roles: dict[str, Callable[[], Sequence[int]]]) -> None:
        self.roles = roles
        self._before: dict[str, dict[int, float]] = {}

    def _read(self) -> dict[str, dict[int, float]]:
        return {role: {pid: cpu_s(pid) for pid in pids()} for role, pids in self.roles.items()}

    def start(self) -> None:
        self._before = self._read()

    def stop(self) -> dict[str, float]:
        after = self._read()
        # A process that started meanwhile counts from 0; one that ended is not counted.
        return {
            role: round(
                sum(cpu - self._before.get(role, {}).get(pid, 0.0) for pid, cpu in now.items()), 2
            )
            for role, now in after.items()
        }


# --- the harness: database ------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    """Create a `locker_bench_...` database; drop it (WITH FORCE) afterwards."""
    try:
        database = create_database(admin_url, prefix="locker_bench_")
    except ServiceMissing as err:
        raise RuntimeError(
            f"cannot create a scratch database: {err}; start PostgreSQL "
            "(`./dev services`), or pass --database-url or --sqlite"
        ) from None
    try:
        yield database.url
    finally:
        database.drop()


def register_cabinets(url: str, count: int, *, seal_key: bytes) -> None:
    """Migrate the database and register the site and `count` cabinets through the registry."""
    from sqlmodel import Session

    from cloud.db.engine import make_engine
    from cloud.db.migrate import upgrade
    from cloud.db.models import CabinetCreate, SiteCreate
    from cloud.services.registry import CompartmentSpec, add_cabinet, add_site

    upgrade(url)
    engine = make_engine(url)
    now = datetime.now(UTC)
    layout = [CompartmentSpec(f"A{n:02d}", "M") for n in range(1, COMPARTMENTS + 1)]
    try:
        with Session(engine) as session:
            add_site(session=session, site_create=SiteCreate(id=SITE, name="Bench estate"), now=now)
        for index in range(count):
            with Session(engine) as session:
                add_cabinet(
                    session=session,
                    cabinet_create=CabinetCreate(
                        id=cabinet_id(index), site_id=SITE, name=f"Bench {index}"
                    ),
                    compartments=layout,
                    now=now,
                    seal_key=seal_key,
                )
    finally:
        engine.dispose()


def database_counts(url: str) -> dict[str, int]:
    """What the workers left in the database: the figures the report checks against."""
    from sqlalchemy import text

    from cloud.db.engine import make_engine

    queries = {
        "events": "SELECT count(*) FROM events",
        "events_applied": "SELECT count(*) FROM events WHERE applied AND anomaly IS NULL",
        "anomalies": "SELECT count(*) FROM events WHERE anomaly IS NOT NULL",
        "parcels_in_locker": "SELECT count(*) FROM parcels WHERE status = 'in_locker'",
        "codes_put_rows": "SELECT count(*) FROM command_outbox WHERE type = 'codes.put'",
        "codes_put_sent": "SELECT count(*) FROM command_outbox "
        "WHERE type = 'codes.put' AND sent_at IS NOT NULL",
        "codes_put_acked": "SELECT count(*) FROM command_outbox "
        "WHERE type = 'codes.put' AND acked_at IS NOT NULL",
        "codes_put_resent": "SELECT count(*) FROM command_outbox WHERE send_count > 1",
        "notices_queued": "SELECT count(*) FROM notice_outbox",
        "applied_upto_sum": "SELECT coalesce(sum(applied_upto), 0) FROM cabinets",
    }
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return {k: int(connection.execute(text(q)).scalar_one()) for k, q in queries.items()}
    finally:
        engine.dispose()


def _count_acked(url: str) -> int:
    from sqlalchemy import text

    from cloud.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT count(*) FROM command_outbox WHERE acked_at IS NOT NULL")
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _create_bare_table(url: str) -> None:
    from sqlalchemy import text

    from cloud.db.engine import make_engine

    engine = make_engine(url)
    serial = "BIGSERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
    blob = "BYTEA" if engine.dialect.name == "postgresql" else "BLOB"
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    f"CREATE TABLE {BARE_TABLE} (id {serial} PRIMARY KEY, topic VARCHAR(200) "
                    f"NOT NULL, payload {blob} NOT NULL, received_ns BIGINT NOT NULL)"
                )
            )
    finally:
        engine.dispose()


# --- the harness: the run -------------------------------------------------------------------------


@dataclass
class Options:
    """What `locker bench cloud` was asked for."""

    cabinets: int = 1000
    rates: Sequence[float] = DEFAULT_RATES
    step_s: float = DEFAULT_STEP_S
    workers: int = 1
    publishers: int = 1
    broker: tuple[str, int] | None = None
    database_url: str | None = None
    sqlite: bool = False
    pg_admin_url: str = DEFAULT_ADMIN_URL
    stop_at_first_miss: bool = True
    bare: bool = True
    logs_dir: Path | None = None  # keep the processes' logs there (default: a temporary dir)


@dataclass
class Phase:
    """One phase's raw material: the step windows and the stamps."""

    name: str
    steps: list[dict[str, Any]] = field(default_factory=list)  # rate, start_ns, end_ns, late
    cpu_s: float = 0.0  # of the measured process(es): the worker(s) or the bare ingester
    wall_s: float = 0.0
    # CPU seconds of every process the phase ran, by role: what the machine spent on it.
    cpu_by_role: dict[str, float] = field(default_factory=dict)
    drained: bool = True  # every event published in the phase was handled before the timeout


Progress = Callable[[str, dict[str, Any]], None]


def run_bench(options: Options, progress: Progress | None = None) -> dict[str, Any]:
    """Run both phases on fresh processes; return the figures (see the module's docstring)."""
    say = progress or (lambda _what, _info: None)
    with contextlib.ExitStack() as stack:
        run = _Run.set_up(options, stack, say)
        run.register()
        run.start_load()
        worker_phase, counts, worker_logs = run.worker_phase()
        bare_phase, drained_2, bare_stored = run.bare_phase()
        publisher_words = [p.close() or {} for p in run.publishers]
        run.cmd_side.close()
        published, handled, bare_records = run.stamps()
        cmd_summary = json.loads((run.tmp / "handled.json").read_text())
        say("analysis", {"what": "computing the figures"})
        return _figures(
            options=options,
            url=run.url,
            broker_shown=run.broker_shown,
            phases=(worker_phase, bare_phase),
            published=published,
            handled=handled,
            bare_records=bare_records,
            counts=counts,
            cmd_summary=cmd_summary,
            publisher_words=publisher_words,
            drained=(run.drained_1, drained_2),
            bare_stored=bare_stored,
            worker_logs=worker_logs,
        )


@dataclass
class _Run:
    """One run's broker, database and processes, and its phases in order; `stack` stops all."""

    options: Options
    stack: contextlib.ExitStack
    say: Progress
    tmp: Path
    url: str
    host: str
    port: int
    broker_shown: str
    broker: Mosquitto | None
    env: dict[str, str] = field(default_factory=dict)
    cmd_side: Role = field(init=False)
    publishers: list[Role] = field(default_factory=list)
    drained_1: bool = True

    @classmethod
    def set_up(cls, options: Options, stack: contextlib.ExitStack, say: Progress) -> _Run:
        """The working folder, the broker (ours unless given) and the database (likewise)."""
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="locker-bench-cloud-")))
        if options.logs_dir is not None:
            options.logs_dir.mkdir(parents=True, exist_ok=True)
            tmp = options.logs_dir
        broker = None
        if options.broker is None:
            broker = own_broker(tmp)
            stack.callback(broker.stop)
            host, port = HOST, broker.port
            broker_shown = f"own mosquitto on {HOST}:{port} (persistence off)"
        else:
            host, port = options.broker
            broker_shown = f"mqtt://{host}:{port}"
        if options.database_url:
            url = options.database_url
        elif options.sqlite:
            url = f"sqlite:///{tmp / 'cloud.db'}"
        else:
            url = stack.enter_context(scratch_postgres(options.pg_admin_url))
        return cls(options, stack, say, tmp, url, host, port, broker_shown, broker)

    @property
    def common(self) -> list[str]:
        return ["--host", self.host, "--port", str(self.port)]

    def register(self) -> None:
        """Register the cabinets under a fresh cloud secret, which the workers are given."""
        self.say("setup", {"what": f"registering {self.options.cabinets} cabinets"})
        secret_key = os.urandom(32).hex()  # the cloud's secret: seals the cabinets' code keys
        register_cabinets(self.url, self.options.cabinets, seal_key=secret_key.encode())
        self.env = clean_env(LOCKER_CLOUD_SECRET_KEY=secret_key)

    def _role(self, argv: list[str], log_name: str) -> Role:
        role = Role(argv, self.tmp / log_name, self.env)
        self.stack.callback(role.kill)
        return role

    def start_load(self) -> None:
        """The cabinets' command side, then the publishers (each owning a share of cabinets)."""
        out = ["--out", str(self.tmp / "handled.bin")]
        self.cmd_side = self._role(["cabinets", *self.common, *out], "cabinets.log")
        of = self.options.publishers
        for index in range(of):
            argv = ["publisher", *self.common, "--cabinets", str(self.options.cabinets)]
            argv += ["--index", str(index), "--of", str(of)]
            argv += ["--out", str(self.tmp / f"published-{index}.bin")]
            self.publishers.append(self._role(argv, f"publisher-{index}.log"))

    def _shared_cpu(self) -> dict[str, Callable[[], Sequence[int]]]:
        """The processes both phases run, whose CPU each phase's events cost too."""
        from sqlalchemy.engine import make_url

        postgres = make_url(self.url).get_backend_name() == "postgresql"
        broker = self.broker
        return {
            "publishers": lambda: [p.process.pid for p in self.publishers],
            "broker": lambda: [broker.pid] if broker is not None and broker.pid else [],
            "postgresql": _database_backends(self.url) if postgres else list,
        }

    def _start_workers(self) -> list[WorkerProcess]:
        workers = [
            WorkerProcess(
                url=self.url,
                host=self.host,
                port=self.port,
                name=f"bench-worker-{n}",
                env=self.env,
                log_path=self.tmp / f"worker-{n}.log",
            )
            for n in range(self.options.workers)
        ]
        for worker in workers:
            self.stack.callback(worker.stop)
        for worker in workers:
            worker.wait_subscribed()
        return workers

    def _measured(
        self, phase: Phase, meter: CpuMeter, handled_now: Callable[[], int], measured: str
    ) -> int:
        """Run the steps and the drain with the meter on; return how many were published."""
        meter.start()
        wall_before = time.monotonic()
        _run_steps(phase, self.options, self.publishers, handled_now, self.say)
        published = sum(s["published"] for s in phase.steps)
        drained = _drain(handled_now, published, phase.name, self.say)
        # Over the steps and the drain: all the work the phase's events caused.
        phase.wall_s = time.monotonic() - wall_before
        phase.cpu_by_role = meter.stop()
        phase.cpu_s = phase.cpu_by_role[measured]
        phase.drained = drained
        return published

    def worker_phase(self) -> tuple[Phase, dict[str, int], dict[str, Any]]:
        """Phase 1: the workers take the steps; their database counts and logs after."""
        workers = self._start_workers()
        phase = Phase("worker")
        meter = CpuMeter(
            {
                "worker": lambda: [w.process.pid for w in workers],
                "cabinets_side": lambda: [self.cmd_side.process.pid],
                **self._shared_cpu(),
            }
        )

        def codes() -> int:
            return int(self.cmd_side.progress.get("codes", 0))

        published = self._measured(phase, meter, codes, "worker")
        self.drained_1 = phase.drained
        # The acks the cabinets sent must be recorded before the workers go, or they'd resend.
        _wait(lambda: _count_acked(self.url) >= published, 30)
        for worker in workers:
            worker.stop()
        logs = {w.log_path.name: _log_summary(w.log_path) for w in workers}
        return phase, database_counts(self.url), logs

    def bare_phase(self) -> tuple[Phase, bool, int]:
        """Phase 2: the bare ingest, same broker, database, publishers and steps."""
        phase = Phase("bare ingest")
        if not self.options.bare:
            return phase, True, 0
        _create_bare_table(self.url)
        out = ["--out", str(self.tmp / "bare.bin")]
        bare = self._role(
            ["bare-ingest", *self.common, "--database-url", self.url, *out], "bare.log"
        )
        meter = CpuMeter({"bare_ingest": lambda: [bare.process.pid], **self._shared_cpu()})
        self._measured(phase, meter, lambda: int(bare.progress.get("stored", 0)), "bare_ingest")
        words = bare.close() or {}
        return phase, phase.drained, int(words.get("stored", 0))

    def stamps(self) -> tuple[Records, Records, Records]:
        """What the roles wrote: published (all publishers), handled, and the bare ingest's."""
        published = Records()
        for index in range(self.options.publishers):
            part = Records.read(self.tmp / f"published-{index}.bin")
            published.cabs.extend(part.cabs)
            published.seqs.extend(part.seqs)
            published.times.extend(part.times)
        handled = Records.read(self.tmp / "handled.bin")
        bare = Records.read(self.tmp / "bare.bin") if self.options.bare else Records()
        return published, handled, bare


def _wait(test: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not test():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _log_summary(path: Path) -> dict[str, int]:
    text = path.read_text(errors="replace")
    return {
        "errors": text.count(" ERROR "),
        "warnings": text.count(" WARNING "),
        "tracebacks": text.count("Traceback"),
    }


def _run_steps(
    phase: Phase,
    options: Options,
    publishers: list[Role],
    handled_now: Callable[[], int],
    say: Progress,
) -> None:
    published_total = 0
    for rate in options.rates:
        start_ns, end_ns = _offer(options, publishers, rate)
        say("step", {"phase": phase.name, "rate": rate, "handled": handled_now()})
        while time.monotonic_ns() < end_ns:
            time.sleep(0.25)
            backlog_now = published_total + rate * max(0, time.monotonic_ns() - start_ns) / 1e9
            say("tick", {"phase": phase.name, "rate": rate, "backlog": backlog_now - handled_now()})
        done = [publisher.expect("done", options.step_s + 120) for publisher in publishers]
        published = sum(d["done"] for d in done)
        published_total += published
        time.sleep(0.3)  # the progress lines run a little behind
        backlog = published_total - handled_now()
        phase.steps.append(
            {
                "rate": rate,
                "start_ns": start_ns,
                "end_ns": end_ns,
                "publish_end_ns": max(d["ended_ns"] for d in done),
                "published": published,
                "worst_late_ms": max(d["worst_late_ms"] for d in done),
            }
        )
        say("stepped", {"phase": phase.name, "rate": rate, "backlog": backlog})
        if options.stop_at_first_miss and backlog > _allowed_growth(rate) + rate * 0.5:
            say("missed", {"phase": phase.name, "rate": rate, "backlog": backlog})
            break


def _offer(options: Options, publishers: list[Role], rate: float) -> tuple[int, int]:
    """Have the publishers prepare a step at `rate` and start it together; its (start, end)."""
    share = rate / len(publishers)
    for publisher in publishers:
        publisher.send({"op": "prepare", "rate": share, "duration_s": options.step_s})
    for publisher in publishers:
        publisher.expect("prepared", 120)
    start_ns = time.monotonic_ns() + 200_000_000
    for publisher in publishers:
        publisher.send({"op": "go", "rate": share, "start_at_ns": start_ns})
    return start_ns, start_ns + round(options.step_s * 1e9)


def _allowed_growth(rate: float) -> float:
    return max(20.0, rate * BACKLOG_GROWTH_S)


def _drain(handled_now: Callable[[], int], total: int, name: str, say: Progress) -> bool:
    say("drain", {"phase": name, "left": total - handled_now()})
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while handled_now() < total:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
        say("drain", {"phase": name, "left": total - handled_now()})
    return True


# --- figures --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty, sorted sequence."""
    return values[max(0, math.ceil(q / 100 * len(values)) - 1)]


def _step_figures(
    steps: list[dict[str, Any]], published: Records, handled: Records
) -> list[dict[str, Any]]:
    handled_at = handled.by_key()
    pub_times = sorted(published.times)
    done_times = sorted(handled_at.values())
    return [_step_row(step, published, handled_at, pub_times, done_times) for step in steps]


def _step_row(
    step: dict[str, Any],
    published: Records,
    handled_at: dict[tuple[int, int], int],
    pub_times: list[int],
    done_times: list[int],
) -> dict[str, Any]:
    """One step's rates, latencies and backlog, from the sorted stamps of the whole phase."""
    start, end = step["start_ns"], step["end_ns"]
    seconds = (end - start) / 1e9
    latencies = sorted(
        (handled_at[(cab, seq)] - at) / 1e6
        for cab, seq, at in zip(published.cabs, published.seqs, published.times, strict=True)
        if start <= at < step["publish_end_ns"] + 1 and (cab, seq) in handled_at
    )

    def backlog(at_ns: int) -> int:
        return bisect.bisect_right(pub_times, at_ns) - bisect.bisect_right(done_times, at_ns)

    def rate(times: list[int]) -> float:
        return (bisect.bisect_left(times, end) - bisect.bisect_left(times, start)) / seconds

    offered, handled_rate = rate(pub_times), rate(done_times)
    growth = backlog(end) - backlog(start)
    publisher_behind = step["published"] / seconds < PUBLISHER_BEHIND_SHARE * step["rate"] or (
        (step["publish_end_ns"] - end) / 1e9 > 0.5
    )
    return {
        "target_rate": step["rate"],
        "offered_per_s": round(offered, 1),
        "handled_per_s": round(handled_rate, 1),
        "published": step["published"],
        "handled": len(latencies),
        "latency_ms": {
            "p50": percentile(latencies, 50) if latencies else None,
            "p95": percentile(latencies, 95) if latencies else None,
            "p99": percentile(latencies, 99) if latencies else None,
            "max": latencies[-1] if latencies else None,
        },
        "backlog_start": backlog(start),
        "backlog_end": backlog(end),
        "kept_up": handled_rate >= KEPT_UP_SHARE * offered and growth <= _allowed_growth(offered),
        "publisher_behind": publisher_behind,
        "publisher_worst_late_ms": round(step["worst_late_ms"], 1),
    }


def _sustained(rows: list[dict[str, Any]]) -> dict[str, Any]:
    best = None
    for row in rows:
        if not row["kept_up"]:
            break
        best = row
    capacity = max((row["handled_per_s"] for row in rows), default=0.0)
    return {
        "sustained_per_s": best["handled_per_s"] if best else 0.0,
        "sustained_step": best["target_rate"] if best else None,
        "sustained_step_publisher_behind": bool(best and best["publisher_behind"]),
        "every_step_kept_up": all(row["kept_up"] for row in rows),
        "peak_handled_per_s": capacity,
    }


def _figures(
    *,
    options: Options,
    url: str,
    broker_shown: str,
    phases: tuple[Phase, Phase],
    published: Records,
    handled: Records,
    bare_records: Records,
    counts: dict[str, int],
    cmd_summary: dict[str, Any],
    publisher_words: list[dict[str, Any]],
    drained: tuple[bool, bool],
    bare_stored: int,
    worker_logs: dict[str, Any],
) -> dict[str, Any]:
    worker_phase, bare_phase = phases
    phase_1, phase_2 = _split_by_phase(published, bare_phase)
    worker_rows = _step_figures(worker_phase.steps, phase_1, handled)
    bare_rows = _step_figures(bare_phase.steps, phase_2, bare_records)
    worker_summary = _sustained(worker_rows)
    bare_summary = _sustained(bare_rows)
    consistency = {
        **_consistency(phase_1, handled, cmd_summary, publisher_words),
        "drained": drained[0],
        "database": counts,
        "bare_published": len(phase_2),
        "bare_stored": bare_stored,
        "bare_drained": drained[1],
    }
    return {
        "setup": _setup_figures(options, url, broker_shown),
        "worker": {
            **_phase_figures(worker_phase, worker_rows, worker_summary, len(phase_1)),
            "logs": worker_logs,
        },
        "bare_ingest": _phase_figures(bare_phase, bare_rows, bare_summary, len(phase_2)),
        **_headline(worker_rows, worker_summary, bare_summary),
        "consistency": consistency,
    }


def _headline(
    worker_rows: list[dict[str, Any]], worker: dict[str, Any], bare: dict[str, Any]
) -> dict[str, Any]:
    """The summary against the targets: sustained rate, its share of the bare one, p99."""
    at_latency_rate = next((r for r in worker_rows if r["target_rate"] == LATENCY_RATE), None)
    p99_at_rate = at_latency_rate["latency_ms"]["p99"] if at_latency_rate else None
    ratio = worker["sustained_per_s"] / bare["sustained_per_s"] if bare["sustained_per_s"] else None
    return {
        "summary": {
            "sustained_per_s": worker["sustained_per_s"],
            "bare_sustained_per_s": bare["sustained_per_s"],
            "share_of_bare": round(ratio, 3) if ratio is not None else None,
            "p99_ms_at_1000": p99_at_rate,
        },
        "targets": {
            "sustained_per_s": TARGET_SUSTAINED,
            "share_of_bare": TARGET_BARE_SHARE,
            "p99_ms_at_1000": TARGET_P99_MS,
        },
    }


def _split_by_phase(published: Records, bare_phase: Phase) -> tuple[Records, Records]:
    """The publishers' stamps of each phase (the bare phase's events come after the workers')."""
    first_bare_ns = bare_phase.steps[0]["start_ns"] if bare_phase.steps else None
    phase_1 = Records()
    phase_2 = Records()
    for cab, seq, at in zip(published.cabs, published.seqs, published.times, strict=True):
        (phase_2 if first_bare_ns is not None and at >= first_bare_ns else phase_1).add(
            cab, seq, at
        )
    return phase_1, phase_2


def _consistency(
    published: Records,
    handled: Records,
    cmd_summary: dict[str, Any],
    publisher_words: list[dict[str, Any]],
) -> dict[str, Any]:
    """Every published event got exactly one codes.put, and every event was acked."""
    handled_keys = set(handled.by_key())
    published_keys = {(c, s) for c, s in zip(published.cabs, published.seqs, strict=True)}
    last_seq: dict[int, int] = {}
    for cab, seq in published_keys:
        last_seq[cab] = max(last_seq.get(cab, 0), seq)
    acked_upto = {int(k): v for k, v in cmd_summary["acked_upto"].items()}
    return {
        "published": len(published),
        "codes_put_received": len(handled_keys),
        "codes_put_for_unpublished": len(handled_keys - published_keys),
        "published_without_codes_put": len(published_keys - handled_keys),
        "codes_put_commands_received": cmd_summary["by_type"].get("codes.put", 0),
        "command_redeliveries": cmd_summary["redelivered"],
        "bad_messages": cmd_summary["bad"],
        "every_event_acked": all(acked_upto.get(cab, 0) >= seq for cab, seq in last_seq.items()),
        "pubacked": sum(int(w.get("pubacked", 0)) for w in publisher_words),
    }


def _setup_figures(options: Options, url: str, broker_shown: str) -> dict[str, Any]:
    """What ran: sizes, broker, database, the machine."""
    from sqlalchemy.engine import make_url

    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cabinets": options.cabinets,
        "workers": options.workers,
        "publishers": options.publishers,
        "step_s": options.step_s,
        "rates": list(options.rates),
        "broker": broker_shown,
        "database": make_url(url).render_as_string(hide_password=True),
        "database_backend": make_url(url).get_backend_name(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": [round(x, 2) for x in load],
        "handled_means": "codes.put received by the cabinets' side (worker); batch "
        "committed (bare ingest)",
    }


def _phase_figures(
    phase: Phase, rows: list[dict[str, Any]], summary: dict[str, Any], events: int
) -> dict[str, Any]:
    """A phase's steps, sustained rate and what its events cost in CPU."""
    return {
        "steps": rows,
        **summary,
        "cpu_s": round(phase.cpu_s, 2),
        "cpu_ms_per_event": round(1000 * phase.cpu_s / events, 3) if events else None,
        "cpu_ms_per_event_by_role": _per_event(phase.cpu_by_role, events),
    }


def _per_event(cpu_by_role: dict[str, float], events: int) -> dict[str, float] | None:
    """CPU ms per event of each role, and their total: what one event costs the machine."""
    if not events or not cpu_by_role:
        return None
    shares = {role: round(1000 * cpu / events, 3) for role, cpu in cpu_by_role.items()}
    return {**shares, "total": round(sum(shares.values()), 3)}


def main(argv: list[str] | None = None) -> None:
    """The roles' entry point: `python -m locker.bench.cloud publisher|cabinets|bare-ingest ...`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["publisher", "cabinets", "bare-ingest"])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cabinets", type=int, default=0)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--of", type=int, default=1)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args(argv)
    {"publisher": _publisher, "cabinets": _cabinets_side, "bare-ingest": _bare_ingest}[args.role](
        args
    )


if __name__ == "__main__":
    main()
