"""`locker cabinet pin-hash`: the technician PIN's hash, asked for twice and never echoed."""

from __future__ import annotations

from typer.testing import CliRunner

from locker.cli import app
from protocol.hashing import verify_pin

runner = CliRunner()


def test_pin_hash_asks_twice_and_prints_a_hash_the_config_accepts() -> None:
    result = runner.invoke(app, ["cabinet", "pin-hash"], input="97531\n97531\n")
    assert result.exit_code == 0, result.output
    hashed = result.output.strip().splitlines()[-1]
    assert hashed.startswith("scrypt$16384$8$1$")
    assert verify_pin("97531", hashed) and not verify_pin("97530", hashed)
    assert "97531" not in result.output.replace(hashed, "")  # hidden input: no echo


def test_pin_hash_refuses_a_pin_the_keypad_cannot_type() -> None:
    result = runner.invoke(app, ["cabinet", "pin-hash", "--pin", "abcd"])
    assert result.exit_code == 2
    assert "4 to 12 digits" in result.output
