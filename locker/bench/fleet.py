"""`locker bench fleet`: many cabinets connected at once, and the cloud's presence of them.

What runs (each process stopped by its pid at the end):

- the registry: a scratch PostgreSQL database (or `--sqlite`), migrated, with the largest
  size's cabinets registered through `cloud.services.registry.add_cabinet`, so each has its own
  MQTT password, kept as the `$7$` hash;
- the broker: a `mosquitto` of the bench's own on a free port with the password file and ACL
  `mosquitto_auth` writes for that registry (as `locker cloud mosquitto-config` does), no
  anonymous access, the client id pinned to the user name, as every broker we ship;
- the cloud: one `locker cloud worker`, the production command, logged in as `locker-cloud-1`;
- the cabinets: `--load-processes` processes (`python -m locker.bench.fleet load`), each an
  asyncio loop holding its share of the cabinets' connections with a minimal MQTT 3.1.1 client
  (CONNECT with credentials and the Will, the retained birth at QoS 1, PINGREQ every
  keep-alive). A cabinet's daemon speaks through paho; a paho client per cabinet would cost the
  load generator far more than the broker and the worker it measures.

For each size (`--cabinets 1000,2000,...`, ascending), on a fresh broker and worker with the
cabinets' presence in the database cleared (never seen): every cabinet connects with boot 1 and
publishes its birth; the time until the database shows every one online at boot 1 is the
*presence time*. Then the steady state: nothing but keep-alives for `--steady-s`, while the
worker's and the broker's CPU (utime + stime from /proc) and RSS are read. Then a tenth of the
cabinets drop (the socket closed without DISCONNECT: the broker publishes their Will) and the
time until the database shows exactly them offline is taken; they come back with boot 2 and
the time until every cabinet is online again, the dropped ones at boot 2, is the last figure.
The machine's load average is read beside the figures: other work on the cores shows there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from locker.harness.mosquitto import Mosquitto
from locker.harness.postgres import DEFAULT_ADMIN_URL
from locker.harness.processes import (
    JsonLinesProcess,
    clean_env,
    cpu_s,
    locker_cli,
    memory_mb,
    stop_pid,
)

HOST = "127.0.0.1"
SITE = "fleet-site"
COMPARTMENTS = 4  # per simulated cabinet: the birth lists them all, and the cloud reconciles
WORKER_USER = "locker-cloud-1"
DEFAULT_SIZES = (10_000,)
TARGET_WORKER_CPU_PCT = 25.0  # of one core, at 10,000 idle cabinets
TARGET_WORKER_RSS_MB = 300.0
CONNECT_CONCURRENCY = 64  # connects in flight per load process (a reconnect storm's shape)
PRESENCE_TIMEOUT_S = 600.0


def cabinet_id(index: int) -> str:
    """The id (and MQTT user) of simulated cabinet `index` (0-based)."""
    return f"fleet-{index:05d}"


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


# --- a minimal MQTT 3.1.1 client: only what a cabinet's presence needs ---------------------------


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def connect_packet(
    *, client_id: str, username: str, password: str, will_topic: str, will: bytes, keepalive: int
) -> bytes:
    """CONNECT, clean session, with user name, password and a retained QoS 1 Will."""
    # user name | password | will retain | will QoS 1 | will flag | clean session
    flags = 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02
    body = _string(b"MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    body += _string(client_id.encode()) + _string(will_topic.encode()) + _string(will)
    body += _string(username.encode()) + _string(password.encode())
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """PUBLISH at QoS 1, retained."""
    body = _string(topic.encode()) + struct.pack("!H", packet_id) + payload
    return b"\x33" + _remaining_length(len(body)) + body


PINGREQ = b"\xc0\x00"
CONNACK, PUBACK, PINGRESP = 0x2, 0x4, 0xD


class CabinetConnection(asyncio.Protocol):
    """One cabinet's socket: the broker's answers (CONNACK, PUBACK, PINGRESP) as they come."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.loop = loop
        self.closed = loop.create_future()
        self.pongs = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def expect(self, kind: int) -> asyncio.Future[bytes]:
        future = self.loop.create_future()
        self.waiting[kind] = future
        return future

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 2:
            length, shift, at = 0, 0, 1
            while True:
                if at >= len(self.buffer):
                    return
                byte = self.buffer[at]
                length |= (byte & 0x7F) << shift
                shift += 7
                at += 1
                if not byte & 0x80:
                    break
            if len(self.buffer) < at + length:
                return
            kind, body = self.buffer[0] >> 4, bytes(self.buffer[at : at + length])
            del self.buffer[: at + length]
            if kind == PINGRESP:
                self.pongs += 1
            future = self.waiting.pop(kind, None)
            if future is not None and not future.done():
                future.set_result(body)

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("the broker closed the connection"))
        if not self.closed.done():
            self.closed.set_result(None)


