"""Prove the real-service fixtures: per-test Mosquitto (auth, ACL, persistence) and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import psycopg
import pytest

from tests import services
from tests.services import Mosquitto, MqttProbe, TempDatabase


@pytest.fixture
def probes() -> Iterator[Callable[..., MqttProbe]]:
    """Open MQTT clients that are all closed at teardown."""
    opened: list[MqttProbe] = []

    def open_probe(broker: Mosquitto, client_id: str, **credentials: str) -> MqttProbe:
        probe = MqttProbe(broker, client_id, **credentials)
        opened.append(probe)
        return probe

    yield open_probe
    for probe in opened:
        probe.close()


# --- Mosquitto ------------------------------------------------------------------------------------


def test_broker_relays_a_message(mosquitto: Mosquitto, probes) -> None:
    subscriber = probes(mosquitto, "sub").connected()
    publisher = probes(mosquitto, "pub").connected()
    assert subscriber.subscribe("lockers/v1/cab1/event") == [1]

    publisher.publish("lockers/v1/cab1/event", b'{"v":1}')

    message = subscriber.next_message()
    assert (message.topic, message.payload, message.qos) == ("lockers/v1/cab1/event", b'{"v":1}', 1)


def test_password_file_refuses_a_wrong_password(mosquitto_factory, probes) -> None:
    broker = mosquitto_factory(users={"cab1": "right-secret"})

    refused = probes(broker, "intruder", username="cab1", password="wrong").connack()
    anonymous = probes(broker, "anonymous").connack()
    accepted = probes(broker, "cab1", username="cab1", password="right-secret").connack()

    assert refused.is_failure
    assert refused.getName() in {"Not authorized", "Bad user name or password"}
    assert anonymous.is_failure
    assert not accepted.is_failure


def test_acl_keeps_a_cabinet_on_its_own_topics(mosquitto_factory, probes) -> None:
    broker = mosquitto_factory(
        users={"cab1": "pw-cab1", "admin": "pw-admin"},
        acl="""
            pattern readwrite lockers/v1/%u/#

            user admin
            topic readwrite #
        """,
    )
    admin = probes(broker, "admin", username="admin", password="pw-admin").connected()
    cab1 = probes(broker, "cab1", username="cab1", password="pw-cab1").connected()
    admin.subscribe("lockers/v1/#")
    cab1.subscribe("lockers/v1/cab1/#")

    cab1.publish("lockers/v1/cab2/event", b"forbidden")
    cab1.publish("lockers/v1/cab1/event", b"allowed")

    # One publisher, one subscriber, one QoS: the broker keeps order, so had the forbidden message
    # been relayed it would have arrived before the allowed one.
    first = admin.next_message()
    assert (first.topic, first.payload) == ("lockers/v1/cab1/event", b"allowed")
    assert admin.messages.empty()
    own = cab1.next_message()
    assert (own.topic, own.payload) == ("lockers/v1/cab1/event", b"allowed")


def test_retained_message_survives_a_restart(mosquitto: Mosquitto, probes) -> None:
    publisher = probes(mosquitto, "cab1").connected()
    publisher.publish("lockers/v1/cab1/state", b'{"online":true}', retain=True)
    publisher.close()
    port, first_pid = mosquitto.port, mosquitto.pid

    mosquitto.restart()

    assert (mosquitto.port, mosquitto.running) == (port, True)
    assert mosquitto.pid != first_pid
    subscriber = probes(mosquitto, "cloud").connected()
    subscriber.subscribe("lockers/v1/+/state")
    message = subscriber.next_message()
    assert (message.payload, message.retain) == (b'{"online":true}', True)


def test_stop_ends_the_process_and_frees_the_port(mosquitto: Mosquitto) -> None:
    pid = mosquitto.pid
    assert pid is not None and services.port_accepts(mosquitto.host, mosquitto.port)

    mosquitto.stop()

    assert not mosquitto.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not services.port_accepts(mosquitto.host, mosquitto.port)


def test_kill_is_a_crash(mosquitto: Mosquitto) -> None:
    mosquitto.kill()

    assert not mosquitto.running
    assert "terminating" not in mosquitto.log()  # SIGKILL gives it no chance to shut down


# --- PostgreSQL -----------------------------------------------------------------------------------


def test_postgres_url_is_a_fresh_writable_database(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://")
    name = postgres_url.rsplit("/", 1)[1]
    assert name.startswith("locker_test_")

    with psycopg.connect(services.libpq_url(postgres_url)) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        conn.execute("CREATE TABLE parcel (id text PRIMARY KEY)")
        conn.execute("INSERT INTO parcel VALUES ('01J0000000000000000000000')")
        rows = conn.execute("SELECT id FROM parcel").fetchall()

    assert tables == (0,)
    assert rows == [("01J0000000000000000000000",)]


def test_postgres_databases_are_distinct_and_dropped(postgres_factory) -> None:
    first: TempDatabase = postgres_factory()
    second: TempDatabase = postgres_factory()
    assert first.name != second.name
    assert services.database_exists(first.name)

    # An open session must not stop the drop: teardown drops WITH (FORCE), which ends it.
    conn = psycopg.connect(first.libpq_url)
    conn.execute("CREATE TABLE t (x int)")
    conn.commit()
    first.drop()  # the very call the fixture's teardown makes
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()

    assert not services.database_exists(first.name)
    assert services.database_exists(second.name)
    first.drop()  # idempotent: teardown will call it again


# --- the missing-service policy -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ci", "outcome"),
    [("true", pytest.fail.Exception), ("1", pytest.fail.Exception), (None, pytest.skip.Exception)],
)
def test_missing_mosquitto_fails_in_ci_and_skips_elsewhere(monkeypatch, ci, outcome) -> None:
    monkeypatch.setattr(services, "MOSQUITTO_CANDIDATES", ("/nonexistent/sbin/mosquitto",))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)

    with pytest.raises(outcome, match=r"mosquitto.*\./dev services"):
        services.require_mosquitto()


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", pytest.fail.Exception), ("false", pytest.skip.Exception)]
)
def test_unreachable_postgres_fails_in_ci_and_skips_elsewhere(monkeypatch, ci, outcome) -> None:
    nobody_listens = services.free_port()
    monkeypatch.setenv(
        services.PG_ADMIN_URL_ENV, f"postgresql://postgres@127.0.0.1:{nobody_listens}/postgres"
    )
    monkeypatch.setenv("CI", ci)

    with pytest.raises(outcome, match=r"PostgreSQL is unreachable.*\./dev services"):
        services.create_database()


def test_wait_for_names_what_it_waited_for() -> None:
    with pytest.raises(TimeoutError, match="the door to close"):
        services.wait_for(lambda: False, timeout_s=0.05, what="the door to close")
    assert services.wait_for(lambda: 42, timeout_s=1, what="an answer") == 42
