"""`locker bench fleet` end to end, small: 50 cabinets with their own credentials connect, a
tenth drop and come back, and the cloud's database ends with each one's presence right (no
timing asserted: figures are the benchmark's business, not a test's)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from locker.bench.fleet import connect_packet, publish_packet

LOCKER = Path(sys.executable).parent / "locker"


def test_fifty_cabinets_come_online_drop_a_tenth_and_come_back(tmp_path: Path) -> None:
    out, logs = tmp_path / "fleet.json", tmp_path / "logs"
    done = subprocess.run(
        [
            str(LOCKER),
            "bench",
            "fleet",
            "--cabinets",
            "50",
            "--sqlite",
            "--steady-s",
            "1",
            "--load-processes",
            "2",
            "--logs",
            str(logs),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "idle CPU" in done.stdout and "a benchmark, not a test" in done.stdout
    figures = json.loads(out.read_text())
    (size,) = figures["sizes"]
    assert size["cabinets"] == size["connected"] == 50
    assert size["dropped"] == size["reconnected"] == 5  # every tenth: 0, 10, 20, 30, 40
    for key in ("presence_s", "wills_s", "back_s"):
        assert size[key] is not None, key  # the database got there before the timeout
    assert size["closed_by_broker"] == 0 and size["worker_errors"] == 0
    assert size["worker_rss_mb"] > 0 and size["broker_rss_mb"] > 0

    # What the cloud holds at the end: all online, the dropped ones on their new boot.
    with sqlite3.connect(logs / "cloud.db") as db:
        rows = dict(db.execute("SELECT id, boot FROM cabinets WHERE online").fetchall())
    assert len(rows) == 50
    assert {cab for cab, boot in rows.items() if boot == 2} == {
        f"fleet-{n:05d}" for n in (0, 10, 20, 30, 40)
    }
    # Each cabinet logged in as itself: the broker took no anonymous client.
    broker_log = (logs / "size-50" / "mosquitto.log").read_text()
    assert "u'fleet-00007'" in broker_log and "u'<unknown>'" not in broker_log


def test_packets_are_mqtt_3_1_1() -> None:
    # CONNECT: fixed header, "MQTT" level 4, flags user|password|will retain|will QoS 1|will|clean.
    packet = connect_packet(
        client_id="c", username="u", password="p", will_topic="t", will=b"w", keepalive=60
    )
    assert packet[0] == 0x10 and packet[1] == len(packet) - 2
    assert packet[2:10] == b"\x00\x04MQTT\x04\xee" and packet[10:12] == b"\x00\x3c"
    # A PUBLISH longer than 127 bytes takes a two-byte remaining length.
    publish = publish_packet("lockers/v1/x/state", b"x" * 200, 1)
    assert publish[0] == 0x33 and publish[1] & 0x80
    assert (publish[1] & 0x7F) + (publish[2] << 7) == len(publish) - 3