@dataclass
class SimulatedCabinet:
    index: int
    password: str
    boot: int = 0
    connection: CabinetConnection | None = None


def _birth_and_will(cab: str, boot: int) -> tuple[bytes, bytes]:
    from protocol.codec import encode
    from protocol.messages import CompartmentInfo, CompartmentState, Size, State

    now = datetime.now(UTC)
    compartments = [
        CompartmentInfo(id=f"A{n:02d}", size=Size.M, state=CompartmentState.FREE)
        for n in range(1, COMPARTMENTS + 1)
    ]
    birth = State(
        cab=cab, online=True, boot=boot, firmware="fleet-bench", ts=now, compartments=compartments
    )
    will = State(cab=cab, online=False, boot=boot, firmware="fleet-bench", ts=now)
    return encode(birth), encode(will)


class LoadProcess:
    """The cabinets of one load process, and the operations the bench asks of them."""

    def __init__(self, host: str, port: int, cabinets: list[SimulatedCabinet], keepalive: int):
        self.host, self.port, self.keepalive = host, port, keepalive
        self.cabinets = cabinets
        self.loop = asyncio.get_running_loop()

    async def _connect_one(self, cabinet: SimulatedCabinet, boot: int) -> bool:
        from protocol.topics import state_topic

        cab = cabinet_id(cabinet.index)
        birth, will = _birth_and_will(cab, boot)
        try:
            _, connection = await self.loop.create_connection(
                lambda: CabinetConnection(self.loop), self.host, self.port
            )
            assert connection.transport is not None
            connack = connection.expect(CONNACK)
            connection.transport.write(
                connect_packet(
                    client_id=cab,
                    username=cab,
                    password=cabinet.password,
                    will_topic=state_topic(cab),
                    will=will,
                    keepalive=self.keepalive,
                )
            )
            answer = await asyncio.wait_for(connack, 60)
            if answer[1] != 0:
                connection.transport.close()
                return False
            puback = connection.expect(PUBACK)
            connection.transport.write(publish_packet(state_topic(cab), birth, 1))
            await asyncio.wait_for(puback, 60)
        except (OSError, TimeoutError, ConnectionError):
            return False
        cabinet.connection, cabinet.boot = connection, boot
        return True

    async def connect(self, which: Sequence[SimulatedCabinet], boot: int) -> dict[str, Any]:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(cabinet: SimulatedCabinet) -> bool:
            async with gate:
                return await self._connect_one(cabinet, boot)

        started = time.monotonic()
        done = await asyncio.gather(*(one(c) for c in which))
        return {
            "connected": sum(done),
            "failed": len(done) - sum(done),
            "seconds": round(time.monotonic() - started, 3),
        }

    def drop(self, every: int) -> list[SimulatedCabinet]:
        """Close every `every`-th cabinet's socket without DISCONNECT: the broker sends its Will."""
        dropped = []
        for cabinet in self.cabinets:
            if cabinet.index % every == 0 and cabinet.connection is not None:
                assert cabinet.connection.transport is not None
                cabinet.connection.transport.abort()
                cabinet.connection = None
                dropped.append(cabinet)
        return dropped

    async def keepalives(self) -> None:
        """PINGREQ each connection once a keep-alive, spread evenly over the interval."""
        while True:
            live = [c.connection for c in self.cabinets if c.connection is not None]
            gap = self.keepalive * 0.75 / max(1, len(live))  # well inside the broker's 1.5 x
            for connection in live:
                if connection.transport is not None and not connection.transport.is_closing():
                    connection.transport.write(PINGREQ)
                await asyncio.sleep(gap)
            if not live:
                await asyncio.sleep(1)

    def status(self) -> dict[str, Any]:
        live = [c.connection for c in self.cabinets if c.connection is not None]
        return {
            "open": sum(1 for c in live if not c.closed.done()),
            "closed_by_broker": sum(1 for c in live if c.closed.done()),
            "pongs": sum(c.pongs for c in live),
        }


