"""MQTT identities (issue 11, part 4): one cabinet's password cannot take another's session.

Finding: with cabinet A's password and client id `cabB`, Mosquitto closed the real cabB's
connection (a session takeover), and cabB's Last Will told the cloud it was offline; a worker's
client id could be taken the same way. One stolen cabinet credential could keep the whole fleet
offline, one cabinet after another. Every broker config we ship now pins the client id to the
user name (`use_username_as_clientid true`), and the registry gives each worker a user of its
own. These tests play the attacker against a real Mosquitto running deploy/compose/mosquitto.conf
with credentials and ACLs from the registry, and check the TLS listener the same file ships.

How a negative is proven without sleeping: Mosquitto handles one packet at a time, so a takeover
(and the Will it fires) happens while it handles the attacker's CONNECT, before the attacker's
CONNACK. Whatever is published after that CONNACK reaches a subscriber after any such Will, and
reaches the victim only on a connection that survived.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import queue
import ssl
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloud.services.registry import (
    mosquitto_acl_lines,
    mosquitto_cloud_acl_lines,
    mosquitto_password_hash,
    password_file_line,
    worker_mqtt_users,
)
from cloud.worker import MqttClient
from cloud.worker.service import subscriptions
from protocol.topics import cmd_topic, event_topic, state_topic
from tests.deploy.tools import SHIPPED_CONF, shipped_settings
from tests.services import Mosquitto, MqttProbe, free_port, port_accepts, wait_for

CAB_A, CAB_B = "cab-a", "cab-b"
PASSWORDS = {CAB_A: "password-of-a", CAB_B: "password-of-b"}
WORKER_PASSWORD = "workers-password"
WORKERS = worker_mqtt_users(workers=2)  # locker-cloud-1, locker-cloud-2
WAIT_S = 5


@pytest.fixture
def broker(mosquitto_factory, tmp_path: Path) -> Mosquitto:
    """A Mosquitto with the shipped settings and the registry's password file and ACL."""
    auth = tmp_path / "auth"
    auth.mkdir()
    lines = [password_file_line(cab, mosquitto_password_hash(pw)) for cab, pw in PASSWORDS.items()]
    lines += [password_file_line(u, mosquitto_password_hash(WORKER_PASSWORD)) for u in WORKERS]
    (auth / "passwd").write_text("\n".join(lines) + "\n")
    (auth / "passwd").chmod(0o600)
    blocks = [mosquitto_acl_lines(cab) for cab in PASSWORDS]
    blocks += [mosquitto_cloud_acl_lines(user) for user in WORKERS]
    (auth / "acl").write_text("\n\n".join(blocks) + "\n")
    return mosquitto_factory(allow_anonymous=False, extra_config=shipped_settings(auth))


@pytest.fixture
def opened() -> Iterator[list]:
    """Every client a test opens, closed at its end."""
    clients: list = []
    yield clients
    for client in clients:
        client.close() if isinstance(client, MqttProbe | Cabinet) else client.stop()


