"""The cloud's settings, from `LOCKER_CLOUD_*` environment variables (pydantic-settings)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Return where the embedded default keeps its files: `$XDG_DATA_HOME/parcel-lockers`."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "parcel-lockers"


class CloudSettings(BaseSettings):
    """Everything the cloud's API and workers are configured with.

    `database_url` defaults to SQLite in `data_dir` (zero setup); production points it at
    PostgreSQL (`postgresql+psycopg://user:pass@host/db`). The Twilio and WeChat base URLs exist
    so tests point them at local fakes.
    """

    model_config = SettingsConfigDict(env_prefix="LOCKER_CLOUD_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str = ""  # empty: sqlite:///<data_dir>/cloud.db

    # The broker the workers subscribe to.
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    # One user per worker (`locker cloud mosquitto-config --workers N` makes locker-cloud-1 ...
    # locker-cloud-N): the broker pins the client id to the user name, so it is the worker's
    # client id too (`locker cloud worker --mqtt-username` overrides this per process).
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    # TLS to the broker (Mosquitto's 8883 listener); with no CA file, the system's CA store.
    mqtt_tls: bool = False
    mqtt_ca_file: Path | None = None
    # The client id of a worker without a broker user (the anonymous demo broker only).
    mqtt_client_id_prefix: str = "locker-cloud"

    # The public URL of the API: links in notices, the pickup page, scan-to-open.
    base_url: str = "http://127.0.0.1:8000"
    # Seals pickup codes waiting in the notice outbox and signs short-lived nonces. Set it in
    # production (at least 32 random bytes, hex); the default is for the zero-setup demo only.
    secret_key: SecretStr = SecretStr("insecure-demo-key-change-me-0123456789abcdef")
    # Demos and end-to-end runs only: a file holding seconds the workers' clock runs ahead
    # (`cloud.worker.clock`), so a parcel can expire without waiting out its pickup window.
    clock_offset_file: Path | None = None

    twilio_base_url: str = "https://api.twilio.com"
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_from: str = ""

    wechat_base_url: str = "https://api.weixin.qq.com"
    wechat_app_id: str = ""
    wechat_app_secret: SecretStr = SecretStr("")
    wechat_template_id: str = ""
    # The Token of the official account's server configuration: WeChat signs its pushes with it.
    wechat_token: SecretStr = SecretStr("")
    # Where the webpage authorization (OAuth2) page lives: scan-to-open's WeChat sign-in.
    wechat_open_base_url: str = "https://open.weixin.qq.com"

    @model_validator(mode="after")
    def _default_database(self) -> CloudSettings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'cloud.db'}"
        return self

    @property
    def secret_key_bytes(self) -> bytes:
        """The secret key as bytes, for `cloud.db.sealing`."""
        return self.secret_key.get_secret_value().encode()