async def _load_main(args: argparse.Namespace) -> None:
    _raise_open_files()
    credentials = json.loads(Path(args.credentials).read_text())
    cabinets = [
        SimulatedCabinet(index, credentials[cabinet_id(index)])
        for index in range(args.index, args.cabinets, args.of)
    ]
    load = LoadProcess(args.host, args.port, cabinets, args.keepalive)
    pinger = asyncio.create_task(load.keepalives())
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    _say({"ready": len(cabinets)})
    dropped: list[SimulatedCabinet] = []
    while line := await reader.readline():
        request = json.loads(line)
        if request["op"] == "connect":
            _say(await load.connect(cabinets, request["boot"]))
        elif request["op"] == "drop":
            dropped = load.drop(request["every"])
            _say({"dropped": len(dropped)})
        elif request["op"] == "reconnect":
            _say(await load.connect(dropped, request["boot"]))
        elif request["op"] == "status":
            _say(load.status())
    pinger.cancel()
    _say({"closed": len(cabinets)})


def _raise_open_files() -> int:
    """Raise the soft limit of open files to the hard one (a socket a cabinet); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 1_048_576
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- the harness ----------------------------------------------------------------------------------


@dataclass
class Options:
    """What `locker bench fleet` was asked for."""

    sizes: Sequence[int] = DEFAULT_SIZES
    load_processes: int = 2
    steady_s: float = 30.0
    keepalive_s: int = 60
    drop_every: int = 10  # a tenth drop and come back
    sqlite: bool = False
    database_url: str | None = None
    pg_admin_url: str = DEFAULT_ADMIN_URL
    logs_dir: Path | None = None


@dataclass
class SizeFigures:
    """One size's figures."""

    cabinets: int
    connected: int
    connect_s: float  # the load processes' time to connect and publish every birth
    presence_s: float | None  # from the first connect until the database shows all online
    worker_cpu_pct: float  # steady state, % of one core
    worker_rss_mb: float
    worker_peak_rss_mb: float
    broker_cpu_pct: float
    broker_rss_mb: float
    load_cpu_pct: float  # the load processes' (the keep-alives), all together
    postgres_cpu_pct: float | None  # the backends connected to the bench's database
    worker_ms_per_birth: float  # the worker's CPU from the first connect to all online, a cabinet
    dropped: int
    wills_s: float | None  # from the drop until the database shows exactly them offline
    reconnected: int
    back_s: float | None  # from the reconnect until every cabinet is online, those at boot 2
    closed_by_broker: int  # connections the broker closed in the steady state (keep-alive missed)
    loadavg_1m: tuple[float, float]  # before the size's run, and at the end of its steady state
    worker_errors: int


@dataclass
class Figures:
    database: str
    registered: int
    register_s: float
    open_files_limit: int
    load_processes: int
    keepalive_s: int
    steady_s: float
    cpu_count: int
    sizes: list[SizeFigures] = field(default_factory=list)


Progress = Callable[[str], None]


