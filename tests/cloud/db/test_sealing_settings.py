"""The sealed pickup code of the notice outbox, and the cloud's settings."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from cloud.db.sealing import SealError, seal, unseal
from cloud.settings import CloudSettings

KEY = b"k" * 32


def test_a_sealed_code_opens_with_the_key_and_its_context_only() -> None:
    sealed = seal(KEY, "40718253", context="P1/deposited/x")
    assert "40718253" not in sealed
    assert seal(KEY, "40718253", context="P1/deposited/x") != sealed  # a fresh nonce each time
    assert unseal(KEY, sealed, context="P1/deposited/x") == "40718253"
    with pytest.raises(SealError):
        unseal(KEY, sealed, context="P2/deposited/x")  # moved to another notice
    with pytest.raises(SealError):
        unseal(b"j" * 32, sealed, context="P1/deposited/x")
    # Flip one bit of the ciphertext itself (editing base64 text could land on padding bits).
    version, _, text = sealed.partition(":")
    raw = bytearray(base64.urlsafe_b64decode(text))
    raw[-1] ^= 0x01
    tampered = f"{version}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    with pytest.raises(SealError):
        unseal(KEY, tampered, context="P1/deposited/x")
    with pytest.raises(SealError):
        unseal(KEY, "s0:abc", context="P1/deposited/x")
    with pytest.raises(SealError):
        unseal(KEY, "s2:abc", context="P1/deposited/x")


def test_settings_default_to_sqlite_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LOCKER_CLOUD_DATABASE_URL", raising=False)
    monkeypatch.setenv("LOCKER_CLOUD_DATA_DIR", str(tmp_path))
    assert CloudSettings().database_url == f"sqlite:///{tmp_path / 'cloud.db'}"


def test_settings_come_from_locker_cloud_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKER_CLOUD_DATABASE_URL", "postgresql+psycopg://u@db/lockers")
    monkeypatch.setenv("LOCKER_CLOUD_TWILIO_BASE_URL", "http://127.0.0.1:9999")
    secret = "9f3b2c7e1d4a8b6c0e5f7a9d2b4c6e8f1a3b5d7c9e0f2a4b6c8d0e1f3a5b7c9d"
    monkeypatch.setenv("LOCKER_CLOUD_SECRET_KEY", secret)
    settings = CloudSettings()
    assert settings.database_url == "postgresql+psycopg://u@db/lockers"
    assert settings.twilio_base_url == "http://127.0.0.1:9999"
    assert settings.secret_key_bytes == secret.encode()
    assert secret not in repr(settings)
