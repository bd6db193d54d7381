"""The cloud's settings, from `LOCKER_CLOUD_*` environment variables (pydantic-settings).

The secret key has no default: the API, the workers and every command that seals or signs
refuse to run without one (`CloudSettings.require_secret_key`), and a weak or public value is
refused wherever it is given (`secret_key_problem`), so the key that shipped with the code
until issue 11 can never be configured again.
"""

from __future__ import annotations

import os
import re
from itertools import pairwise
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "LOCKER_CLOUD_"
SECRET_KEY_ENV = f"{ENV_PREFIX}SECRET_KEY"
# 256 bits: the strength of the HMAC-SHA256 and AES-256 keys derived from it.
MIN_SECRET_KEY_BYTES = 32
MAKE_SECRET_KEY = 'python -c "import secrets; print(secrets.token_hex(32))"'
# Values published with the code: whoever reads the repository knows them.
PUBLIC_SECRET_KEYS = frozenset({"insecure-demo-key-change-me-0123456789abcdef"})
# A run this long of characters one code point apart ("456789ab", "zyxwvuts") is typed, not
# drawn: in a random 64-hex-digit key it turns up with probability < 64 * 2 * 16**-7 < 1e-6.
_SEQUENTIAL_RUN = 8
# The scrape token guards aggregate figures only, but is still a password on the network.
MIN_METRICS_TOKEN_CHARS = 24
_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


class SettingsError(ValueError):
    """The settings are missing or refuse a value; the message is one readable paragraph."""


def secret_key_problem(value: str) -> str | None:
    """Return why `value` is not a strong secret key, or None if it is one.

    Strong: at least 32 bytes of key material written as hex (64+ digits) or base64 (43+
    characters, as `secrets.token_urlsafe(32)` or `openssl rand -base64 32` make), not a public
    value, and not a made-by-hand pattern (repeats, runs, one letter case, few characters).
    """
    if value in PUBLIC_SECRET_KEYS:
        return "it is the public demo key published with the code"
    if _HEX.fullmatch(value):
        bits = 4 * len(value)
        # Random hex has both: P(no letter in 64 digits) = (10/16)**64 < 1e-13.
        one_kind = value.isdigit() or not any(c.isdigit() for c in value)
    elif _BASE64.fullmatch(value):
        bits = 6 * len(value.rstrip("="))
        # Random base64 has both cases: P(one case only in 43 characters) < 2 * (38/64)**43.
        one_kind = value.lower() == value or value.upper() == value
    else:
        return "it is not hex or base64 (a random key is written as one of them)"
    if bits < 8 * MIN_SECRET_KEY_BYTES:
        return (
            f"it holds {bits // 8} bytes of key material, fewer than {MIN_SECRET_KEY_BYTES} "
            "(64 hex digits or 43 base64 characters)"
        )
    if one_kind or len(set(value)) < 8 or _repeats(value) or _has_run(value):
        return "it looks typed rather than drawn at random (repeats, runs or too few characters)"
    return None


