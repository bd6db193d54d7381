"""A cabinet enrols from a one-time code against a real `locker cloud serve`, comes online over a
real Mosquitto that checks its password and ACL, then takes a pushed config.

The operator's side runs as an operator would: `locker cloud site add`, `locker cloud cabinet
add --enrol` (a code and its QR, no secret printed), `locker cloud mosquitto-config` and a
SIGHUP to the broker. The cabinet's side is `locker cabinet enrol --code ... --cloud ... --run`
with the simulator's pty as its bus (an environment override, as an installer's unit file
would set it). Then `locker cloud cabinet config-push` and a worker carry `config.put`: the
daemon writes it atomically, restarts on it and its new birth names the new hash. Every process
is stopped by its pid.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
from pathlib import Path

import pytest
from sqlmodel import Session

from cabinet.enrolment import EnrolmentFailed, fetch_enrolment
from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import SiteCreate
from cloud.services.registry import add_site, mosquitto_auth, worker_mqtt_users
from firmware_sim import BoardConfig, PtyServer, SimulatedBus
from locker.harness.ports import free_port, port_accepts
from locker.harness.processes import clean_env, locker_cli, stop_pid, wait_for
from protocol.config_push import config_sha256
from tests.cabinet.adapters.harness import CloudPeer
from tests.cloud.db.builders import SEAL_KEY, T0
from tests.services import Mosquitto

SECRET = SEAL_KEY.decode()
WORKER_PASSWORD = "worker-password-0123456789"
CAB = "gate-7"


def layout(broker: Mosquitto, kiosk_port: int, language: str = "zh-CN") -> str:
    doors = "".join(
        f'[[layout.compartments]]\nid = "A0{n}"\nsize = "M"\ndriver = "rs485"\n'
        f"board = 1\nchannel = {n}\n\n"
        for n in (1, 2, 3)
    )
    return (
        f'kiosk_port = {kiosk_port}\nkiosk_language = "{language}"\n\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nkeepalive_s = 5\n\n'
        '[buses.main]\nport = "/dev/ttyUSB0"\nquery_timeout_s = 0.05\nunlock_timeout_s = 0.3\n'
        "quiet_gap_s = 0.01\ninter_request_gap_s = 0.001\npoll_interval_s = 0.05\n\n"
        '[[boards]]\nbus = "main"\naddress = 1\nchannels = 24\n\n' + doors
    )


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        locker_cli(*args), env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_cabinet_enrols_from_a_code_comes_online_and_takes_a_pushed_config(
    tmp_path: Path,
) -> None:
    auth = tmp_path / "auth"
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    env = clean_env(
        LOCKER_CLOUD_DATABASE_URL=url,
        LOCKER_CLOUD_SECRET_KEY=SECRET,
        LOCKER_CLOUD_MQTT_PASSWORD=WORKER_PASSWORD,
    )
    upgrade(url)  # the operator's `locker cloud db upgrade` and `site add`, in-process (faster)
    engine = make_engine(url)
    with Session(engine) as session:
        add_site(session=session, site_create=SiteCreate(id="estate", name="Estate"), now=T0)
        # The broker's first files, before any cabinet: the workers' users only.
        users = worker_mqtt_users("locker-cloud", 2)
        workers_only = mosquitto_auth(
            session=session, cloud_users=users, cloud_password=WORKER_PASSWORD
        )
    engine.dispose()
    auth.mkdir()
    (auth / "passwd").write_text(workers_only.password_file)
    (auth / "acl").write_text(workers_only.acl_file)
    broker = Mosquitto(
        tmp_path / "broker",
        allow_anonymous=False,
        extra_config=f"password_file {auth / 'passwd'}\nacl_file {auth / 'acl'}\n",
    )
    (tmp_path / "broker").mkdir()
    bus = SimulatedBus([BoardConfig(address=1, channels=24)], pulse_s=0.01, query_reply_s=0.001)
    server = PtyServer(bus, link=tmp_path / "ttyLOCK").start()
    processes: list[subprocess.Popen[str]] = []
    peer: CloudPeer | None = None
    try:
        broker.start()
        api_port, kiosk_port = free_port(), free_port()
        (tmp_path / "layout.toml").write_text(layout(broker, kiosk_port))
        added = cli(
            env, "cloud", "cabinet", "add", CAB, "--site", "estate",
            "--layout", str(tmp_path / "layout.toml"), "--enrol",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        code = re.search(r"^\s+([A-Z2-7]{4}(?:-[A-Z2-7]{4}){7})$", added.stdout, re.M).group(1)
        assert "code_key" not in added.stdout and "password =" not in added.stdout  # no secret
        assert "█" in added.stdout or "▀" in added.stdout  # the QR, drawn in the terminal
        # The cabinet's MQTT password hash exists from the code's issue: the broker learns it now.
        made = cli(env, "cloud", "mosquitto-config", "--out", str(auth), "--workers", "2")
        assert made.returncode == 0 and "1 cabinet(s)" in made.stdout, made.stdout
        os.kill(broker.pid, signal.SIGHUP)
        peer = CloudPeer(broker, username="locker-cloud-2", password=WORKER_PASSWORD)
        log = (tmp_path / "api.log").open("w")
        processes.append(
            subprocess.Popen(
                locker_cli("cloud", "serve", "--port", str(api_port)), env=env,
                stdout=log, stderr=subprocess.STDOUT, text=True,
            )
        )  # fmt: skip
        wait_for(lambda: port_accepts("127.0.0.1", api_port), 30, "the API")

        config = tmp_path / "etc" / "cabinet.toml"
        cabinet_env = clean_env(
            LOCKER_BUSES__MAIN__PORT=str(server.link),
            LOCKER_JOURNAL_PATH=str(tmp_path / "journal.sqlite3"),
        )
        daemon_log = (tmp_path / "daemon.log").open("w")
        daemon = subprocess.Popen(
            locker_cli(
                "cabinet", "enrol", "--cloud", f"http://127.0.0.1:{api_port}",
                "--code", code, "--config", str(config), "--run",
            ),
            env=cabinet_env, stdout=daemon_log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        processes.append(daemon)

        def births() -> list[dict]:
            return [s for s in list(peer.states) if s["online"] and s["cab"] == CAB]

        wait_for(lambda: births() or daemon.poll() is not None, 40, "the enrolled cabinet's birth")
        assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
        first = births()[0]
        assert {c["id"] for c in first["compartments"]} == {"A01", "A02", "A03"}
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert first["config_sha256"] in config.read_text()
        # The code is spent: a second cabinet with it gets nothing.
        with pytest.raises(EnrolmentFailed, match="does not know this code"):
            fetch_enrolment(f"http://127.0.0.1:{api_port}", code)

        # Config push: a new setting, carried by a worker as config.put.
        (tmp_path / "layout2.toml").write_text(layout(broker, kiosk_port, language="en"))
        pushed = cli(
            env, "cloud", "cabinet", "config-push", CAB, "--layout", str(tmp_path / "layout2.toml")
        )
        assert pushed.returncode == 0, pushed.stderr
        new_sha = re.search(r"\(([0-9a-f]{64})\)", pushed.stdout).group(1)
        processes.append(
            subprocess.Popen(
                locker_cli(
                    "cloud", "worker", "--broker", broker.url, "--mqtt-username", "locker-cloud-1",
                    "--client-id", "locker-cloud-1", "--no-shared",
                ),
                env=env, stdout=(tmp_path / "worker.log").open("w"), stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        wait_for(
            lambda: (
                any(b.get("config_sha256") == new_sha for b in births())
                or daemon.poll() is not None
            ),
            40,
            "a birth on the pushed config",
        )
        assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
        assert 'kiosk_language = "en"' in config.read_text()
        # The new config brought the doors up: it is the last good one now, nothing pending.
        assert (config.parent / "cabinet.toml.good").read_text() == config.read_text()
        assert not (config.parent / "cabinet.toml.pending").exists()
        assert new_sha != first["config_sha256"] and len(new_sha) == len(config_sha256({}))
    finally:
        for process in reversed(processes):
            stop_pid(process)
        if peer is not None:
            peer.close()
        server.close()
        broker.stop()
