"""The OpenAPI document lists every route with its schemas; `locker cloud serve` is wired up."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from cloud.api import create_app
from cloud.db.migrate import upgrade
from cloud.settings import CloudSettings
from locker.cli import app as locker_app

ROUTES = {
    ("get", "/api/v1/health"),
    ("get", "/api/v1/statements"),
    ("get", "/api/v1/statements.csv"),
    ("get", "/api/v1/statements.xlsx"),
    ("get", "/api/v1/sites/{site_id}"),
    ("get", "/api/v1/cabinets"),
    ("get", "/api/v1/cabinets/{cab}"),
    ("get", "/api/v1/cabinets/{cab}/compartments"),
    ("get", "/api/v1/cabinets/{cab}/scan-qr"),
    ("post", "/api/v1/enrol"),
    ("get", "/api/v1/parcels"),
    ("get", "/api/v1/parcels/{parcel_id}"),
    ("get", "/api/v1/tracking/{tracking_no}"),
    ("post", "/api/v1/shipments"),
    ("get", "/api/v1/shipments"),
    ("get", "/api/v1/shipments/{shipment_id}"),
    ("patch", "/api/v1/shipments/{shipment_id}"),
    ("post", "/api/v1/shipments/{shipment_id}/cancel"),
    ("post", "/api/v1/shipments/{shipment_id}/reserve"),
    ("post", "/api/v1/shipments/{shipment_id}/confirm-return"),
    ("post", "/api/v1/scan/{cab}/{nonce}/otp"),
    ("post", "/api/v1/scan/{cab}/{nonce}/verify"),
    ("post", "/api/v1/scan/{cab}/open"),
    ("post", "/api/v1/scan/{cab}/session"),
    ("get", "/api/v1/scan/{cab}/{nonce}/wechat"),
    ("get", "/api/v1/scan/{cab}/wechat/callback"),
    ("post", "/api/v1/callbacks/twilio/status"),
    ("get", "/api/v1/wechat/push"),
    ("post", "/api/v1/wechat/push"),
    ("post", "/api/v1/webhooks"),
    ("get", "/api/v1/webhooks"),
    ("get", "/api/v1/webhooks/{endpoint_id}"),
    ("delete", "/api/v1/webhooks/{endpoint_id}"),
    ("post", "/api/v1/webhooks/{endpoint_id}/rotate"),
    ("post", "/api/v1/webhooks/{endpoint_id}/disable"),
    ("post", "/api/v1/webhooks/{endpoint_id}/enable"),
    ("get", "/api/v1/webhooks/{endpoint_id}/deliveries"),
    ("post", "/api/v1/webhooks/{endpoint_id}/replay"),
}

# The API refuses to start without a strong secret key: every run here is given one.
SECRET_ENV = {"LOCKER_CLOUD_SECRET_KEY": secrets.token_hex(32)}

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
REDIRECTS = {"/api/v1/scan/{cab}/{nonce}/wechat", "/api/v1/scan/{cab}/wechat/callback"}


def openapi(tmp_path: Path) -> dict:
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path / 'cloud.db'}", secret_key=secrets.token_hex(32)
    )
    return create_app(settings).openapi()


def test_openapi_lists_every_route_with_response_and_error_schemas(tmp_path: Path) -> None:
    document = openapi(tmp_path)
    found = {(method, path) for path, item in document["paths"].items() for method in item}
    assert found == ROUTES
    for method, path in ROUTES:
        operation = document["paths"][path][method]
        assert operation["tags"] and operation["summary"] and operation["description"], path
        if path in REDIRECTS:  # WeChat sign-in: the browser is sent on, with Location
            assert "Location" in operation["responses"]["303"]["headers"], path
            assert not any(k.startswith("2") for k in operation["responses"]), path
        else:
            success = next(v for k, v in operation["responses"].items() if k.startswith("2"))
            for media_type in success["content"]:
                if media_type == "application/json":
                    assert "$ref" in success["content"][media_type]["schema"], path
                else:  # the QR; WeChat's URL check (plain text), passive replies (XML); exports
                    assert media_type in (
                        "image/svg+xml",
                        "text/plain",
                        "application/xml",
                        "text/csv",
                        XLSX,
                    ), path
        errors = {k: v for k, v in operation["responses"].items() if k[0] in "45"}
        assert errors or path == "/api/v1/health", path
        for status, response in errors.items():
            schema = response["content"]["application/json"]["schema"]["$ref"]
            assert schema.endswith(("/ErrorPublic", "/HealthPublic")), (path, status)
        if operation.get("parameters") or "requestBody" in operation:
            assert "422" in operation["responses"], path
    schemes = document["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"
    callback = document["paths"]["/api/v1/callbacks/twilio/status"]["post"]
    assert "application/x-www-form-urlencoded" in callback["requestBody"]["content"]


def test_serve_help_names_its_options() -> None:
    result = CliRunner().invoke(locker_app, ["cloud", "serve", "--help"])
    assert result.exit_code == 0, result.output
    for option in ["--database-url", "--host", "--port"]:
        assert option in result.output


def test_serve_refuses_a_database_that_is_not_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = CliRunner().invoke(
        locker_app, ["cloud", "serve", "--database-url", url], env=SECRET_ENV
    )
    assert result.exit_code == 1
    assert "locker cloud db upgrade" in result.output


def test_serve_answers_health_over_http(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    with socket.socket() as probe:  # a free port; the tiny race with another process is harmless
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).parent / "locker"), "cloud", "serve"]
    command += ["--database-url", url, "--port", str(port)]
    server = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **SECRET_ENV},
    )
    try:
        deadline_s = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read().decode()
                assert time.monotonic() < deadline_s, "the server did not come up"
                time.sleep(0.1)
        assert answer.status_code == 200 and answer.json()["database"] is True
    finally:
        server.terminate()
        server.wait(timeout=10)
