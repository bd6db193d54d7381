"""Real Mosquitto and PostgreSQL for tests, the policy for a missing one, and polling helpers.

The harnesses themselves live in locker/harness/ (the demo and the benches use them too); what
is the tests' own is the rule for a missing service: skip locally, fail in CI.
"""

from __future__ import annotations

import os
import queue
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import paho.mqtt.client as mqtt
import pytest

from locker.harness import ServiceMissing
from locker.harness import mosquitto as _mosquitto
from locker.harness import postgres as _postgres
from locker.harness.mosquitto import MOSQUITTO_CANDIDATES, MOSQUITTO_PASSWD_CANDIDATES
from locker.harness.ports import HOST, free_port, port_accepts
from locker.harness.postgres import TempDatabase, database_url, libpq_url
from locker.harness.processes import find_executable, wait_for

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "HOST",
    "MOSQUITTO_CANDIDATES",
    "MOSQUITTO_PASSWD_CANDIDATES",
    "Mosquitto",
    "MqttProbe",
    "TempDatabase",
    "create_database",
    "database_exists",
    "database_url",
    "find_executable",
    "free_port",
    "libpq_url",
    "missing_service",
    "port_accepts",
    "require_mosquitto",
    "wait_for",
]

DEFAULT_PG_ADMIN_URL = _postgres.DEFAULT_ADMIN_URL
PG_ADMIN_URL_ENV = "LOCKER_TEST_PG_ADMIN_URL"
INSTALL_HINT = "run `./dev services` to install and start Mosquitto and PostgreSQL"


# --- policy ---------------------------------------------------------------------------------------


def in_ci() -> bool:
    """Tell whether we run under CI, where every real service must be present."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def missing_service(reason: str) -> NoReturn:
    """Fail the test in CI, skip it elsewhere, naming what is missing and how to get it."""
    message = f"{reason}; {INSTALL_HINT}"
    if in_ci():
        pytest.fail(f"CI needs the real service: {message}", pytrace=False)
    pytest.skip(message)


# --- Mosquitto ------------------------------------------------------------------------------------


def require_mosquitto() -> str:
    """Return the mosquitto binary's path, or skip/fail the test by the missing-service policy."""
    try:
        return _mosquitto.find_mosquitto(MOSQUITTO_CANDIDATES)
    except ServiceMissing as err:
        missing_service(str(err))


class Mosquitto(_mosquitto.Mosquitto):
    """locker/harness's broker, with the tests' rule for a missing mosquitto(_passwd)."""

    def __init__(self, workdir: Path, **options: Any) -> None:
        super().__init__(workdir, binary=require_mosquitto(), **options)

    def start(self) -> None:
        try:
            super().start()
        except ServiceMissing as err:
            missing_service(str(err))


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


def pg_admin_connect(admin_url: str | None = None) -> psycopg.Connection:
    """Connect (autocommit) as the admin role; skip/fail the test if PostgreSQL is unreachable."""
    try:
        return _postgres.admin_connect(admin_url or pg_admin_url())
    except ServiceMissing as err:
        missing_service(str(err))


def database_exists(name: str, admin_url: str | None = None) -> bool:
    """Tell whether a database of that name exists on the admin's server."""
    try:
        return _postgres.database_exists(name, admin_url or pg_admin_url())
    except ServiceMissing as err:
        missing_service(str(err))


def create_database(admin_url: str | None = None) -> TempDatabase:
    """Create an empty database with a unique `locker_test_` name."""
    try:
        return _postgres.create_database(admin_url or pg_admin_url(), "locker_test_")
    except ServiceMissing as err:
        missing_service(str(err))
