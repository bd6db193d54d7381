"""The MQTT link against a real Mosquitto and a scripted cloud peer."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cabinet.mqtt_link import LinkSettings
from protocol.codec import decode_state
from tests.cabinet.adapters.harness import CAB, CloudPeer, LinkRunner, start_link
from tests.cabinet.aio import eventually
from tests.services import Mosquitto, MqttProbe, free_port, missing_service, wait_for

LINK_PROCESS = Path(__file__).with_name("link_process.py")


def births(peer: CloudPeer) -> list[dict]:
    return [state for state in list(peer.states) if state["online"]]


async def test_birth_is_retained_and_events_go_out_in_seq_order(
    mosquitto: Mosquitto, peer: CloudPeer, runner: LinkRunner
) -> None:
    await eventually(lambda: births(peer), 5, "the birth")
    runner.emit(3)
    runner.emit(2)
    await eventually(lambda: len(peer.events) >= 5, 5, "five events")
    assert peer.seqs() == [1, 2, 3, 4, 5]
    assert {event["cab"] for event in peer.events} == {CAB}

    # A cloud that subscribes later still learns the presence: the birth is retained.
    late = MqttProbe(mosquitto, "late-dashboard").connected()
    late.subscribe(f"lockers/v1/{CAB}/state")
    message = late.next_message()
    late.close()
    birth = decode_state(message.payload, cab=CAB)
    assert message.retain and birth.online and birth.boot == runner.link.boot == 1
    assert birth.firmware == "test-1" and [c.id for c in birth.compartments or []] == ["A01"]

    # A clean stop sends no Will, so the link says goodbye itself, with the same boot.
    await runner.close()
    await eventually(lambda: not peer.states[-1]["online"], 5, "the goodbye")
    assert peer.states[-1]["boot"] == 1 and peer.states[-1]["cab"] == CAB


async def test_a_redelivery_during_a_slow_command_waits_and_is_re_acked(
    mosquitto: Mosquitto, peer: CloudPeer, tmp_path: Path
) -> None:
    started = threading.Event()
    runs: list[str] = []

    async def slow(command) -> None:
        runs.append(command.id)
        started.set()
        await asyncio.sleep(0)  # an async handler: the driver's unlock would await here
        while not release.is_set():
            await asyncio.sleep(0.01)

    release = threading.Event()
    link = await start_link(mosquitto, tmp_path / "slow.db", on_command=slow)
    try:
        await link.wait_online()
        peer.command("slow-1")
        await eventually(started.is_set, 5, "the handler to start")
        peer.command("slow-1")  # the cloud lost patience and sent it again
        release.set()
        await eventually(lambda: len(peer.acks_for("slow-1")) == 2, 5, "both acks")
        assert runs == ["slow-1"]
        assert peer.acks_for("slow-1") == [{"v": 1, "cmd": "slow-1", "ok": True}] * 2
    finally:
        await link.close()


def test_will_carries_the_boot_of_its_birth_when_the_link_dies(
    mosquitto: Mosquitto, peer: CloudPeer, tmp_path: Path
) -> None:
    journal_path = tmp_path / "journal.db"
    for run in (1, 2):
        process = subprocess.Popen(
            [
                sys.executable,
                str(LINK_PROCESS),
                mosquitto.host,
                str(mosquitto.port),
                CAB,
                str(journal_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        assert process.stdout.readline().split() == ["online", str(run)]
        wait_for(lambda: len(births(peer)) >= run, 5, f"birth {run}")  # noqa: B023
        process.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker must send the Will
        process.wait()
        wait_for(lambda: len(peer.states) >= 2 * run, 5, f"will {run}")  # noqa: B023
        birth, will = peer.states[-2:]
        assert birth["online"] and not will["online"]
        assert birth["boot"] == will["boot"] == run  # the boot rose with the new connection


async def test_events_journalled_while_the_broker_is_down_arrive_after_its_restart(
    mosquitto: Mosquitto, peer: CloudPeer, runner: LinkRunner
) -> None:
    runner.emit(2)
    await eventually(lambda: len(peer.events) == 2, 5, "two events")
    mosquitto.stop()
    await runner.wait_online(False)
    assert not runner.link.subscribed.is_set()  # a new connection must be granted them again
    offline = runner.emit(5)  # deposits go on while the cloud is unreachable
    assert [event.seq for event in offline] == [3, 4, 5, 6, 7]
    mosquitto.restart()
    await runner.wait_online()
    runner.emit(1)
    await eventually(lambda: 8 in peer.seqs(), 10, "seq 8")
    seqs = peer.seqs()
    # Unacked 1 and 2 come again after the reconnect; nothing is lost and each run is in order.
    assert sorted(set(seqs)) == list(range(1, 9))
    after = seqs[seqs.index(3) - 2 :]
    assert after == [1, 2, 3, 4, 5, 6, 7, 8]


async def test_unacked_events_are_resent_on_reconnect_until_event_ack(
    mosquitto: Mosquitto, peer: CloudPeer, runner: LinkRunner
) -> None:
    runner.emit(3)
    await eventually(lambda: len(peer.events) == 3, 5, "three events")
    mosquitto.restart()
    await eventually(lambda: len(peer.events) == 6, 10, "the three again after the reconnect")
    assert peer.seqs() == [1, 2, 3, 1, 2, 3]

    peer.event_ack(3)
    await eventually(lambda: runner.journal.unacked() == [], 5, "the journal to prune")
    mosquitto.restart()
    await eventually(lambda: len(births(peer)) == 3, 10, "the third birth")
    runner.emit(1)
    await eventually(lambda: 4 in peer.seqs(), 10, "seq 4")
    assert peer.seqs() == [1, 2, 3, 1, 2, 3, 4]  # acked events were not sent again


async def test_unacked_events_are_resent_when_no_event_ack_comes_while_connected(
    mosquitto: Mosquitto, peer: CloudPeer, tmp_path: Path
) -> None:
    # A cloud worker that dies holding events loses them with its clean session; the cabinet
    # stays connected, so only a re-send on silence gets them to another worker.
    now = [datetime(2026, 11, 23, 12, 0, tzinfo=UTC)]
    runner = await start_link(
        mosquitto, tmp_path / "journal.db", clock=lambda: now[0], resend_unacked_after_s=60
    )
    try:
        await runner.wait_online()
        runner.emit(2)
        await eventually(lambda: peer.seqs() == [1, 2], 5, "the two events")

        now[0] += timedelta(seconds=59)
        assert runner.link.resend_if_stalled() == 0  # not stalled yet

        now[0] += timedelta(seconds=1)
        assert runner.link.resend_if_stalled() == 2
        await eventually(lambda: peer.seqs() == [1, 2, 1, 2], 5, "the re-send, in seq order")

        peer.event_ack(2)
        await eventually(lambda: runner.journal.unacked() == [], 5, "the journal to prune")
        now[0] += timedelta(hours=1)
        assert runner.link.resend_if_stalled() == 0  # all acked: nothing to re-send
    finally:
        await runner.close()


async def test_a_command_runs_once_however_often_it_arrives_and_is_always_acked(
    peer: CloudPeer, runner: LinkRunner, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    peer.command("cmd-1")
    peer.command("cmd-1")  # the cloud retried
    await eventually(lambda: len(peer.acks_for("cmd-1")) == 2, 5, "two acks of cmd-1")
    assert [c.id for c in runner.executed] == ["cmd-1"]
    assert peer.acks_for("cmd-1") == [{"v": 1, "cmd": "cmd-1", "ok": True}] * 2

    # The answer is in the journal: a link restarted on it still does not run cmd-1 again.
    await runner.close()
    again = await start_link(mosquitto, tmp_path / "journal.db")
    try:
        await again.wait_online()
        peer.command("cmd-1")
        await eventually(lambda: len(peer.acks_for("cmd-1")) == 3, 5, "the third ack")
        assert again.executed == []
    finally:
        await again.close()


async def test_expired_commands_are_dropped_with_an_ack(
    peer: CloudPeer, runner: LinkRunner
) -> None:
    peer.command("old-1", expires_in_s=-60)
    await eventually(lambda: peer.acks_for("old-1"), 5, "the ack of old-1")
    [ack] = peer.acks_for("old-1")
    assert ack["ok"] is False and ack["error"].startswith("expired at ")
    assert runner.executed == []


async def test_a_malformed_command_is_acked_with_its_reason_and_the_link_goes_on(
    peer: CloudPeer, runner: LinkRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cabinet.mqtt_link")
    peer.command("bad-1", data={"compartment": "A01", "in_service": "no"})
    peer.command("bad-2", type="door.explode")
    peer.publish(f"lockers/v1/{CAB}/cmd", b"\xff not json")  # no id to ack: only logged
    peer.publish(f"lockers/v1/{CAB}/event-ack", b'{"v":1,"upto":"all"}')
    peer.command("good-1")
    await eventually(lambda: peer.acks_for("good-1"), 5, "the ack of good-1")
    [bad1], [bad2] = peer.acks_for("bad-1"), peer.acks_for("bad-2")
    assert bad1["ok"] is False and "data.in_service" in bad1["error"]
    assert bad2["ok"] is False and "unknown command type 'door.explode'" in bad2["error"]
    assert peer.acks_for("good-1") == [{"v": 1, "cmd": "good-1", "ok": True}]
    assert [c.id for c in runner.executed] == ["good-1"]
    assert "payload is not UTF-8" in caplog.text and "rejected event-ack" in caplog.text


async def test_a_failing_handler_gets_its_error_acked(
    mosquitto: Mosquitto, peer: CloudPeer, tmp_path: Path
) -> None:
    async def refuse(command) -> str:
        return f"compartment {command.data.compartment} holds a parcel"

    def explode(_command) -> None:
        raise RuntimeError("driver unplugged")

    for handler, expected in (
        (refuse, "compartment A01 holds a parcel"),
        (explode, "driver unplugged"),
    ):
        link = await start_link(mosquitto, tmp_path / f"{expected[:5]}.db", on_command=handler)
        try:
            await link.wait_online()
            command_id = f"c-{expected[:5]}"
            peer.command(command_id)
            await eventually(lambda: peer.acks_for(command_id), 5, "the ack")  # noqa: B023
            assert peer.acks_for(command_id) == [
                {"v": 1, "cmd": command_id, "ok": False, "error": expected}
            ]
        finally:
            await link.close()


ACL = """
pattern readwrite lockers/v1/%u/#
user cloud
topic readwrite lockers/v1/#
"""


async def test_per_cabinet_credentials_and_acl(
    mosquitto_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = mosquitto_factory(users={CAB: "cab-pw", "cab2": "other", "cloud": "cloud-pw"}, acl=ACL)
    peer = CloudPeer(broker, username="cloud", password="cloud-pw")
    link = await start_link(broker, tmp_path / "ok.db", username=CAB, password="cab-pw")
    try:
        await link.wait_online()
        await eventually(lambda: births(peer), 5, "the birth through the ACL")
        link.emit(1)
        await eventually(lambda: peer.seqs() == [1], 5, "the event through the ACL")
        peer.command("acl-1")
        await eventually(lambda: peer.acks_for("acl-1"), 5, "the ack through the ACL")
    finally:
        await link.close()

    caplog.set_level(logging.WARNING, logger="cabinet.mqtt_link")
    wrong = await start_link(broker, tmp_path / "wrong.db", username=CAB, password="guess")
    try:
        await eventually(
            lambda: "refused cabinet 'cab1'" in caplog.text, 5, "the refusal to be logged"
        )
        assert "Not authorized" in caplog.text or "not authorised" in caplog.text.lower()
        assert not wrong.link.online.is_set()
        assert wrong.link.last_error is not None
    finally:
        await wrong.close()
        peer.close()


def test_settings_and_journal_must_name_the_same_cabinet(tmp_path: Path) -> None:
    from cabinet.journal import Journal
    from cabinet.mqtt_link import MqttLink

    with Journal.open(tmp_path / "j.db", cab="cab2") as journal, pytest.raises(ValueError):
        MqttLink(
            LinkSettings(cab=CAB, host="127.0.0.1"),
            journal,
            on_command=lambda _c: None,
            compartments=list,
        )


def make_certificates(directory: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (openssl CLI)."""
    if shutil.which("openssl") is None:
        missing_service("the openssl command is not installed (Debian: apt-get install openssl)")
    paths = {name: directory / f"{name}.pem" for name in ("ca", "ca-key", "server", "server-key")}

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(paths["ca-key"]),
        "-out",
        str(paths["ca"]),
    )
    csr = directory / "server.csr"
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(paths["server-key"]),
        "-out",
        str(csr),
    )
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(paths["ca"]),
        "-CAkey",
        str(paths["ca-key"]),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(paths["server"]),
    )
    return paths


async def test_tls_with_the_cabinets_ca_and_a_clear_error_without_it(
    mosquitto_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certs = make_certificates(tmp_path)
    tls_port = free_port()
    broker = mosquitto_factory(
        extra_config=f"""
        listener {tls_port} 127.0.0.1
        cafile {certs["ca"]}
        certfile {certs["server"]}
        keyfile {certs["server-key"]}
        """
    )
    peer = CloudPeer(broker)  # on the plain listener
    link = await start_link(broker, tmp_path / "tls.db", port=tls_port, ca_path=str(certs["ca"]))
    try:
        await link.wait_online()
        link.emit(1)
        await eventually(lambda: peer.seqs() == [1], 5, "the event sent over TLS")
    finally:
        await link.close()

    caplog.set_level(logging.WARNING, logger="cabinet.mqtt_link")
    untrusted = await start_link(broker, tmp_path / "untrusted.db", port=tls_port, tls=True)
    try:
        await eventually(
            lambda: "CERTIFICATE_VERIFY_FAILED" in caplog.text, 5, "the TLS error logged"
        )
        assert not untrusted.link.online.is_set()
    finally:
        await untrusted.close()
        peer.close()
