"""deploy/monitoring: the alert rules under promtool, the Prometheus config, the dashboard.

Every PromQL expression, in the alert rules and in the dashboard's panels, may name only
metrics that exist: those the API, a worker and a cabinet daemon really expose (collected here
from the running code), node exporter's filesystem metrics and Prometheus' own `up`. A renamed
metric therefore fails here, not on an operator's empty graph.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from cabinet.metrics import REGISTRY as CABINET_REGISTRY
from cabinet.metrics import CabinetCollector
from cloud.api import create_app
from cloud.db.migrate import upgrade
from cloud.metrics import WORKER
from cloud.settings import CloudSettings
from tests.deploy.test_compose import COMPOSE, mounts_of, published_ports, resolved
from tests.deploy.tools import DEPLOY, ROOT, debian, require_tool

MONITORING = DEPLOY / "monitoring"
DASHBOARD = MONITORING / "grafana" / "parcel-lockers.json"
TOKEN = "scrape-token-0123456789abcdef0123"
# Metrics of other programs the rules and panels may use.
FOREIGN = {"up", "node_filesystem_avail_bytes", "node_filesystem_size_bytes"}


def promtool() -> str:
    return require_tool("promtool", debian("prometheus"))


def run(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    checked = run(promtool(), "check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(promtool(), "test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_the_issue_asks_for_is_there_and_unit_tested() -> None:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    rules = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    wanted = {
        "LockerCabinetsOffline",
        "LockerIngestLagging",
        "LockerNoticeFailures",
        "LockerCommandBacklog",
        "LockerCabinetDiskFilling",
    }
    assert wanted <= set(rules)
    assert "node_filesystem_avail_bytes" in rules["LockerCabinetDiskFilling"]["expr"]
    tests = yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert wanted <= tested
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_the_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    """promtool reads the config as the compose service mounts it (files under /etc/prometheus,
    the token file under /prometheus), those paths moved into a folder of the test's."""
    for name in ("alerts.yml", "cabinets.yml"):
        shutil.copy(MONITORING / name, tmp_path / name)
    (tmp_path / "metrics-token").write_text(TOKEN)
    text = (MONITORING / "prometheus.yml").read_text()
    text = text.replace("/etc/prometheus/", f"{tmp_path}/").replace("/prometheus/", f"{tmp_path}/")
    (tmp_path / "prometheus.yml").write_text(text)
    checked = run(promtool(), "check", "config", "prometheus.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def names_in(text: str) -> set[str]:
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def family_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry's metrics can have, labelled children or not."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names = set()
    for family in registry.collect():
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


class _Journal:
    def backlog(self) -> tuple[int, None]:
        return 0, None


class _Driver:
    """An RS485 driver's health as `Rs485Driver.health` reports it, with one board."""

    def health(self) -> dict[str, Any]:
        return {"driver": "rs485", "name": "rs485:main", "boards": {"1": {"requests": 3}}}


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The metric names the API, a worker and a cabinet daemon expose."""
    url = f"sqlite:///{tmp_path_factory.mktemp('metrics') / 'cloud.db'}"
    upgrade(url)
    settings = CloudSettings(
        database_url=url, secret_key=secrets.token_hex(32), metrics_token=TOKEN
    )
    with TestClient(create_app(settings)) as client:
        client.get("/api/v1/health")  # one request, so the latency histogram has a series
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200
        api = names_in(answer.text)
    cabinet = SimpleNamespace(
        link=None,
        journal=_Journal(),
        driver=_Driver(),
        cabinet=SimpleNamespace(compartments={"A01": SimpleNamespace(wire_state="free")}),
    )
    collector = CabinetCollector(cabinet)  # type: ignore[arg-type]
    CABINET_REGISTRY.register(collector)
    try:
        daemon = family_names(CABINET_REGISTRY)
    finally:
        CABINET_REGISTRY.unregister(collector)
    return api | family_names(WORKER) | daemon | FOREIGN


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label values and functions left out)."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    calls = set(re.findall(r"([a-zA-Z_]+)\s*\(", expr))
    keywords = {"and", "or", "unless", "bool", "offset"}
    return {w for w in words - calls - keywords if not w.startswith("$")} - {"__rate_interval"}


def alert_exprs() -> dict[str, str]:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def test_the_name_extraction_sees_metrics_and_only_metrics() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(locker_x_bucket{job="a"}[5m]))) '
        "/ clamp_min(max(locker_y), 1) > 0.1 and on (instance) up == 0"
    )
    assert metric_names(expr) == {"locker_x_bucket", "locker_y", "up"}


def test_every_rule_and_panel_uses_metrics_that_exist(exposed: set[str]) -> None:
    missing = {}
    for name, expr in alert_exprs().items():
        if unknown := metric_names(expr) - exposed:
            missing[f"alert {name}"] = unknown
    for panel in panels():
        for target in panel["targets"]:
            if unknown := metric_names(target["expr"]) - exposed:
                missing[f"panel {panel['title']}"] = unknown
    assert missing == {}
    used = {n for e in alert_exprs().values() for n in metric_names(e)}
    used |= {n for p in panels() for t in p["targets"] for n in metric_names(t["expr"])}
    assert {"locker_cabinets", "locker_events_ingested_total", "locker_notices_total"} <= used


def test_the_dashboard_is_a_well_formed_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        cells = {
            (grid["y"] + dy, grid["x"] + dx) for dy in range(grid["h"]) for dx in range(grid["w"])
        }
        assert not cells & taken, f"panel {panel['title']!r} overlaps another"
        taken |= cells
    for panel in panels():
        assert panel["type"] in {"timeseries", "stat"}, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["description"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_the_compose_monitoring_profile_matches_the_configs(tmp_path: Path) -> None:
    services = resolved(tmp_path)["services"]
    for name in ("prometheus", "grafana"):
        service = services[name]
        assert service["profiles"] == ["monitoring"]
        # Local only, like every plain port (test_compose: only TLS leaves the host).
        assert all(host == "127.0.0.1" for host, _, _ in published_ports(service))
        for target, source in mounts_of(service).items():
            if source.startswith("/"):
                assert Path(source).exists(), (name, target, source)
    prometheus = mounts_of(services["prometheus"])
    assert prometheus["/etc/prometheus/prometheus.yml"] == str(MONITORING / "prometheus.yml")
    assert prometheus["/etc/prometheus/alerts.yml"] == str(MONITORING / "alerts.yml")
    grafana = mounts_of(services["grafana"])
    assert grafana["/var/lib/grafana/dashboards/parcel-lockers.json"] == str(DASHBOARD)
    provider = yaml.safe_load(
        (MONITORING / "grafana/provisioning/dashboards/parcel-lockers.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    # Prometheus scrapes what compose runs: each worker service on the metrics port it sets.
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    workers = sorted(name for name in services if name.startswith("worker-"))
    port = services["worker-1"]["environment"]["LOCKER_CLOUD_WORKER_METRICS_PORT"]
    assert jobs["locker-worker"]["static_configs"][0]["targets"] == [f"{w}:{port}" for w in workers]
    assert jobs["locker-api"]["dns_sd_configs"][0] == {"names": ["api"], "type": "A", "port": 8000}
    assert jobs["locker-api"]["authorization"]["credentials_file"] == "/prometheus/metrics-token"
    assert "/prometheus/metrics-token" in " ".join(services["prometheus"]["command"])
    # No default password or token: each service refuses to start without its secret.
    assert "set GRAFANA_ADMIN_PASSWORD" in " ".join(services["grafana"]["command"])
    assert "set LOCKER_CLOUD_METRICS_TOKEN" in " ".join(services["prometheus"]["command"])
    assert services["api"]["environment"]["LOCKER_CLOUD_METRICS_TOKEN"]  # from .env
    assert COMPOSE.exists()


def test_docs_metrics_lists_every_metric_the_code_exposes(exposed: set[str]) -> None:
    """docs/metrics.md's tables name each `locker_` metric, and only those."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(locker_[a-z_]+)` \|", text, flags=re.M))
    ours = {name for name in exposed if name.startswith("locker_")}
    bases = {re.sub(r"_(bucket|sum|count)$", "", name) for name in ours}
    assert documented - (ours | bases) == set(), "documented, not exposed"
    undocumented = {n for n in ours if n not in documented and re.sub(
        r"_(bucket|sum|count)$", "", n) not in documented}  # fmt: skip
    assert undocumented == set(), "exposed, not documented"
