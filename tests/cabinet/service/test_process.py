"""The daemon as a process: `locker cabinet run`, SIGTERM, bad config, and kill -9 mid-flow."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx

from firmware_sim import PtyServer, SimulatedBus
from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.service.harness import (
    CHANNELS,
    COURIER,
    PHONE,
    PIN,
    put_code_to_process,
    put_courier_to_process,
)
from tests.cabinet.service.process import Daemon, run_cli, write_config
from tests.services import Mosquitto, free_port, wait_for

Sim = tuple[SimulatedBus, PtyServer]


def test_run_comes_online_and_stops_cleanly_on_sigterm(
    tmp_path: Path, mosquitto: Mosquitto, peer: CloudPeer, sim: Sim
) -> None:
    kiosk_port = free_port()
    config = write_config(
        tmp_path / "cab.toml",
        broker=mosquitto,
        serial_port=str(sim[1].link),
        kiosk_port=kiosk_port,
    )
    process = run_cli(config)
    try:
        wait_for(
            lambda: any(s["online"] for s in list(peer.states)) or process.poll() is not None,
            20,
            "the daemon's birth",
        )
        assert process.poll() is None, process.communicate()
        (birth,) = [s for s in peer.states if s["online"]]
        assert birth["cab"] == "cab1" and birth["boot"] == 1
        assert {c["id"]: c["state"] for c in birth["compartments"]} == dict.fromkeys(
            CHANNELS, "free"
        )
        # The same process serves the touchscreen, on the configured port of 127.0.0.1.
        status = httpx.get(f"http://127.0.0.1:{kiosk_port}/api/status", timeout=5).json()
        assert status["cabinet_id"] == "cab1" and status["online"] is True
        assert status["free_by_size"] == {"S": 1, "M": 1, "L": 1, "XL": 1}
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    wait_for(lambda: not peer.states[-1]["online"], 5, "the offline state")
    assert peer.states[-1]["boot"] == 1
    assert "stopped" in err


def test_run_refuses_a_bad_config_naming_the_key(
    tmp_path: Path, mosquitto: Mosquitto, sim: Sim
) -> None:
    config = write_config(
        tmp_path / "cab.toml",
        broker=mosquitto,
        serial_port=str(sim[1].link),
    )
    config.write_text(config.read_text().replace("channel = 4\n", "channel = 30\n"))
    process = run_cli(config)
    _out, err = process.communicate(timeout=20)
    assert process.returncode == 2, err
    assert "layout.compartments[3].channel" in err and "channel 30" in err
    assert not (tmp_path / "journal.sqlite3").exists()  # nothing was touched
    assert sim[0].board(1).doors[4].pulses == 0


# --- kill -9 ----------------------------------------------------------------------------------


class AckingPeer(CloudPeer):
    """A cloud that acks every event as soon as it has it (as the real cloud does on commit)."""

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        super()._on_message(client, userdata, message)
        if message.topic.endswith("/event"):
            seq = max(e["seq"] for e in self.events + self.redelivered)
            client.publish("lockers/v1/cab1/event-ack", f'{{"v":1,"upto":{seq}}}', qos=1)


def check_events(peer: CloudPeer, types: list[str]) -> list[dict[str, Any]]:
    """Every seq arrived, in one version each: seqs 1..n, one id per seq, no id twice."""
    received = list(peer.events) + list(peer.redelivered)
    by_seq: dict[int, set[str]] = {}
    for event in received:
        by_seq.setdefault(event["seq"], set()).add(event["id"])
    assert sorted(by_seq) == list(range(1, len(types) + 1)), sorted(by_seq)
    assert all(len(ids) == 1 for ids in by_seq.values()), by_seq  # a resend, never a new event
    first = {e["seq"]: e for e in reversed(received)}
    assert [first[seq]["type"] for seq in sorted(first)] == types
    return [first[seq] for seq in sorted(first)]


def _online_then_choose_a_door(
    daemon: Daemon, peer: CloudPeer, tracking_no: str, size: str
) -> tuple[str, int]:
    """Once the daemon is online with a courier: sign in, enter a parcel, choose a size; the
    door the daemon opened and its channel."""
    wait_for(lambda: peer.states and peer.states[-1]["online"], 10, "the first birth")
    put_courier_to_process(peer)
    daemon.submit("CourierSignIn", courier_id=COURIER, pin=PIN)
    daemon.submit("TrackingEntered", tracking_no=tracking_no)
    daemon.submit("PhoneEntered", phone=PHONE)
    (opening,) = daemon.submit("SizeChosen", size=size)
    return opening["compartment"], CHANNELS[opening["compartment"]]


def test_kill_9_mid_deposit_and_mid_pickup(tmp_path: Path, mosquitto: Mosquitto, sim: Sim) -> None:
    bus, server = sim
    peer = AckingPeer(mosquitto)
    config = write_config(tmp_path / "cab.toml", broker=mosquitto, serial_port=str(server.link))
    log_path = tmp_path / "daemon.log"
    daemon = Daemon(config, log_path)
    try:
        compartment, channel = _online_then_choose_a_door(daemon, peer, "SF3001", "M")
        assert bus.board(1).doors[channel].pulses == 1
        bus.person.put_parcel(1, channel)

        daemon.kill()  # after the unlock, before the door shut and the confirm
        daemon = Daemon(config, log_path)
        assert daemon.door(compartment) == "open"  # read at restart, not believed shut
        bus.person.close_door(1, channel)
        wait_for(
            lambda: daemon.cabinet()["session"]["draft"]["door_cycled"], 5, "the door seen shut"
        )
        (deposited,) = daemon.submit("Confirm")
        assert deposited["type"] == "Deposited" and deposited["compartment"] == compartment
        parcel_id = deposited["parcel_id"]
        # The next parcel of the same size gets another door.
        daemon.submit("TrackingEntered", tracking_no="SF3002")
        daemon.submit("PhoneEntered", phone=PHONE)
        (other,) = daemon.submit("SizeChosen", size="M")
        assert other["compartment"] not in (compartment, None)
        wait_for(lambda: daemon.door(other["compartment"]) == "open", 5, "the other door open")
        bus.person.close_door(1, CHANNELS[other["compartment"]])
        wait_for(lambda: daemon.door(other["compartment"]) == "closed", 5, "it seen shut")
        daemon.submit("Cancel")
        daemon.submit("CourierSignOut")
        wait_for(lambda: len(peer.events) >= 1, 10, "parcel.deposited at the peer")

        put_code_to_process(peer, parcel_id, compartment, "24681357", "cmd-codes")
        (doors,) = daemon.submit("CodeEntered", code="24681357")
        assert doors["compartments"] == [compartment]
        wait_for(lambda: bus.board(1).doors[channel].pulses >= 2, 5, "the pickup unlock")
        wait_for(lambda: daemon.door(compartment) == "open", 5, "the pickup door seen open")
        bus.person.take_parcel(1, channel)

        daemon.kill()  # after the door opened, before it shut
        daemon = Daemon(config, log_path)
        assert daemon.door(compartment) == "open"
        bus.person.close_door(1, channel)
        wait_for(lambda: not daemon.cabinet()["parcels"], 5, "the pickup finished")
        wait_for(lambda: len({e["seq"] for e in peer.events}) >= 2, 10, "picked_up at the peer")
        events = check_events(peer, ["parcel.deposited", "parcel.picked_up"])
        assert events[0]["data"]["parcel_id"] == events[1]["data"]["parcel_id"] == parcel_id
        assert daemon.cabinet()["compartments"][compartment]["state"] == "free"
        assert bus.board(1).doors[channel].pulses == 2  # no door opened twice by the restarts
        assert daemon.terminate() == 0
    finally:
        if daemon.process.poll() is None:
            daemon.kill()
        peer.close()


def test_kill_9_after_the_deposit_door_shut_and_right_after_the_code(
    tmp_path: Path, mosquitto: Mosquitto, sim: Sim
) -> None:
    bus, server = sim
    peer = AckingPeer(mosquitto)
    config = write_config(tmp_path / "cab.toml", broker=mosquitto, serial_port=str(server.link))
    log_path = tmp_path / "daemon.log"
    daemon = Daemon(config, log_path)
    try:
        compartment, channel = _online_then_choose_a_door(daemon, peer, "SF5001", "S")
        wait_for(lambda: daemon.door(compartment) == "open", 5, "the deposit door seen open")
        bus.person.put_parcel(1, channel)
        bus.person.close_door(1, channel)
        wait_for(
            lambda: daemon.cabinet()["session"]["draft"]["door_cycled"], 5, "the door seen shut"
        )

        daemon.kill()  # the parcel is in and the door shut; the courier has not confirmed
        daemon = Daemon(config, log_path)
        assert daemon.door(compartment) == "closed"
        (deposited,) = daemon.submit("Confirm")  # the session survived: the courier confirms
        assert deposited["compartment"] == compartment
        parcel_id = deposited["parcel_id"]
        daemon.submit("CourierSignOut")
        put_code_to_process(peer, parcel_id, compartment, "11223344", "cmd-codes")
        daemon.submit("CodeEntered", code="11223344")

        daemon.kill()  # the unlock was driven; the door may not have been seen open yet
        daemon = Daemon(config, log_path)
        # The door sprang open at the unlock: read at restart, an expected opening (no alarm).
        assert daemon.door(compartment) == "open"
        bus.person.take_parcel(1, channel)
        bus.person.close_door(1, channel)
        wait_for(lambda: not daemon.cabinet()["parcels"], 5, "the pickup finished")
        wait_for(lambda: len({e["seq"] for e in peer.events}) >= 2, 10, "picked_up at the peer")
        check_events(peer, ["parcel.deposited", "parcel.picked_up"])
        assert daemon.terminate() == 0
    finally:
        if daemon.process.poll() is None:
            daemon.kill()
        peer.close()
