"""One exception tree for the cloud (cloud/errors.py); HTTP statuses chosen in the API only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cloud import errors
from cloud.api.app import http_status
from cloud.services import expiry, registry, scan_open, scan_wechat, shipments

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.UnknownCabinet("no cabinet 'X'"), 404),
        # The URL is fine, the body names a cabinet that does not exist (POST /shipments).
        (errors.UnknownCabinet("no cabinet 'X'", field="cabinet_id"), 422),
        (expiry.UnknownParcel("no parcel 'P'"), 404),
        (shipments.InvalidShipment("bad phone", field="phone"), 422),
        (registry.RegistryError("no site 'S'"), 422),
        (shipments.ShipmentConflict("live already", field="tracking_no"), 409),
        (scan_open.NotOpenable("left the locker"), 409),
        (scan_open.OtpRefused("wrong code", outcome=None), 401),
        (scan_open.NonceError("stale QR"), 403),
        (scan_open.TokenError("forged token"), 403),
        (scan_open.RateLimited("too many", retry_after_s=60), 429),
        (scan_wechat.WechatUnavailable("not configured"), 503),
    ],
)
def test_each_domain_error_has_one_status(error: errors.CloudError, status: int) -> None:
    assert http_status(error) == status


def test_the_docstring_draws_every_class_of_the_tree() -> None:
    """A reader finds the whole tree at the top of cloud/errors.py, as in httpx's _exceptions."""
    drawn = errors.__doc__ or ""
    classes = [
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.CloudError)
    ]
    assert sorted(name for name in classes if name not in drawn) == []


def test_services_choose_no_http_status() -> None:
    """Services raise domain errors; no service imports FastAPI or names a status code."""
    found = []
    for path in sorted((ROOT / "cloud" / "services").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in {
                "fastapi",
                "starlette",
            }:
                found.append(f"{path.name}: imports {node.module}")
            if isinstance(node, ast.Name | ast.Attribute) and "status_code" in ast.unparse(node):
                found.append(f"{path.name}:{node.lineno}: status_code")
            if isinstance(node, ast.arg) and node.arg == "render":
                found.append(f"{path.name}:{node.lineno}: a render callback")
    assert found == []


def test_one_unknown_cabinet() -> None:
    """Shipments, scan-to-open and ingestion raise the same UnknownCabinet (there were three)."""
    defined = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "cloud").rglob("*.py")
        if "class UnknownCabinet" in path.read_text(encoding="utf-8")
    ]
    assert sorted(defined) == ["cloud/errors.py"]