def run(options: Options, progress: Progress | None = None) -> Figures:
    """Register the cabinets once, then measure each size on a fresh broker and worker."""
    say = progress or (lambda _what: None)
    open_files = _raise_open_files()
    sizes = sorted(options.sizes)
    need = max(sizes) + 200  # the broker's and the load processes' own files beside the sockets
    if open_files < need:
        raise RuntimeError(
            f"{max(sizes)} cabinets need about {need} open files, and the hard limit is "
            f"{open_files}: raise it (`ulimit -Hn`, or LimitNOFILE= for a service)"
        )
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="locker-bench-fleet-")))
        if options.logs_dir is not None:
            options.logs_dir.mkdir(parents=True, exist_ok=True)
            tmp = options.logs_dir
        url, shown = _database(options, stack, tmp)
        secret_key = secrets.token_hex(32)
        worker_password = secrets.token_urlsafe(24)
        say(f"registering {max(sizes):,} cabinets")
        started = time.monotonic()
        passwords = register(url, max(sizes), seal_key=secret_key.encode())
        register_s = time.monotonic() - started
        (tmp / "credentials.json").write_text(json.dumps(passwords))
        auth = _write_broker_auth(url, tmp, worker_password)
        figures = Figures(
            database=shown,
            registered=max(sizes),
            register_s=round(register_s, 1),
            open_files_limit=open_files,
            load_processes=options.load_processes,
            keepalive_s=options.keepalive_s,
            steady_s=options.steady_s,
            cpu_count=os.cpu_count() or 1,
        )
        env = clean_env(
            LOCKER_CLOUD_SECRET_KEY=secret_key, LOCKER_CLOUD_MQTT_PASSWORD=worker_password
        )
        for size in sizes:
            say(f"{size:,} cabinets")
            figures.sizes.append(_one_size(options, size, url, tmp, auth, env, say))
        return figures


def _database(options: Options, stack: contextlib.ExitStack, tmp: Path) -> tuple[str, str]:
    if options.database_url:
        return options.database_url, "given database"
    if options.sqlite:
        return f"sqlite:///{tmp / 'cloud.db'}", "SQLite"
    from locker.bench.cloud import scratch_postgres

    return stack.enter_context(scratch_postgres(options.pg_admin_url)), "PostgreSQL (scratch)"


def register(url: str, count: int, *, seal_key: bytes) -> dict[str, str]:
    """Migrate, add the site and `count` cabinets through the registry; their MQTT passwords."""
    from sqlmodel import Session

    from cloud.db.engine import make_engine
    from cloud.db.migrate import upgrade
    from cloud.db.models import CabinetCreate, SiteCreate
    from cloud.services.registry import CompartmentSpec, add_cabinet, add_site

    upgrade(url)
    engine = make_engine(url)
    now = datetime.now(UTC)
    layout = [CompartmentSpec(f"A{n:02d}", "M") for n in range(1, COMPARTMENTS + 1)]
    passwords = {}
    try:
        with Session(engine) as session:
            add_site(session=session, site_create=SiteCreate(id=SITE, name="Fleet estate"), now=now)
            for index in range(count):
                credentials = add_cabinet(
                    session=session,
                    cabinet_create=CabinetCreate(
                        id=cabinet_id(index), site_id=SITE, name=f"Fleet {index}"
                    ),
                    compartments=layout,
                    now=now,
                    seal_key=seal_key,
                )
                passwords[credentials.cabinet_id] = credentials.mqtt_password
    finally:
        engine.dispose()
    return passwords


def _write_broker_auth(url: str, tmp: Path, worker_password: str) -> Path:
    """The password file and ACL of the whole registry, as `locker cloud mosquitto-config`."""
    from sqlmodel import Session

    from cloud.db.engine import make_engine
    from cloud.services.registry import mosquitto_auth

    engine = make_engine(url)
    try:
        with Session(engine) as session:
            auth = mosquitto_auth(
                session=session, cloud_users=[WORKER_USER], cloud_password=worker_password
            )
    finally:
        engine.dispose()
    folder = tmp / "auth"
    folder.mkdir(exist_ok=True)
    (folder / "passwd").write_text(auth.password_file)
    (folder / "passwd").chmod(0o600)
    (folder / "acl").write_text(auth.acl_file)
    return folder


def _clear_presence(url: str) -> None:
    """Every cabinet never seen: each size starts as a fleet's first morning."""
    from sqlalchemy import text

    from cloud.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE cabinets SET online = NULL, boot = NULL, presence_since = NULL, "
                    "last_seen_at = NULL"
                )
            )
    finally:
        engine.dispose()


