"""Every unit in deploy/systemd passes `systemd-analyze verify`, and says what it promises.

`systemd-analyze verify` refuses a unit whose ExecStart binary does not exist, and on this
machine nothing is installed at /opt/locker/venv or /usr/local/bin. So the test verifies copies
in a temporary directory in which only those two install paths are rewritten: the `locker` of
this checkout's venv for /opt/locker/venv/bin/locker, and this checkout's launcher script for
/usr/local/bin/locker-kiosk. Everything else (cage, the users, the sandboxing) is checked as
shipped. Template units are verified as an instance (worker@1, api@8000).
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

from tests.deploy.tools import DEPLOY, debian, require_tool

UNITS = DEPLOY / "systemd"
LOCKER = Path(sys.executable).parent / "locker"
INSTALLED = {
    "/opt/locker/venv/bin/locker": str(LOCKER),
    "/usr/local/bin/locker-kiosk": str(DEPLOY / "kiosk" / "locker-kiosk"),
}
INSTANCES = {"locker-cloud-worker@.service": "1", "locker-cloud-api@.service": "8000"}


def unit_files() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


def installed_copy(unit: Path, into: Path, text: str | None = None) -> Path:
    """Copy `unit` into `into` with the install paths pointing at this checkout."""
    text = unit.read_text() if text is None else text
    for shipped, here in INSTALLED.items():
        text = text.replace(shipped, here)
    name = unit.name
    if name in INSTANCES:
        name = name.replace("@.", f"@{INSTANCES[name]}.")
    (into / name).write_text(text)
    return into / name


def verify(paths: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("systemd-analyze", debian("systemd"))
    # --man=no: the units name man pages that need not be installed where the test runs.
    return subprocess.run(
        [tool, "verify", "--man=no", *(p.name for p in paths)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_units_are_the_five_the_readme_lists() -> None:
    assert [u.name for u in unit_files()] == [
        "locker-cabinet.service",
        "locker-cloud-api@.service",
        "locker-cloud-migrate.service",
        "locker-cloud-worker@.service",
        "locker-kiosk.service",
    ]


def test_every_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    copies = [installed_copy(unit, tmp_path) for unit in unit_files()]
    result = verify(copies, tmp_path)
    # verify exits 0 on mere warnings (an unknown key is "ignoring"): any output is a finding.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key and a missing binary are both reported."""
    cabinet = UNITS / "locker-cabinet.service"
    text = cabinet.read_text().replace("WatchdogSec=30", "WatchdogSecs=30")
    copy = installed_copy(cabinet, tmp_path, text.replace(str(LOCKER), "/nonexistent/locker"))
    result = verify([copy], tmp_path)
    assert "WatchdogSecs" in result.stdout + result.stderr
    missing = installed_copy(cabinet, tmp_path, cabinet.read_text())
    missing.write_text(missing.read_text().replace(str(LOCKER), "/nonexistent/locker"))
    result = verify([missing], tmp_path)
    assert result.returncode != 0 and "/nonexistent/locker" in result.stderr


def service_section(unit: str) -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    # Repeated keys (DeviceAllow=, After=) are legal in units: strict=False keeps the last.
    parser.read_string((UNITS / unit).read_text())
    return dict(parser["Service"])


def test_the_cabinet_unit_is_notify_with_a_watchdog_and_a_sandbox() -> None:
    unit = "locker-cabinet.service"
    service = service_section(unit)
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) >= 4  # the daemon ticks every 1 s; pings every WatchdogSec/2
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # a bad config: do not loop
    assert service["User"] == "locker" and service["StateDirectory"] == "locker"
    assert service["ProtectSystem"] == "strict"
    assert "dialout" in service["SupplementaryGroups"].split()
    text = (UNITS / unit).read_text()
    assert "DeviceAllow=char-ttyUSB rw" in text and "DevicePolicy=closed" in text
    # The journal the example configs name lies in the state directory (the one writable path).
    for example in DEPLOY.glob("cabinet-*.toml"):
        assert 'journal_path = "/var/lib/locker/' in example.read_text(), example


def test_the_kiosk_unit_restarts_always_and_runs_the_launcher() -> None:
    service = service_section("locker-kiosk.service")
    assert service["Restart"] == "always"
    assert service["ExecStart"].endswith("-- /usr/local/bin/locker-kiosk")
    assert service["ExecStart"].startswith("/usr/bin/cage ")