class Cabinet:
    """A cabinet's MQTT session as the daemon opens it: client id = user name = cabinet id, a
    retained birth and a retained Will saying offline. Counts its connections."""

    def __init__(self, broker: Mosquitto, cab: str, password: str) -> None:
        self.cab = cab
        self.connects = 0
        self.disconnects = 0
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._connected = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=cab,
            protocol=mqtt.MQTTv311,
        )
        self.client.username_pw_set(cab, password)
        self.client.will_set(state_topic(cab), b"offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        assert self._connected.wait(WAIT_S), f"{cab} did not connect"

    def _on_connect(self, client, _userdata, _flags, reason, _props) -> None:
        assert not reason.is_failure, reason
        self.connects += 1
        client.subscribe(cmd_topic(self.cab), qos=1)
        client.publish(state_topic(self.cab), b"online", qos=1, retain=True)
        self._connected.set()

    def _on_disconnect(self, _client, _userdata, _flags, _reason, _props) -> None:
        self.disconnects += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def worker(broker: Mosquitto, user: str, opened: list) -> MqttClient:
    """The cloud worker's real MQTT adapter, logged in as `user`, subscribed (shared)."""
    client = MqttClient(
        host=broker.host,
        port=broker.port,
        client_id=user,
        subscriptions=subscriptions(shared=True),
        username=user,
        password=WORKER_PASSWORD,
    )
    opened.append(client)
    client.start()
    wait_for(client.subscribed.is_set, WAIT_S, f"{user} to subscribe")
    return client


def next_on(messages: queue.Queue, topic: str):
    """The next message on `topic`, skipping others; TimeoutError if none comes."""
    while True:
        try:
            message = messages.get(timeout=WAIT_S)
        except queue.Empty:
            raise TimeoutError(f"nothing on {topic} within {WAIT_S} s") from None
        if message.topic == topic:
            return message


def test_a_cabinets_password_cannot_take_another_cabinets_session(
    broker: Mosquitto, opened: list
) -> None:
    """Finding: cabinet A's password with client id `cab-b` closed the real cab-b and fired its
    Will (offline). Now the broker names the attacker's session cab-a: cab-b stays connected on
    the same connection, gets a command sent afterwards, and nobody hears it went offline."""
    watcher = MqttProbe(broker, WORKERS[0], username=WORKERS[0], password=WORKER_PASSWORD)
    opened.append(watcher)
    watcher.connected()
    watcher.subscribe(state_topic(CAB_B))
    cab_b = Cabinet(broker, CAB_B, PASSWORDS[CAB_B])
    opened.append(cab_b)
    assert next_on(watcher.messages, state_topic(CAB_B)).payload == b"online"

    attacker = MqttProbe(broker, CAB_B, username=CAB_A, password=PASSWORDS[CAB_A])
    opened.append(attacker)
    attacker.connected()  # it may log in: as cab-a, whatever client id it asked for

    # After the attacker's CONNACK: a command for cab-b, and a marker on cab-b's state topic.
    watcher.publish(cmd_topic(CAB_B), b"open 3")
    watcher.publish(state_topic(CAB_B), b"online", retain=True)  # what a Will would precede
    assert next_on(cab_b.messages, cmd_topic(CAB_B)).payload == b"open 3"
    assert (cab_b.connects, cab_b.disconnects) == (1, 0)  # the same connection throughout
    assert next_on(watcher.messages, state_topic(CAB_B)).payload == b"online"  # no Will first
    # The broker knew the attacker as cab-a: only the real cab-b ever had cab-b's client id.
    log = broker.log()
    assert log.count(f" as {CAB_B} (") == 1 and log.count(f" as {CAB_A} (") == 1, log[-2000:]


def test_a_cabinets_password_cannot_take_a_workers_session(broker: Mosquitto, opened: list) -> None:
    """Finding: a cabinet's password with the worker's client id closed the worker's session.
    Now the worker stays subscribed on its one connection and still gets the events."""
    real = worker(broker, WORKERS[0], opened)
    attacker = MqttProbe(broker, WORKERS[0], username=CAB_A, password=PASSWORDS[CAB_A])
    opened.append(attacker)
    attacker.connected()

    cab_b = Cabinet(broker, CAB_B, PASSWORDS[CAB_B])
    opened.append(cab_b)
    cab_b.client.publish(event_topic(CAB_B), b"event after the attack", qos=1).wait_for_publish(
        WAIT_S
    )
    assert next_on(real.inbox, event_topic(CAB_B)).payload == b"event after the attack"
    assert real.sessions == 1 and real.connected.is_set()


def test_two_workers_with_their_own_users_both_stay_and_share_the_events(
    broker: Mosquitto, opened: list
) -> None:
    """The broker overrides the client id paho sent by the user name: our clients still work.
    Two workers, one user each, both stay connected, and the shared subscription splits the
    events between them (Mosquitto deals them round robin)."""
    one, two = (worker(broker, user, opened) for user in WORKERS)
    cab_a = Cabinet(broker, CAB_A, PASSWORDS[CAB_A])
    opened.append(cab_a)
    sent = 20
    for n in range(sent):
        cab_a.client.publish(event_topic(CAB_A), f"e{n}".encode(), qos=1).wait_for_publish(WAIT_S)
    got: dict[str, list[bytes]] = {WORKERS[0]: [], WORKERS[1]: []}

    def drain() -> int:
        for client in (one, two):
            while not client.inbox.empty():
                message = client.inbox.get()
                if message.topic == event_topic(CAB_A):  # not the (unshared) states
                    got[client.client_id].append(message.payload)
        return sum(map(len, got.values()))

    wait_for(lambda: drain() == sent, WAIT_S, "every event to arrive")
    assert sorted(got[WORKERS[0]] + got[WORKERS[1]]) == sorted(f"e{n}".encode() for n in range(20))
    assert got[WORKERS[0]] and got[WORKERS[1]], "the group did not share the load"
    assert (one.sessions, two.sessions) == (1, 1)  # neither closed the other


def test_a_worker_without_its_own_user_is_what_the_pinning_forbids(
    broker: Mosquitto, opened: list
) -> None:
    """Why one user per worker: two workers logging in as the same user get the same client
    id, and the second closes the first. The registry and compose give each its own."""
    first = MqttProbe(broker, "w-a", username=WORKERS[0], password=WORKER_PASSWORD)
    opened.append(first)
    first.connected()
    lost = threading.Event()
    first.client.on_disconnect = lambda *_args: lost.set()
    second = MqttProbe(broker, "w-b", username=WORKERS[0], password=WORKER_PASSWORD)
    opened.append(second)
    second.connected()
    assert lost.wait(WAIT_S)


# --- TLS ------------------------------------------------------------------------------------------


def _certificates(folder: Path) -> None:
    """A CA and a server certificate for 127.0.0.1/localhost, as make-trial-ca.sh makes them."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(server.public_bytes(pem))
    (folder / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (folder / "server.key").chmod(0o600)


def shipped_tls_listener(port: int, tls_dir: Path) -> str:
    """The shipped `listener 8883` block, on `port` of 127.0.0.1 and with `tls_dir`'s files."""
    lines, inside = [], False
    for line in SHIPPED_CONF.read_text().splitlines():
        words = line.split("#")[0].split()
        if words[:1] == ["listener"]:
            inside = words[1] == "8883"
            if inside:
                lines.append(f"listener {port} 127.0.0.1")
            continue
        if inside and words and words[0] in ("cafile", "certfile", "keyfile", "tls_version"):
            lines.append(line.replace("/mosquitto/tls/", f"{tls_dir}/"))
    return "\n".join(lines) + "\n"


def _trial_ca(folder: Path) -> None:
    """What an operator runs for a trial: deploy/compose/make-trial-ca.sh (openssl)."""
    script = SHIPPED_CONF.parent / "make-trial-ca.sh"
    result = subprocess.run(
        ["sh", str(script), "localhost", str(folder)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert stat.S_IMODE((folder / "server.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "ca.key").stat().st_mode) == 0o600


@pytest.mark.parametrize("make_certificates", [_certificates, _trial_ca], ids=["own-ca", "trial"])
def test_the_shipped_tls_listener_serves_mqtt_over_tls_to_the_workers_and_cabinets(
    mosquitto_factory, tmp_path: Path, opened: list, make_certificates
) -> None:
    """Finding (part 5): Mosquitto was published on all interfaces without TLS. The shipped
    8883 listener, with a CA of the test's own (made with `cryptography`, and by the shipped
    make-trial-ca.sh): a worker (LOCKER_CLOUD_MQTT_TLS, _CA_FILE) and a cabinet ([mqtt.tls] ca)
    connect with the CA; a client that does not trust the CA, and plain MQTT on the TLS port,
    get nothing."""
    tls = tmp_path / "tls"
    tls.mkdir()
    make_certificates(tls)
    auth = tmp_path / "auth"
    auth.mkdir()
    users = {CAB_A: PASSWORDS[CAB_A], WORKERS[0]: WORKER_PASSWORD}
    (auth / "passwd").write_text(
        "".join(password_file_line(u, mosquitto_password_hash(p)) + "\n" for u, p in users.items())
    )
    (auth / "acl").write_text(
        mosquitto_acl_lines(CAB_A) + "\n\n" + mosquitto_cloud_acl_lines(WORKERS[0]) + "\n"
    )
    tls_port = free_port()
    config = shipped_settings(auth) + shipped_tls_listener(tls_port, tls)
    assert "certfile" in config and "cafile" in config and "keyfile" in config
    broker = mosquitto_factory(allow_anonymous=False, extra_config=config)
    wait_for(lambda: port_accepts("127.0.0.1", tls_port), WAIT_S, "the TLS listener")

    client = MqttClient(
        host="localhost",
        port=tls_port,
        client_id=WORKERS[0],
        subscriptions=subscriptions(shared=True),
        username=WORKERS[0],
        password=WORKER_PASSWORD,
        tls=True,
        ca_file=str(tls / "ca.pem"),
    )
    opened.append(client)
    client.start()
    wait_for(client.subscribed.is_set, WAIT_S, "the worker to subscribe over TLS")

    from cabinet.mqtt_link import LinkSettings  # the cabinet's TLS settings, as its daemon has

    assert {"tls", "ca_path"} <= set(LinkSettings.__dataclass_fields__)
    cab = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=CAB_A,
        protocol=mqtt.MQTTv311,
    )
    cab.username_pw_set(CAB_A, PASSWORDS[CAB_A])
    cab.tls_set(ca_certs=str(tls / "ca.pem"))
    cab.connect("localhost", tls_port)
    cab.loop_start()
    try:
        cab.publish(event_topic(CAB_A), b"over TLS", qos=1).wait_for_publish(WAIT_S)
        assert next_on(client.inbox, event_topic(CAB_A)).payload == b"over TLS"
    finally:
        cab.disconnect()
        cab.loop_stop()

    untrusting = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    untrusting.username_pw_set(CAB_A, PASSWORDS[CAB_A])
    untrusting.tls_set()  # the system's CAs: not ours
    with pytest.raises(ssl.SSLCertVerificationError):
        untrusting.connect("localhost", tls_port)
    plain = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    plain.username_pw_set(CAB_A, PASSWORDS[CAB_A])
    refused = threading.Event()
    plain.on_connect = lambda *_args: refused.set()  # a CONNACK would set it: none must come
    plain.on_disconnect = lambda *_args: refused.set()
    plain.connect("127.0.0.1", tls_port)
    plain.loop_start()
    try:
        assert refused.wait(WAIT_S)
        assert not plain.is_connected()
    finally:
        plain.loop_stop()
    assert broker.running


# --- who logs in as whom -------------------------------------------------------------------------


def test_a_cabinet_logs_in_as_itself_only(tmp_path: Path) -> None:
    """The daemon's client id is its cabinet id; with client id = user name at the broker, its
    user name must be that id too. A config naming another cabinet's user is refused at start."""
    from cabinet.config import load_config
    from cabinet.errors import ConfigError
    from tests.deploy.tools import DEPLOY

    shipped = (DEPLOY / "cabinet-rs485-24.toml").read_text()
    env = {"LOCKER_CODE_KEY": "k" * 64, "LOCKER_MQTT__PASSWORD": "pw"}
    ok = tmp_path / "ok.toml"
    ok.write_text(shipped)
    assert load_config(ok, env).mqtt.username == load_config(ok, env).cabinet_id
    other = tmp_path / "other.toml"
    other.write_text(shipped.replace('username = "cab-0001"', 'username = "cab-0002"'))
    with pytest.raises(ConfigError) as refused:
        load_config(other, env)
    assert refused.value.key == "mqtt.username" and "cab-0001" in refused.value.message


def test_a_worker_given_a_user_takes_it_as_its_client_id(tmp_path: Path) -> None:
    """`locker cloud worker --mqtt-username locker-cloud-1` is client locker-cloud-1; asking for
    another client id beside a user is refused, as the broker would replace it anyway."""
    import secrets

    from typer.testing import CliRunner

    from locker.cli import app

    env = {"LOCKER_CLOUD_SECRET_KEY": secrets.token_hex(32), "LOCKER_CLOUD_MQTT_USERNAME": None}
    url = f"sqlite:///{tmp_path / 'none.db'}"
    args = ["cloud", "worker", "--database-url", url, "--mqtt-username", WORKERS[0]]
    result = CliRunner().invoke(app, [*args, "--client-id", "worker-x"], env=env)
    assert result.exit_code == 1
    assert f"with the broker user {WORKERS[0]!r} the client id is the user name" in result.output
