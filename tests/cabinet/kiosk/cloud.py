"""The real cloud API (scan-to-open QR) over a SQLite file, for the kiosk's QR tests.

The cabinet never imports the cloud; tests may, to face the kiosk with the real endpoint
rather than a look-alike: `GET /api/v1/cabinets/{cab}/scan-qr` from `cloud.api.create_app`,
which gives the QR to the cabinet's own credentials only (its id and `CABINET_PASSWORD`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from cloud.api import create_app
from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import Cabinet
from cloud.fakes.background import BackgroundUvicorn
from cloud.services.registry import mosquitto_password_hash
from cloud.settings import CloudSettings
from tests.cloud.db.builders import SEAL_KEY, register_cabinet
from tests.services import free_port

BASE_URL = "https://lockers.example"
# The cabinet's MQTT password: the registry stores its hash, and the kiosk fetches its QR with it.
CABINET_PASSWORD = "cab1-mqtt-password-0123456789abcdef"


def cloud_app(
    workdir: Path, cab: str = "cab1", *, clock: Callable[[], datetime] | None = None
) -> Any:
    """The cloud's FastAPI app over a migrated SQLite file that knows cabinet `cab`."""
    url = f"sqlite:///{workdir / 'cloud.db'}"
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as session:
        register_cabinet(session, cab)  # (again: harmless when the file is reused)
        cabinet = session.get(Cabinet, cab)
        cabinet.mqtt_password_hash = mosquitto_password_hash(CABINET_PASSWORD)
        session.add(cabinet)
        session.commit()
    settings = CloudSettings(database_url=url, base_url=BASE_URL, secret_key=SEAL_KEY.decode())
    return create_app(settings, engine=engine, clock=clock or (lambda: datetime.now(UTC)))


class CloudServer(BackgroundUvicorn):
    """`cloud_app` served by uvicorn on a free port of 127.0.0.1, on its own thread."""

    def __init__(
        self,
        workdir: Path,
        cab: str = "cab1",
        *,
        port: int | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        app = cloud_app(workdir, cab, clock=clock)
        super().__init__(app, port or free_port(), name="cloud-api")
        self.start()

    def close(self) -> None:
        self.stop()
