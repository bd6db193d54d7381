"""`locker cloud worker`: its help teaches, it refuses bad settings, and SIGTERM stops it."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from cloud.db.migrate import upgrade
from locker.cli import app
from locker.harness.processes import locker_cli
from tests.services import Mosquitto, wait_for

# The worker refuses to start without a strong secret key: every run here is given one.
SECRET_ENV = {"LOCKER_CLOUD_SECRET_KEY": secrets.token_hex(32)}
ENV = {"COLUMNS": "200", **SECRET_ENV}


def test_help_teaches() -> None:
    result = CliRunner().invoke(app, ["cloud", "worker", "--help"], env=ENV)
    assert result.exit_code == 0, result.output
    for text in (
        "--database-url",
        "--broker",
        "mqtt://HOST[:PORT]",
        "--shared",
        "--no-shared",
        "$share/cloud/",
        "--client-id",
        "--resend-interval-s",
        "event-ack only after the commit",
        "SIGTERM",
        "locker cloud db upgrade",
    ):
        assert text in result.output, text
    listed = CliRunner().invoke(app, ["cloud", "--help"], env=ENV)
    assert "worker" in listed.output


def test_a_bad_broker_url_is_refused_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    result = CliRunner().invoke(
        app, ["cloud", "worker", "--database-url", url, "--broker", "http://x:1"], env=ENV
    )
    assert result.exit_code == 1
    assert "error: bad --broker: broker URL 'http://x:1' must start with mqtt://" in result.output


def test_an_unmigrated_database_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    result = CliRunner().invoke(
        app, ["cloud", "worker", "--database-url", url, "--broker", "mqtt://127.0.0.1:1"], env=ENV
    )
    assert result.exit_code == 1
    assert "run `locker cloud db upgrade` first" in result.output


def test_the_worker_runs_until_sigterm(tmp_path: Path, mosquitto: Mosquitto) -> None:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    log_path = tmp_path / "worker.log"
    command = locker_cli("cloud", "worker", "--database-url", url, "--client-id", "w-term")
    command += ["--broker", f"mqtt://{mosquitto.host}:{mosquitto.port}"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **SECRET_ENV}
        )
    try:
        wait_for(
            lambda: (
                "subscribed to $share/cloud/lockers/v1/+/event" in log_path.read_text()
                or process.poll() is not None
            ),
            30,
            "the worker to subscribe",
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    assert "worker w-term: stopped" in log_path.read_text()


def test_a_bad_setting_is_refused_in_one_line_naming_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    result = CliRunner().invoke(
        app,
        ["cloud", "worker", "--database-url", url],
        env={**ENV, "LOCKER_CLOUD_MQTT_PORT": "eighteen"},
    )
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a traceback
    assert result.output.startswith("error: LOCKER_CLOUD_MQTT_PORT: Input should be a valid")
    assert "eighteen" not in result.output  # a setting's value may be a secret: never echoed