class _Presence:
    """Counts of presence in the database, polled."""

    def __init__(self, url: str) -> None:
        from cloud.db.engine import make_engine

        self.engine = make_engine(url)

    def counts(self) -> dict[str, int]:
        from sqlalchemy import text

        with self.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT online, boot, count(*) FROM cabinets WHERE online IS NOT NULL "
                    "GROUP BY online, boot"
                )
            ).all()
        return {f"{'on' if online else 'off'}@{boot}": int(n) for online, boot, n in rows}

    def backends(self) -> list[int]:
        """The PostgreSQL backends serving this database (the worker's pool): their CPU is the
        database's work for the fleet, not that of other databases on the same server."""
        from sqlalchemy import text

        if self.engine.dialect.name != "postgresql":
            return []
        with self.engine.connect() as connection:
            pids = connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalars()
            return [int(pid) for pid in pids]

    def wait(self, want: dict[str, int], timeout_s: float = PRESENCE_TIMEOUT_S) -> float | None:
        """Seconds until the counts are exactly `want` (None: not within the timeout)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.counts() == want:
                return round(time.monotonic() - started, 2)
            time.sleep(0.1)
        return None

    def close(self) -> None:
        self.engine.dispose()


class _Load(JsonLinesProcess):
    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        super().__init__(
            [sys.executable, "-m", "locker.bench.fleet", "load", *argv],
            log_path=log_path,
            name=log_path.stem,
            env=env,
        )
        self.answer(120)  # ready

    def answer(self, timeout_s: float) -> dict[str, Any]:
        """The next line; a load process that died says so at once, with its log's end."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.next(min(1.0, max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                if self.process.poll() is not None:
                    tail = Path(self.log_name).read_text(errors="replace")[-1500:]
                    raise RuntimeError(f"{self.name} exited: {tail}") from None
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"{self.name} said nothing for {timeout_s:g} s") from None

    @staticmethod
    def ask_all(loads: Sequence[_Load], request: dict[str, Any], timeout_s: float) -> list[Any]:
        for load in loads:
            load.send(request)
        return [load.answer(timeout_s) for load in loads]


