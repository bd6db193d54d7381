"""`locker demo` as a newcomer runs it: it comes up, every URL it prints answers, Ctrl-C or SIGTERM
stops every process it started (checked by pid), and `locker demo --story` exits 0.

These run the real command in a subprocess, on SQLite and the embedded broker, as on a fresh
machine; the same story over Mosquitto and PostgreSQL is in test_story_e2e.py."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.services import wait_for

LOCKER = Path(sys.executable).with_name("locker")
READY_S = 60


class Demo:
    """`locker demo` in a subprocess, its output collected line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [str(LOCKER), "demo", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for_line(self, text: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if text in line:
                return line
        raise AssertionError(f"`locker demo` never printed {text!r}:\n{''.join(self.output)}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._reader.join(timeout=5)


@pytest.fixture
def demos():
    started: list[Demo] = []
    yield started
    for demo in started:
        demo.close()


def alive(pid: int) -> bool:
    """Whether a process with that pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_demo_serves_every_url_it_prints_and_stops_leaving_nothing_running(
    tmp_path: Path, demos: list[Demo], stop_signal: signal.Signals
) -> None:
    data = tmp_path / "demo"
    demo = Demo("--data", str(data), "--http-port", "0", "--cabinets", "2", "--language", "en")
    demos.append(demo)
    ready = demo.wait_for_line("Ready in", READY_S)
    demo.wait_for_line("Ctrl-C stops the demo", 5)
    info = json.loads((data / "demo.json").read_text())
    text = "".join(demo.output)
    shown = ("notices_url", "docs_url", "erp_receiver_url", "erp_key", "carrier_key")
    for url in (*(info[k] for k in shown), info["technician_pin"]):
        assert url in text  # every URL and credential is on the screen
    assert info["erp_webhook_id"] in text  # the shop's webhook, registered at start
    for courier in info["couriers"]:
        assert courier["id"] in text and courier["pin"] in text
    assert info["console_url"] in text
    for username, (_role, password) in info["console_accounts"].items():
        assert username in text and password in text
    with httpx.Client(timeout=10) as http:
        # The console signs the printed manager in (the session cookie is Secure: a browser
        # keeps it on 127.0.0.1; httpx's jar would not send it back over plain HTTP).
        form = http.get(f"{info['console_url']}/sign-in")
        assert form.status_code == 200
        token = form.text.split('name="csrf" value="')[1].split('"')[0]
        signed = http.post(
            f"{info['console_url']}/sign-in",
            data={"username": "manager", "password": info["console_accounts"]["manager"][1],
                  "csrf": token},
            headers={"Cookie": f"console_form={form.cookies['console_form']}"},
        )  # fmt: skip
        assert signed.status_code == 303 and "console_session=" in signed.headers["set-cookie"]
        docs = http.get(info["docs_url"])
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        notices = http.get(info["notices_url"])
        assert notices.status_code == 200 and "Notices" in notices.text
        assert http.get(f"{info['notices_url']}/notices.json").json() == []
        cabinets = http.get(
            f"{info['api_url']}/api/v1/cabinets", headers={"X-API-Key": info["erp_key"]}
        )
        assert [(c["id"], c["online"]) for c in cabinets.json()["data"]] == [
            ("cab-1", True),
            ("cab-2", True),
        ]
        for cabinet in info["cabinets"]:
            assert cabinet["kiosk_url"] in text and cabinet["sim_url"] in text
            page = http.get(cabinet["kiosk_url"])
            assert page.status_code == 200 and "<!doctype html" in page.text.lower()
            status = http.get(f"{cabinet['kiosk_url']}/api/status").json()
            assert status["cabinet_id"] == cabinet["id"] and status["online"] is True
            # The idle screen's scan QR: the cloud gives it to the kiosk's own MQTT credentials
            # (the kiosk may have asked before the API was up: it tries again every 10 s).
            scan_qr = f"{cabinet['kiosk_url']}/api/scan-qr"
            wait_for(lambda u=scan_qr: http.get(u).status_code == 200, 20, "the kiosk's scan QR")
            qr = http.get(scan_qr)
            assert f"/s/{cabinet['id']}/" in qr.headers["X-Scan-URL"]
            state = http.get(f"{cabinet['sim_url']}/state").json()
            assert len(state["boards"][0]["doors"]) == 24
        receiver = http.get(info["erp_receiver_url"])
        assert receiver.status_code == 200 and "No webhook yet" in receiver.text
        # What a newcomer does: the shop's ERP announces, a courier deposits at the first kiosk,
        # the door shut on the doors page, the notice with its code on the notices page, the
        # ERP's webhook on the receiver's page.
        announced = http.post(
            f"{info['api_url']}/api/v1/shipments",
            headers={"X-API-Key": info["erp_key"], "Idempotency-Key": "demo-test-1"},
            json={
                "order_no": "SO-42",
                "tracking_no": "SF0042",
                "phone": "+8613900139000",
                "cabinet_id": "cab-1",
            },
        )
        assert announced.status_code == 201, announced.text
        kiosk, doors = info["cabinets"][0]["kiosk_url"], info["doors_url"]
        assert "A19" in http.get(doors).text
        sf = info["couriers"][0]
        opened: list[dict] = []  # the screen that names the door springing open
        for body in (
            {"type": "CourierSignIn", "courier_id": sf["id"], "pin": sf["pin"]},
            {"type": "TrackingEntered", "tracking_no": "SF0042"},
            {"type": "PhoneEntered", "phone": "13900139000"},
            {"type": "SizeChosen", "size": "S"},
        ):
            pressed = http.post(f"{kiosk}/api/input", json=body)
            assert pressed.status_code == 200, pressed.text
            opened = [s for s in pressed.json()["screens"] if s["type"] == "DepositDoorOpening"]
            if opened:  # a door reserved for the announced parcel opens without a size
                break
        door = opened[-1]["compartment"]
        wait_for(
            lambda: "开着 open" in http.get(doors).text, 10, "the door to open", interval_s=0.2
        )
        for action in ("put", "close"):
            pressed = http.post(f"{doors}/cab-1/{door}/{action}", follow_redirects=False)
            assert pressed.status_code == 303, pressed.text
        confirmed = wait_for(
            lambda: http.post(f"{kiosk}/api/input", json={"type": "Confirm"}).status_code == 200,
            10,
            "the kiosk to take Confirm once the door is seen shut",
            interval_s=0.2,
        )
        assert confirmed
        notice = wait_for(
            lambda: http.get(f"{info['notices_url']}/notices.json").json(),
            20,
            "the notice",
            interval_s=0.2,
        )
        assert "SF0042" in notice[0]["text"] and "Pickup code" in notice[0]["text"]

        def receiver_shows_the_deposit() -> str:
            page = http.get(info["erp_receiver_url"]).text
            return page if "parcel.in_locker" in page else ""

        page = wait_for(receiver_shows_the_deposit, 20, "the ERP's webhook", interval_s=0.2)
        assert "SF0042" in page and "signature verified" in page and "INVALID" not in page
    pids = info["pids"]
    assert len(pids) == 2 + 2 * 2  # API, worker, and a simulator and a daemon per cabinet
    assert all(alive(pid) for pid in pids.values())
    print(ready.strip())  # how long it took to be ready, in the test log

    demo.process.send_signal(stop_signal)
    assert demo.process.wait(timeout=30) == 0
    demo.wait_for_line("nothing is left running", 5)
    assert [name for name, pid in pids.items() if alive(pid)] == []


# The story at a night and at a day hour of the site (Asia/Shanghai), whatever hour CI runs at: a
# story that needs the day (a notice held back by quiet hours, say) fails at every hour of CI.
NIGHT, DAY = "23:30", "10:00"


@pytest.mark.slow
@pytest.mark.parametrize("site_time", [NIGHT, DAY], ids=["site-night", "site-day"])
def test_the_story_runs_end_to_end_and_exits_0(tmp_path: Path, site_time: str) -> None:
    result = subprocess.run(
        [
            str(LOCKER),
            "demo",
            "--story",
            "--data",
            str(tmp_path / "demo"),
            "--http-port",
            "0",
            "--site-time",
            site_time,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for step in (
        "The ERP registers a webhook and announces a shipment",
        "A courier deposits it at a kiosk; the ERP hears of it",
        "The recipient's notice arrives with the pickup code",
        "The recipient picks it up with that code; the ERP hears of it",
        "The carrier's statement of the day lists the deposit",
        "A second parcel expires and the courier takes it back",
        "A jammed lock: the parcel goes to another door",
        "A forced door: the manager sees the alarm and acknowledges it",
    ):
        assert step in result.stdout
    assert "The story held" in result.stdout
    for check in (
        "the ERP's receiver got parcel.in_locker",
        "the ERP's receiver got parcel.picked_up",
        "it lists the deposit of",
        "the manager's alarms page shows door",
        "the audit log has it: manager acknowledged alarm",
    ):
        assert check in result.stdout
    assert "✗" not in result.stdout
    assert f"the cloud workers' clock starts at {site_time} Asia/Shanghai" in result.stdout


def test_a_folder_the_demo_did_not_make_is_refused_and_kept(tmp_path: Path) -> None:
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    result = subprocess.run(
        [str(LOCKER), "demo", "--data", str(precious), "--http-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 1
    assert "was not made by the demo" in result.stdout
    assert [p.name for p in precious.iterdir()] == ["thesis.txt"]


@pytest.mark.slow
def test_the_demo_with_enrol_brings_a_cabinet_online_from_a_one_time_code(
    tmp_path: Path, demos: list[Demo]
) -> None:
    data = tmp_path / "demo"
    demo = Demo("--data", str(data), "--http-port", "0", "--cabinets", "1", "--enrol")
    demos.append(demo)
    line = demo.wait_for_line("enrolling with the one-time code", READY_S)
    code = line.rsplit(" ", 1)[1].strip()
    demo.wait_for_line("Ready in", READY_S)  # the cabinet is online in the cloud
    info = json.loads((data / "demo.json").read_text())
    config = Path(info["cabinets"][0]["config_path"])
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert "config_sha256" in config.read_text()
    # The code is spent.
    again = httpx.post(f"{info['api_url']}/api/v1/enrol", json={"code": code}, timeout=10)
    assert again.status_code == 404
    demo.process.send_signal(signal.SIGINT)
    demo.wait_for_line("nothing is left running", 30)
