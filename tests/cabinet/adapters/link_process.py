"""Run one MQTT link in its own process, so a test can SIGKILL it and watch the Will."""

from __future__ import annotations

import asyncio
import logging
import sys

from cabinet.journal import Journal
from cabinet.mqtt_link import LinkSettings, MqttLink


async def main(host: str, port: int, cab: str, journal_path: str) -> None:
    journal = Journal.open(journal_path, cab=cab)
    settings = LinkSettings(cab=cab, host=host, port=port, keepalive_s=60, firmware="test-1")
    link = MqttLink(settings, journal, on_command=lambda _c: None, compartments=list)
    await link.start()
    await link.online.wait()
    print("online", link.boot, flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
