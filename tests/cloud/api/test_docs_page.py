"""The OpenAPI page works offline: it names no external URL and its swagger-ui assets are served
from the package (before, it loaded them from a CDN and was blank without one)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from cloud.api import create_app
from cloud.settings import CloudSettings
from tests.cloud.db.builders import SEAL_KEY

URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*['"]([^'"]+)['"]""")


def test_the_docs_page_loads_only_local_assets(tmp_path: Path) -> None:
    settings = CloudSettings(database_url=f"sqlite:///{tmp_path / 'c.db'}", secret_key=SEAL_KEY)
    with TestClient(create_app(settings)) as client:
        page = client.get("/api/v1/docs")
        assert page.status_code == 200
        html = page.text
        assert "http://" not in html and "https://" not in html and "//cdn" not in html
        urls = [a or b for a, b in URL.findall(html)]
        assets = [u for u in urls if u.startswith("/api/v1/docs/assets/")]
        assert sorted(assets) == [
            "/api/v1/docs/assets/swagger-ui-bundle.js",
            "/api/v1/docs/assets/swagger-ui.css",
        ]
        for asset in assets:
            answer = client.get(asset)
            assert answer.status_code == 200, asset
            assert len(answer.content) > 100_000  # the real file, not a stub
        assert client.get("/api/v1/openapi.json").status_code == 200
        assert client.get("/docs/oauth2-redirect").status_code == 200
        # Only the listed files: no path from the request reaches the file system.
        assert client.get("/api/v1/docs/assets/LICENSE").status_code == 404
        assert client.get("/api/v1/docs/assets/..%2F..%2Fapp.py").status_code == 404