def _one_size(
    options: Options,
    size: int,
    url: str,
    tmp: Path,
    auth: Path,
    env: dict[str, str],
    say: Progress,
) -> SizeFigures:
    loadavg_before = os.getloadavg()[0]
    _clear_presence(url)
    folder = tmp / f"size-{size}"
    folder.mkdir(exist_ok=True)
    with contextlib.ExitStack() as stack:
        broker = Mosquitto(
            folder,
            allow_anonymous=False,
            persistence=False,
            extra_config=f"password_file {auth / 'passwd'}\nacl_file {auth / 'acl'}\n",
        )
        broker.start()
        stack.callback(broker.stop)
        worker_log = folder / "worker.log"
        command = locker_cli("cloud", "worker", "--database-url", url)
        command += ["--broker", broker.url, "--mqtt-username", WORKER_USER]
        with worker_log.open("wb") as log:
            worker = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        stack.callback(stop_pid, worker, 30)
        _wait_subscribed(worker, worker_log)
        loads: list[_Load] = []
        for n in range(options.load_processes):
            argv = ["--host", HOST, "--port", str(broker.port), "--cabinets", str(size)]
            argv += ["--index", str(n), "--of", str(options.load_processes)]
            argv += ["--credentials", str(tmp / "credentials.json")]
            argv += ["--keepalive", str(options.keepalive_s)]
            load = _Load(argv, folder / f"load-{n}.log", env=clean_env())
            stack.callback(load.stop)
            loads.append(load)
        presence = _Presence(url)
        stack.callback(presence.close)

        say(f"{size:,} cabinets: connecting")
        worker_cpu_before = cpu_s(worker.pid)
        started = time.monotonic()
        connected = _Load.ask_all(loads, {"op": "connect", "boot": 1}, PRESENCE_TIMEOUT_S)
        connect_s = time.monotonic() - started
        n_connected = sum(c["connected"] for c in connected)
        waited = presence.wait({"on@1": n_connected}, PRESENCE_TIMEOUT_S)
        presence_s = None if waited is None else round(time.monotonic() - started, 2)
        worker_ms_per_birth = 1000 * (cpu_s(worker.pid) - worker_cpu_before) / max(1, n_connected)

        say(f"{size:,} cabinets: steady state for {options.steady_s:g} s")
        roles = {
            "worker": [worker.pid],
            "broker": [broker.pid or 0],
            "load": [load.pid for load in loads],
            "postgres": presence.backends(),
        }
        before = {pid: cpu_s(pid) for pids in roles.values() for pid in pids}
        wall = time.monotonic()
        time.sleep(options.steady_s)
        wall = time.monotonic() - wall
        # A process gone meanwhile (a pooled backend closed) reads 0: left out, not negative.
        pct = {
            role: round(100 * sum(max(0.0, cpu_s(p) - before[p]) for p in pids) / wall, 2)
            for role, pids in roles.items()
        }
        worker_rss, worker_peak = memory_mb(worker.pid)
        broker_rss, _ = memory_mb(broker.pid or 0)
        loadavg_after = os.getloadavg()[0]
        status = _Load.ask_all(loads, {"op": "status"}, 60)

        say(f"{size:,} cabinets: a tenth drop")
        started = time.monotonic()
        dropped = sum(
            d["dropped"]
            for d in _Load.ask_all(loads, {"op": "drop", "every": options.drop_every}, 60)
        )
        wills_s = presence.wait({"on@1": n_connected - dropped, "off@1": dropped})
        say(f"{size:,} cabinets: they come back")
        started = time.monotonic()
        back = _Load.ask_all(loads, {"op": "reconnect", "boot": 2}, PRESENCE_TIMEOUT_S)
        reconnected = sum(b["connected"] for b in back)
        waited = presence.wait({"on@1": n_connected - dropped, "on@2": reconnected})
        back_s = None if waited is None else round(time.monotonic() - started, 2)
        # The worker goes first: the database keeps the presence measured, not the Wills the
        # load processes' exit would fire.
        stop_pid(worker, 30)
        for load in loads:
            load.finish(30)
        errors = worker_log.read_text(errors="replace").count(" ERROR ")
        return SizeFigures(
            cabinets=size,
            connected=n_connected,
            connect_s=round(connect_s, 2),
            presence_s=presence_s,
            worker_cpu_pct=pct["worker"],
            worker_rss_mb=round(worker_rss, 1),
            worker_peak_rss_mb=round(worker_peak, 1),
            broker_cpu_pct=pct["broker"],
            broker_rss_mb=round(broker_rss, 1),
            load_cpu_pct=pct["load"],
            postgres_cpu_pct=pct["postgres"] if roles["postgres"] else None,
            worker_ms_per_birth=round(worker_ms_per_birth, 2),
            dropped=dropped,
            wills_s=wills_s,
            reconnected=reconnected,
            back_s=back_s,
            closed_by_broker=sum(s["closed_by_broker"] for s in status),
            loadavg_1m=(round(loadavg_before, 2), round(loadavg_after, 2)),
            worker_errors=errors,
        )


def _wait_subscribed(worker: Any, log_path: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited: {log_path.read_text()[-1500:]}")
        if "subscribed to" in log_path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the worker did not subscribe in {timeout_s:g} s (log: {log_path})")


def as_dict(figures: Figures) -> dict[str, Any]:
    return asdict(figures)


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m locker.bench.fleet")
    roles = parser.add_subparsers(dest="role", required=True)
    load = roles.add_parser("load", help="hold a share of the cabinets' connections")
    load.add_argument("--host", default=HOST)
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--cabinets", type=int, required=True)
    load.add_argument("--index", type=int, default=0)
    load.add_argument("--of", type=int, default=1)
    load.add_argument("--credentials", required=True, help="JSON: cabinet id -> MQTT password")
    load.add_argument("--keepalive", type=int, default=60)
    args = parser.parse_args(argv)
    asyncio.run(_load_main(args))


def iter_sizes(text: str) -> Iterator[int]:
    for part in text.split(","):
        if part.strip():
            yield int(part.replace("_", "").strip())


if __name__ == "__main__":
    _main()
