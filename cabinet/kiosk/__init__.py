"""The cabinet's touchscreen kiosk: a local web UI served by the daemon, shown by Chromium.

- `app`          the HTTP adapter (Starlette): the page, the JSON API, server-sent events
- `wire`         request bodies -> core inputs, core screens -> JSON
- `feed`         the event fan-out to open pages
- `server`       uvicorn inside the daemon's loop
- `scan_qr`      the idle screen's scan-to-open QR, fetched from the cloud
- `scanner`      a serial QR scanner (a keyboard-like USB scanner needs nothing: the page reads it)
- `maintenance`  the technician's PIN-guarded session
- `static/`, `i18n/`  the page (plain HTML/CSS/JS) and its zh-CN and English text

`start_kiosk(config, service)` wires them for `locker cabinet run`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cabinet.config import CabinetConfig
    from cabinet.kiosk.app import Kiosk
    from cabinet.kiosk.scanner import SerialScanner
    from cabinet.kiosk.server import KioskServer
    from cabinet.service import CabinetService

log = logging.getLogger(__name__)


@dataclass
class RunningKiosk:
    """The kiosk and its server as `start_kiosk` started them; `stop` ends both."""

    kiosk: Kiosk
    server: KioskServer
    scanner: SerialScanner | None = None
    _pending: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return self.server.url

    async def stop(self) -> None:
        if self.scanner is not None:
            self.scanner.close()
        await self.kiosk.stop()
        await self.server.stop()


async def start_kiosk(
    config: CabinetConfig, service: CabinetService, *, port: int | None = None
) -> RunningKiosk:
    """Serve the kiosk for a started service on config.kiosk_host:kiosk_port (OSError if taken)."""
    from cabinet.kiosk.app import Kiosk, build_app
    from cabinet.kiosk.maintenance import Maintenance
    from cabinet.kiosk.scan_qr import ScanQr
    from cabinet.kiosk.scanner import SerialScanner
    from cabinet.kiosk.server import KioskServer

    scan = None
    if config.cloud_api_url:
        # The cloud gives the scan QR to the cabinet only: it asks for the MQTT credentials.
        password = config.mqtt.password.get_secret_value() if config.mqtt.password else None
        if password is None:
            log.warning("kiosk: no mqtt.password, so the cloud will refuse the scan-to-open QR")
        scan = ScanQr(
            config.cloud_api_url,
            config.cabinet_id,
            username=config.mqtt.username,
            password=password,
            refresh_s=config.scan_qr_refresh_s,
        )
    pin_hash = config.technician_pin_hash
    kiosk = Kiosk(
        service,
        language=config.kiosk_language,
        names={"zh-CN": config.cabinet_name, "en": config.cabinet_name_en},
        idle_s=config.kiosk_idle_s,
        scan=scan,
        maintenance=Maintenance(pin_hash.get_secret_value() if pin_hash else None),
    )
    if scan is not None:
        scan.on_change = kiosk.status_changed
    server = KioskServer(
        build_app(kiosk), config.kiosk_host, config.kiosk_port if port is None else port
    )
    await server.start()
    await kiosk.start()
    running = RunningKiosk(kiosk, server)
    if config.scanner_port:

        def scanned(payload: str) -> None:
            task = asyncio.get_running_loop().create_task(kiosk.scanned(payload))
            running._pending.add(task)
            task.add_done_callback(running._pending.discard)

        running.scanner = SerialScanner(
            config.scanner_port, scanned, baud=config.scanner_baud
        ).start()
    return running
