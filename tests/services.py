"""Real Mosquitto and PostgreSQL for tests, the policy for a missing one, and polling helpers."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import textwrap
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import paho.mqtt.client as mqtt
import pytest

if TYPE_CHECKING:
    import psycopg

HOST = "127.0.0.1"
# Debian puts the broker in /usr/sbin, which is not on a normal user's PATH.
MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
MOSQUITTO_PASSWD_CANDIDATES = ("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_ADMIN_URL_ENV = "LOCKER_TEST_PG_ADMIN_URL"
INSTALL_HINT = "run `./dev services` to install and start Mosquitto and PostgreSQL"

T = TypeVar("T")


# --- policy and polling ---------------------------------------------------------------------------


def in_ci() -> bool:
    """Tell whether we run under CI, where every real service must be present."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def missing_service(reason: str) -> NoReturn:
    """Fail the test in CI, skip it elsewhere, naming what is missing and how to get it."""
    message = f"{reason}; {INSTALL_HINT}"
    if in_ci():
        pytest.fail(f"CI needs the real service: {message}", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_accepts(host: str, port: int) -> bool:
    """Tell whether a TCP connection to host:port is accepted."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(
    predicate: Callable[[], T], timeout_s: float, what: str, *, interval_s: float = 0.01
) -> T:
    """Poll a condition until it holds; return its value or raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


def find_executable(candidates: tuple[str, ...]) -> str | None:
    """Return the first candidate that is an executable (a name on PATH or a path), if any."""
    for candidate in candidates:
        if found := shutil.which(candidate):
            return found
    return None


# --- Mosquitto ------------------------------------------------------------------------------------


def require_mosquitto() -> str:
    """Return the mosquitto binary's path, or skip/fail the test by the missing-service policy."""
    binary = find_executable(MOSQUITTO_CANDIDATES)
    if binary is None:
        missing_service(
            f"the mosquitto broker is not installed (looked for {MOSQUITTO_CANDIDATES})"
        )
    return binary


class Mosquitto:
    """One mosquitto process on a free loopback port, with its config and store in `workdir`."""

    host = HOST

    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        allow_anonymous: bool | None = None,
        extra_config: str = "",
    ) -> None:
        self.binary = require_mosquitto()
        self.workdir = workdir
        self.users = dict(users or {})
        self.acl = acl
        self.allow_anonymous = not self.users if allow_anonymous is None else allow_anonymous
        self.extra_config = textwrap.dedent(extra_config)
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log(self) -> str:
        """Return what the broker has logged so far (all runs)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        """Start on a fresh free port; retry if another process grabbed the port first."""
        self._write_auth_files()
        for attempt in range(3):
            self.port = free_port()
            try:
                self._spawn()
                return
            except RuntimeError:
                if attempt == 2 or "Address already in use" not in self.log():
                    raise

    def restart(self) -> None:
        """Stop gracefully (the store is saved) and start again on the same port and store."""
        self.stop()
        self._spawn()

    def stop(self, timeout_s: float = 10) -> None:
        """Send SIGTERM to the broker's pid and reap it; SIGKILL it if it does not exit in time."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would: whatever it had not saved is lost."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def _spawn(self) -> None:
        self.config_path.write_text(self._config())
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = self._process
        try:
            wait_for(
                lambda: process.poll() is not None or port_accepts(self.host, self.port),
                timeout_s=10,
                what=f"mosquitto to accept on {self.host}:{self.port}",
            )
        except TimeoutError:
            self.kill()
            raise
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {process.returncode}:\n{self.log()[-2000:]}")

    def _config(self) -> str:
        lines = [
            "# written by tests/services.py",
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "persistence true",
            "set_tcp_nodelay true",  # as deploy/compose/mosquitto.conf
            f"persistence_location {self.workdir}/",
            "max_queued_messages 1000000",
            "log_dest stderr",
        ]
        if os.geteuid() == 0:
            # Run as root, mosquitto drops to the `mosquitto` user, which cannot write its store
            # in pytest's private tmp dir (and fails to save only at shutdown): stay root.
            lines.append("user root")
        if not self.allow_anonymous:
            # As every broker we ship: the client id is the user name, so one cabinet's
            # credentials cannot take another's session (tests/security/test_mqtt_identity.py).
            # Mosquitto refuses a client without a user name under it: anonymous brokers only.
            lines.append("use_username_as_clientid true")
        if self.users:
            lines.append(f"password_file {self.workdir / 'passwd'}")
        if self.acl is not None:
            lines.append(f"acl_file {self.workdir / 'acl'}")
        return "\n".join(lines) + "\n" + self.extra_config

    def _write_auth_files(self) -> None:
        if self.users:
            tool = find_executable(MOSQUITTO_PASSWD_CANDIDATES)
            if tool is None:
                missing_service("mosquitto_passwd is not installed (it ships with mosquitto)")
            passwd = self.workdir / "passwd"
            passwd.touch(mode=0o600)
            for name, password in self.users.items():
                subprocess.run([tool, "-b", str(passwd), name, password], check=True)
        if self.acl is not None:
            (self.workdir / "acl").write_text(textwrap.dedent(self.acl).strip() + "\n")