def _repeats(value: str) -> bool:
    # A key made of one block said again ("abcabcabc..."): its tail equals a shift of itself.
    return any(value[shift:] == value[:-shift] for shift in range(1, len(value) // 2 + 1))


def _has_run(value: str) -> bool:
    # Characters one code point apart, all the same way: "3456789a" or "hgfedcba".
    run, step = 1, 0
    for before, after in pairwise(value):
        delta = ord(after) - ord(before)
        if delta not in (1, -1):
            run, step = 1, 0
        elif delta == step:
            run += 1
        else:
            run, step = 2, delta
        if run >= _SEQUENTIAL_RUN:
            return True
    return False


def secret_key_message(problem: str | None = None) -> str:
    """The one paragraph a user sees when the secret key is missing (None) or refused."""
    what = (
        f"{SECRET_KEY_ENV} is not set"
        if problem is None
        else f"{SECRET_KEY_ENV} is refused: {problem}"
    )
    return (
        f"{what}. The cloud signs scan-to-open sessions and seals pickup codes and cabinet code "
        f"keys with it, so it needs at least {MIN_SECRET_KEY_BYTES} random bytes and has no "
        f"default. Make one with `{MAKE_SECRET_KEY}`, keep it secret, and give the same value "
        "to every API and worker process (a new value cannot open what the old one sealed)."
    )


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

    # hide_input_in_errors: a refused secret key must not be echoed into an error or a log.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", hide_input_in_errors=True
    )

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
    # Signs scan-to-open nonces and sessions, seals pickup codes in the notice outbox and the
    # cabinets' code keys. No default: unset (None), whatever needs it refuses to run
    # (`require_secret_key`); commands that need no secret (`db current`) still work.
    secret_key: SecretStr | None = None
    # Demos and end-to-end runs only: a file holding seconds the workers' clock runs ahead
    # (`cloud.worker.clock`), so a parcel can expire without waiting out its pickup window.
    clock_offset_file: Path | None = None

    # ERP webhooks go to public https URLs only (an SSRF guard); these hosts (or host:port),
    # comma-separated, are exempt: the demo's and the tests' local http receivers.
    webhook_allow_hosts: str = ""
    # Delivered webhooks stay in the delivery log (and can be replayed) this many days; the
    # worker deletes older ones hourly. Pending and dead deliveries are never deleted.
    webhook_retention_days: int = Field(default=30, ge=1)

    # Each API process keeps an ERP key's principal (its carrier or merchant and its sites) this
    # many seconds after the read that found it began, so a read costs no key lookup: a revoked
    # key, or a change of its sites, takes effect within this bound in every process (0: read
    # it every request). Half-way through, one request re-reads it (cloud/api/key_cache.py).
    erp_key_cache_s: float = Field(default=5.0, ge=0, le=300)

    # Monitoring (docs/metrics.md). The API's `/metrics` answers only a bearer of this token
    # (Prometheus' `authorization` setting); unset, `/metrics` does not exist (404). No default.
    metrics_token: SecretStr | None = None
    # Each worker serves its own counters on this port (unset: none); its endpoint has no
    # token, so it binds to `metrics_host` (127.0.0.1 unless Prometheus is on another host).
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # A worker waits this many ms after a delivery for more before handling the batch: bigger
    # batches, less CPU per event, that much more latency (cloud/worker/service.py, LINGER_S).
    # 10: at a city's peak (1,000 events/s) a handled deposit costs 0.93 ms of CPU instead of
    # 1.05, for about 30 ms more before its codes.put (docs/benchmarks.md); 0: none.
    worker_linger_ms: float = Field(default=10.0, ge=0, le=200)
    metrics_host: str = "127.0.0.1"
    # `json`: one JSON object per log line (time, level, logger, message) for a log pipeline.
    log_format: Literal["text", "json"] = "text"

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

    @field_validator("secret_key", "metrics_token", "worker_metrics_port", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `LOCKER_CLOUD_SECRET_KEY=` in an env file means "not set", and is told as such.
        return None if value == "" else value

    @field_validator("secret_key")
    @classmethod
    def _strong_secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        problem = secret_key_problem(value.get_secret_value())
        if problem is not None:
            # A custom error: its message is ours alone (no "Value error, " prefix, no input).
            raise PydanticCustomError("weak_secret_key", secret_key_message(problem))
        return value

    @field_validator("metrics_token")
    @classmethod
    def _long_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_METRICS_TOKEN_CHARS:
            raise PydanticCustomError(
                "short_metrics_token",
                f"{ENV_PREFIX}METRICS_TOKEN is refused: it has fewer than "
                f"{MIN_METRICS_TOKEN_CHARS} characters. Make one with `{MAKE_SECRET_KEY}`.",
            )
        return value

    @model_validator(mode="after")
    def _default_database(self) -> CloudSettings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'cloud.db'}"
        return self

    def require_secret_key(self) -> bytes:
        """Return the secret key as bytes; raise SettingsError (one paragraph) if it is unset.

        The one check the API, the workers and the commands that seal go through at startup.
        """
        if self.secret_key is None:
            raise SettingsError(secret_key_message())
        return self.secret_key.get_secret_value().encode()

    @property
    def secret_key_bytes(self) -> bytes:
        """The secret key as bytes, for `cloud.db.sealing` and the scan-to-open signatures."""
        return self.require_secret_key()


def load_settings(**values: object) -> CloudSettings:
    """Return the settings from the environment (and `values`); raise SettingsError.

    The error names each refused setting by its variable, in words, without its value.
    """
    try:
        return CloudSettings(**values)  # type: ignore[arg-type]
    except ValidationError as err:
        raise SettingsError(" ".join(_describe(error) for error in err.errors())) from None


def _describe(error: ErrorDetails) -> str:
    if error["type"] == "weak_secret_key":
        return error["msg"]
    names = "__".join(str(part) for part in error["loc"])
    return f"{ENV_PREFIX}{names.upper()}: {error['msg']}."
