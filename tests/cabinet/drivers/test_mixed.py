"""A cabinet with RS485 and GPIO doors, built from config: one driver, one feed of changes."""

from __future__ import annotations

import asyncio

from gpiozero.pins.mock import MockFactory

from cabinet.config import load_config
from cabinet.drivers import MixedDriver, build_driver
from cabinet.ports import DoorChange
from firmware_sim import BoardConfig

CONFIG = """
cabinet_id = "cab-mixed"
code_key = "k"

[buses.main]
port = "{port}"
query_timeout_s = 0.05
unlock_timeout_s = 0.3
quiet_gap_s = 0.01
poll_interval_s = 0

[[boards]]
address = 3
channels = 16

[gpio]
pulse_s = 0.01
release_window_s = 0.05
bounce_time_s = 0.01

[[layout.compartments]]
id = "R1"
size = "M"
driver = "rs485"
board = 3
channel = 16

[[layout.compartments]]
id = "G1"
size = "S"
driver = "gpio"
relay_pin = 17
sensor_pin = 27
"""


async def test_each_compartment_goes_to_its_own_driver(rig_factory, tmp_path):
    rig = rig_factory(BoardConfig(address=3, channels=16), pty=True)  # a config names the port
    path = tmp_path / "mixed.toml"
    path.write_text(CONFIG.format(port=rig.server.path))
    factory = MockFactory()

    driver = build_driver(load_config(path, env={}), pin_factory=factory)
    assert isinstance(driver, MixedDriver)
    feed = driver.changes()
    await driver.start()
    await driver.poll()
    first = {await asyncio.wait_for(anext(feed), 2) for _ in range(2)}
    rs485 = await driver.unlock("R1")
    gpio = await driver.unlock("G1")  # the pull-up reads open: released at once
    factory.pin(27).drive_low()
    closed = await asyncio.wait_for(anext(feed), 2)
    opened = await asyncio.wait_for(anext(feed), 2)
    health = driver.health()
    await driver.close()
    later = {closed, opened}

    factory.reset()
    assert first == {DoorChange("R1", False), DoorChange("G1", True)}
    assert rs485.released and gpio.released
    assert later == {DoorChange("R1", True), DoorChange("G1", False)}
    assert rig.pulses(3, 16) == 1
    assert [part["driver"] for part in health["drivers"]] == ["rs485", "gpio"]