class MqttProbe:
    """A paho client for tests: connects, subscribes, publishes, and queues what arrives."""

    def __init__(
        self,
        broker: Mosquitto,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._connacks: queue.Queue[mqtt.ReasonCode] = queue.Queue()
        self._subacks: queue.Queue[list[mqtt.ReasonCode]] = queue.Queue()
        # paho calls these on its network thread; queues hand the results to the test's thread.
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda _c, _u, _mid, reasons, _p: self._subacks.put(reasons)
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client, _userdata, _flags, reason: mqtt.ReasonCode, _props) -> None:
        if reason.is_failure:
            client.disconnect()  # a refused probe stays refused: no retry loop to wait out
        self._connacks.put(reason)

    def connack(self, timeout_s: float = 5) -> mqtt.ReasonCode:
        """Wait for the broker's CONNACK and return its reason code."""
        try:
            return self._connacks.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError(f"no CONNACK within {timeout_s:g} s") from None

    def connected(self, timeout_s: float = 5) -> MqttProbe:
        """Wait for a successful CONNACK, or raise naming the broker's reason."""
        reason = self.connack(timeout_s)
        if reason.is_failure:
            raise ConnectionError(f"broker refused the connection: {reason}")
        return self

    def subscribe(self, topic: str, qos: int = 1, timeout_s: float = 5) -> list[mqtt.ReasonCode]:
        """Subscribe and wait for the SUBACK; return the granted reason codes."""
        self.client.subscribe(topic, qos=qos)
        try:
            return self._subacks.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError(f"no SUBACK for {topic!r} within {timeout_s:g} s") from None

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Publish and, for QoS ≥ 1, wait until the broker acknowledged it."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=5)
        if not info.is_published():
            raise TimeoutError(f"broker did not acknowledge the publish to {topic!r}")

    def next_message(self, timeout_s: float = 5) -> mqtt.MQTTMessage:
        """Return the next message that arrived, waiting for one if needed."""
        try:
            return self.messages.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError(f"no message arrived within {timeout_s:g} s") from None

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


# --- PostgreSQL -----------------------------------------------------------------------------------


def pg_admin_url() -> str:
    """Return the libpq URL of a role that may create and drop databases."""
    return os.environ.get(PG_ADMIN_URL_ENV) or DEFAULT_PG_ADMIN_URL


def database_url(admin_url: str, dbname: str) -> str:
    """Return the SQLAlchemy-style URL (postgresql+psycopg) of `dbname` on the admin's server."""
    parts = urlsplit(admin_url)
    return urlunsplit(("postgresql+psycopg", parts.netloc, f"/{dbname}", parts.query, ""))


def libpq_url(url: str) -> str:
    """Drop the `+driver` from a SQLAlchemy-style URL so psycopg and psql accept it."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def pg_admin_connect(admin_url: str | None = None) -> psycopg.Connection:
    """Connect (autocommit) as the admin role; skip/fail the test if PostgreSQL is unreachable."""
    try:
        import psycopg
    except ImportError:
        missing_service("psycopg is not installed (it is in the dev extra: run `./dev setup`)")
    admin_url = admin_url or pg_admin_url()
    try:
        return psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        missing_service(f"PostgreSQL is unreachable at {admin_url} ({reason})")


def database_exists(name: str, admin_url: str | None = None) -> bool:
    """Tell whether a database of that name exists on the admin's server."""
    with pg_admin_connect(admin_url) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


@dataclass(frozen=True)
class TempDatabase:
    """A throwaway database: `url` is SQLAlchemy-style, `libpq_url` is for psycopg and psql."""

    name: str
    url: str
    admin_url: str

    @property
    def libpq_url(self) -> str:
        return libpq_url(self.url)

    def drop(self) -> None:
        """Drop the database, ending any session still connected to it; idempotent."""
        from psycopg import sql

        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(self.name)
        )
        with pg_admin_connect(self.admin_url) as conn:
            conn.execute(statement)


def create_database(admin_url: str | None = None) -> TempDatabase:
    """Create an empty database with a unique `locker_test_` name."""
    from psycopg import sql

    admin_url = admin_url or pg_admin_url()
    name = f"locker_test_{uuid.uuid4().hex[:12]}"
    with pg_admin_connect(admin_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return TempDatabase(name=name, url=database_url(admin_url, name), admin_url=admin_url)
