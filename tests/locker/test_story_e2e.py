"""The demo's story end to end over real servers: Mosquitto with the registry's passwords and ACLs,
a PostgreSQL database of this test's own, two cloud workers sharing the event subscription, and
three cabinets (each a real daemon with its kiosk on a simulated lock board)."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from locker.demo.stack import CLOUD_MQTT_USER, DemoStack, Options
from locker.demo.story import run_story
from tests.services import Mosquitto

CLOUD_PASSWORD = "cloud-e2e-password"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_story_holds_over_mosquitto_and_postgresql_with_two_workers_and_three_cabinets(
    tmp_path: Path, mosquitto_factory, postgres_url: str
) -> None:
    options = Options(
        data_dir=tmp_path / "demo",
        cabinets=3,
        http_port=0,
        database_url=postgres_url,
        workers=2,
        shared=True,
        cloud_mqtt_username=CLOUD_MQTT_USER,
        cloud_mqtt_password=CLOUD_PASSWORD,
        language="en",
        site_time=time(2, 0),  # a night hour of the site; test_demo.py runs a day one too
    )
    lines: list[str] = []
    stack = DemoStack(options, echo=lines.append)
    broker: Mosquitto | None = None
    try:
        info = stack.prepare()
        # The broker trusts exactly what the registry printed: each cabinet's password line and
        # ACL block, and the workers' user.
        folder = info.data_dir / "mosquitto"
        broker = mosquitto_factory(
            acl=(folder / "acl").read_text(),
            allow_anonymous=False,
            extra_config=f"password_file {folder / 'passwd'}\n",
        )
        stack.options.broker_url = f"mqtt://{broker.host}:{broker.port}"
        stack.start()
        assert sum(name.startswith("cloud-worker-") for name, _ in stack.processes) == 2
        assert run_story(info, echo=lines.append), "\n".join(lines)
    finally:
        stack.stop()
    text = "\n".join(lines)
    assert "The story held" in text
    # Every cabinet connected with its own credentials, none was refused, and nobody anonymous.
    log = broker.log()
    for cabinet in info.cabinets:
        assert f"u'{cabinet.id}'" in log, log[-3000:]
    assert "not authorised" not in log.lower() and "denied" not in log.lower()
