"""A real Prometheus (Debian's package) scrapes `locker cloud serve` and `locker cloud worker`.

The API and a worker run as production runs them (`LOCKER_CLOUD_METRICS_TOKEN`, the worker's
`--metrics-port`, JSON logs), over SQLite and the test's own Mosquitto; a scripted cabinet is
born and deposits two parcels. Prometheus, started by the test on a free port with a config it
writes (the token as a bearer credentials file, as deploy/monitoring/prometheus.yml has it),
scrapes both every second; its query API then answers with the figures. Every process is
stopped by its pid.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session

from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from locker.harness.ports import free_port, port_accepts
from locker.harness.processes import clean_env, locker_cli, stop_pid, wait_for
from tests.cloud.db.builders import SEAL_KEY, deposited, register_cabinet
from tests.cloud.worker.harness import ScriptedCabinet
from tests.deploy.tools import debian, require_tool
from tests.services import Mosquitto

TOKEN = secrets.token_urlsafe(24)
START_S = 30


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def query(port: int, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": promql})
    answer.raise_for_status()
    return answer.json()["data"]["result"]


def value_of(port: int, promql: str) -> float | None:
    result = query(port, promql)
    return float(result[0]["value"][1]) if result else None


def worker_sample(port: int, name: str, **labels: str) -> float | None:
    """One sample of the worker's own /metrics, read directly (not through Prometheus)."""
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def test_prometheus_scrapes_the_api_and_a_worker(mosquitto: Mosquitto, tmp_path: Path) -> None:
    prometheus = require_tool("prometheus", debian("prometheus"))
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as session:
        register_cabinet(session)
    engine.dispose()
    api_port = free_port()
    prom_port = wait_for(lambda: (port := free_port()) != api_port and port, 5, "a second port")
    env = clean_env(
        LOCKER_CLOUD_DATABASE_URL=url,
        LOCKER_CLOUD_SECRET_KEY=SEAL_KEY.decode(),
        LOCKER_CLOUD_METRICS_TOKEN=TOKEN,
        LOCKER_CLOUD_LOG_FORMAT="json",
    )
    processes: list[subprocess.Popen[bytes]] = []
    cabinet = None
    try:
        processes.append(
            start(locker_cli("cloud", "serve", "--port", str(api_port)), env, tmp_path / "api.log")
        )
        processes.append(
            start(
                locker_cli(
                    "cloud", "worker", "--broker", f"mqtt://{mosquitto.host}:{mosquitto.port}",
                    "--client-id", "worker-metrics", "--metrics-port", "0",
                ),
                env,
                tmp_path / "worker.log",
            )
        )  # fmt: skip
        # Port 0: the worker takes a free port and says which (no race for a port picked here).
        worker_port = int(
            wait_for(
                lambda: re.search(
                    r"metrics on http://127\.0\.0\.1:(\d+)/metrics",
                    (tmp_path / "worker.log").read_text(),
                ),
                START_S,
                "the worker's metrics port",
                interval_s=0.05,
            ).group(1)
        )
        # Prometheus starts beside them: its targets are down until they listen.
        (tmp_path / "token").write_text(TOKEN)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "locker-api",
                    "authorization": {
                        "type": "Bearer",
                        "credentials_file": str(tmp_path / "token"),
                    },
                    "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}],
                },
                {
                    "job_name": "locker-worker",
                    "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}],
                },
            ],
        }
        (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        processes.append(
            start(
                [
                    prometheus,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                clean_env(),
                tmp_path / "prometheus.log",
            )
        )
        for port in (api_port, worker_port):
            wait_for(lambda p=port: port_accepts("127.0.0.1", p), START_S, f"port {port}")
        cabinet = ScriptedCabinet(mosquitto)
        cabinet.birth(1)  # retained: the worker applies it once subscribed, and counts it
        wait_for(
            lambda: worker_sample(worker_port, "locker_presence_changes_total", presence="online"),
            START_S,
            "the worker to apply the birth",
            interval_s=0.1,
        )
        cabinet.publish_events([deposited(1), deposited(2)])
        cabinet.wait_acked(2)

        wait_for(lambda: port_accepts("127.0.0.1", prom_port), START_S, "Prometheus to listen")
        up = 'up{job=~"locker-api|locker-worker"}'
        wait_for(
            lambda: len([r for r in query(prom_port, up) if r["value"][1] == "1"]) == 2,
            START_S,
            "both targets up",
            interval_s=0.2,
        )
        ingested = 'sum(locker_events_ingested_total{job="locker-worker"})'
        wait_for(
            lambda: value_of(prom_port, ingested) == 2,
            START_S,
            "the worker's two events in Prometheus",
            interval_s=0.2,
        )
        online = value_of(prom_port, 'max(locker_cabinets{job="locker-api",presence="online"})')
        assert online == 1
        assert value_of(prom_port, "max(locker_database_up)") == 1
        sent = value_of(prom_port, 'sum(locker_commands_sent_total{kind="first"})')
        assert sent == 2  # each deposit's codes.put
        # The worker's log lines are JSON objects (LOCKER_CLOUD_LOG_FORMAT=json).
        lines = (tmp_path / "worker.log").read_text().splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert records and {"time", "level", "logger", "message"} <= set(records[0])
    finally:
        if cabinet is not None:
            cabinet.close()
        for process in reversed(processes):
            stop_pid(process)
        for log in sorted(tmp_path.glob("*.log")):
            if any(p.returncode not in (0, -15, None) for p in processes):
                print(log.name, log.read_text()[-2000:])
