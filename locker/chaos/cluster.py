"""The campaign's processes: the demo's stack over Mosquitto and PostgreSQL, every link proxied.

    Mosquitto (harness, the registry's passwords and ACL, persistence on)
      ├─ proxy broker-cab-1..3   ── cabinet daemon cab-n  (on its simulated lock board)
      └─ proxy broker-worker-1,2 ── cloud worker n
    PostgreSQL (the machine's server; a database of the run's own, dropped at the end)
      └─ proxy postgres          ── the API and both workers (the seeding too)

The machine's PostgreSQL is shared with others, so it is never restarted: its outages are the
proxy's (`refuse` resets every connection and turns new ones away). A process is killed with
SIGKILL and started again with the same command line and environment (`restart`), by its pid.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import time as wall_time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from locker.chaos.plants import plant_dir
from locker.chaos.proxy import Proxy
from locker.demo.stack import (
    CLOUD_MQTT_USER,
    HOST,
    CabinetInfo,
    DemoInfo,
    DemoStack,
    Options,
    _clean_env,
    _die_with_parent,
    _locker,
)
from locker.harness.mosquitto import Mosquitto
from locker.harness.postgres import TempDatabase, create_database
from locker.harness.processes import kill_pid

CABINETS = 3
WORKERS = 2
RESEND_UNACKED_AFTER_S = 5.0
SCAN_QR_REFRESH_S = 5.0  # deployed: 60 s
RESTART_SEC = 2.0  # as deploy/systemd's units


@dataclass
class ClusterOptions:
    data_dir: Path
    pg_admin_url: str
    site_time: wall_time | None = None
    plant: str | None = None  # a planted bug for the cloud processes (locker.chaos.plants)


class _ProxiedStack(DemoStack):
    """The demo's stack with a broker proxy per cabinet and per worker, and respawnable children."""

    # The checker reads every webhook the ERP got; a 1,000-cycle run gets about 1,300. Found when
    # the demo's bound of 500 made a campaign's early parcels look never delivered.
    receiver_kept = None

    def __init__(self, options: Options, cluster: Cluster) -> None:
        super().__init__(options)
        self.cluster = cluster
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}

    def _cloud_env(self, info: DemoInfo) -> dict[str, str]:
        env = super()._cloud_env(info)
        if self.cluster.options.plant:
            folder = plant_dir(self.cluster.options.plant, self.cluster.options.data_dir)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
        return env

    def _start_cloud(self, info: DemoInfo) -> None:
        env = self._cloud_env(info)
        port = str(self._ports["api"])
        # One cloud, one time: the API lives on the workers' moved clock (their scan-to-open
        # codes, its nonces and sessions, the doors it holds for the ERP all agree).
        args = ["cloud", "serve", "--host", HOST, "--port", port, "--follow-clock-offset"]
        self._spawn("cloud-api", args, env)
        users = self._worker_users()
        for n in range(1, WORKERS + 1):
            proxy = self.cluster.proxies[f"worker-{n}"]
            args = ["cloud", "worker", "--broker", f"mqtt://{HOST}:{proxy.port}"]
            args += ["--mqtt-username", users[n - 1], "--shared", "--resend-interval-s", "2"]
            self._spawn(f"cloud-worker-{n}", args, env)

    def _start_cabinets(self, info: DemoInfo) -> None:
        for n, cabinet in enumerate(info.cabinets, start=1):
            port = str(self._ports[f"sim-{n}"])
            args = ["sim", "--boards", "1", "--locks", str(len(cabinet.doors))]
            args += ["--link", str(cabinet.tty_link), "--control-port", port]
            args += ["--pulse-log", str(pulse_dir(cabinet))]
            self._spawn(f"sim-{cabinet.id}", args, _clean_env())
        for n, cabinet in enumerate(info.cabinets, start=1):
            self._wait(
                lambda c=cabinet: c.tty_link.exists() and self._answers(f"{c.sim_url}/state"),
                f"the simulator of {cabinet.id}",
            )
            proxy = self.cluster.proxies[cabinet.id]
            config = self._daemon_config(info, cabinet, n, HOST, proxy.port)
            cabinet.config_path.write_text(config)
            cabinet.config_path.chmod(0o600)
            args = ["cabinet", "run", "--config", str(cabinet.config_path)]
            # The clock the nemesis skews: the wall clock plus the seconds in this file.
            clock_offset_file(cabinet).write_text("0\n")
            env = _clean_env() | {CABINET_CLOCK_ENV: str(clock_offset_file(cabinet))}
            self._spawn(f"cabinet-{cabinet.id}", args, env)

    def _daemon_config(
        self, info: DemoInfo, cabinet: CabinetInfo, n: int, host: str, port: int
    ) -> str:
        import tomllib

        from locker.cloud_registry_command import to_toml

        config = tomllib.loads(super()._daemon_config(info, cabinet, n, host, port))
        # A campaign's faults lose events in flight often: the cabinet sends them again after
        # 5 s without an event-ack (deployed: 60 s), so a run is not mostly waiting.
        config["mqtt"]["keepalive_s"] = 5
        config["mqtt"]["resend_unacked_after_s"] = RESEND_UNACKED_AFTER_S
        # The workers' clock jumps days ahead every round and the API's with it: a screen's
        # scan QR fetched before a jump is days old after it ("scan the screen again"). Real
        # days would have seen the QR fetched again many times; here it is fetched every 5 s.
        config["scan_qr_refresh_s"] = SCAN_QR_REFRESH_S
        return to_toml(config)

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.commands[name] = (args, env)
        super()._spawn(name, args, env)

    def restart(self, name: str) -> None:
        """kill -9 the process by its pid, then start it again as it was started."""
        with self.cluster.lock:
            self.cluster.spawner.submit(self._restart, name).result()

    def _restart(self, name: str) -> None:
        import subprocess

        index = next(i for i, (n, _p) in enumerate(self.processes) if n == name)
        kill_pid(self.processes[index][1])
        args, env = self.commands[name]
        log = (self.data_dir / "logs" / f"{name}.log").open("ab")
        with log:
            process = subprocess.Popen(
                [_locker(), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.data_dir,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.processes[index] = (name, process)


class Cluster:
    """Start everything (`start`), fault it (`restart`, `proxies`, `broker`), stop everything.

    It also plays systemd's part (deploy/systemd: `Restart=on-failure`, `RestartSec=2`): a
    process that exits on its own (the API finding PostgreSQL refusing at start) is started
    again two seconds later, and `supervised` lists each such restart.
    """

    def __init__(self, options: ClusterOptions, *, echo=lambda _line: None) -> None:
        self.options = options
        self.lock = threading.RLock()
        # Every restart is started from this one thread, which lives as long as the campaign:
        # a child's PR_SET_PDEATHSIG fires when the *thread* that started it ends, so children
        # started from the nemesis's thread would get SIGTERM when the nemesis stops, and
        # children started from a short-lived thread would outlive a killed campaign.
        self.spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")
        self.supervised: list[tuple[str, int | None]] = []  # (process, its exit status)
        self._exited_at: dict[str, float] = {}
        self._supervising = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.echo = echo
        self.proxies: dict[str, Proxy] = {}
        self.database: TempDatabase | None = None
        self.broker: Mosquitto | None = None
        self.stack: _ProxiedStack | None = None
        self.info: DemoInfo | None = None

    def start(self) -> DemoInfo:
        self.database = create_database(self.options.pg_admin_url, prefix="locker_chaos_")
        pg = urlsplit(self.database.url)
        self.proxies["postgres"] = Proxy(
            "postgres", pg.port or 5432, target_host=pg.hostname or HOST
        ).start()
        netloc = pg.netloc.rsplit("@", 1)
        userinfo = netloc[0] + "@" if len(netloc) == 2 else ""
        proxied_url = urlunsplit(
            (pg.scheme, f"{userinfo}{HOST}:{self.proxies['postgres'].port}", pg.path, pg.query, "")
        )
        options = Options(
            data_dir=self.options.data_dir,
            cabinets=CABINETS,
            http_port=0,
            database_url=proxied_url,
            workers=WORKERS,
            shared=True,
            cloud_mqtt_username=CLOUD_MQTT_USER,
            cloud_mqtt_password=_cloud_password(),
            language="en",
            site_time=self.options.site_time,
        )
        self.stack = _ProxiedStack(options, self)
        self.stack.echo = self.echo
        info = self.stack.prepare()
        folder = info.data_dir / "mosquitto"
        self.broker = Mosquitto(
            folder,
            acl=(folder / "acl").read_text(),
            allow_anonymous=False,
            extra_config=f"password_file {folder / 'passwd'}\nautosave_interval 5\n",
        )
        self.broker.start()
        for cabinet in info.cabinets:
            self.proxies[cabinet.id] = Proxy(cabinet.id, self.broker.port, mqtt=True).start()
        for n in range(1, WORKERS + 1):
            name = f"worker-{n}"
            self.proxies[name] = Proxy(name, self.broker.port, mqtt=True).start()
        options.broker_url = self.broker.url
        self.info = self.stack.start()
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self._supervising.set()
        self._supervisor.start()
        return self.info

    def _supervise(self) -> None:
        assert self.stack is not None
        while self._supervising.is_set():
            with self.lock:
                now = time.monotonic()
                for name, process in list(self.stack.processes):
                    if process.poll() is None:
                        self._exited_at.pop(name, None)
                        continue
                    exited = self._exited_at.setdefault(name, now)
                    if now - exited >= RESTART_SEC:
                        self.supervised.append((name, process.returncode))
                        self._exited_at.pop(name, None)
                        self.spawner.submit(self.stack._restart, name).result()
            time.sleep(0.25)

    @property
    def cabinets(self) -> list[CabinetInfo]:
        assert self.info is not None
        return self.info.cabinets

    def restart(self, name: str) -> None:
        assert self.stack is not None
        self.stack.restart(name)

    def crash_broker(self) -> None:
        """kill -9 the broker and start it again on its port and store."""
        assert self.broker is not None
        self.broker.kill()
        self.broker.respawn()

    def heal_network(self) -> None:
        for proxy in self.proxies.values():
            proxy.heal()

    def wait_all_running(self, timeout_s: float = 30.0) -> None:
        """Until every process runs (the supervisor restarts those that exited)."""
        assert self.stack is not None
        deadline = time.monotonic() + timeout_s
        while any(p.poll() is not None for _n, p in self.stack.processes):
            if time.monotonic() > deadline:
                raise RuntimeError("processes stay down after healing")
            time.sleep(0.2)

    def stop(self, *, keep_database: bool = False) -> None:
        self._supervising.clear()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        if self.stack is not None:
            with contextlib.suppress(Exception):
                self.stack.stop()
        if self.broker is not None:
            self.broker.stop()
        for proxy in self.proxies.values():
            proxy.stop()
        self.spawner.shutdown(wait=True)
        if self.database is not None and not keep_database:
            self.database.drop()


CABINET_CLOCK_ENV = "LOCKER_CABINET_CLOCK_OFFSET_FILE"


def clock_offset_file(cabinet: CabinetInfo) -> Path:
    """The file whose seconds the cabinet's daemon adds to its clock (the nemesis's skew)."""
    return cabinet.dir / "clock-offset-s"


def pulse_dir(cabinet: CabinetInfo) -> Path:
    """The folder where the cabinet's simulator logs every unlock pulse, a file per board."""
    return cabinet.dir / "pulses"


def _cloud_password() -> str:
    import secrets

    return secrets.token_urlsafe(18)
