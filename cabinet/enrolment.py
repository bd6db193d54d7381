"""Enrol over HTTPS: trade a one-time code for this cabinet's credentials and config.

`POST {cloud}/api/v1/enrol` with `{"code": ...}` answers the cabinet id, its pickup-code key, its
MQTT user and password and its config body (version, sha256, body); the config store writes the
whole config 0600 (cabinet.config_store). The code and the answer are secrets, so the cloud is
reached over HTTPS; plain HTTP only to this computer (a demo, a test).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

TIMEOUT_S = 20.0
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class EnrolmentFailed(Exception):
    """The cloud would not enrol this cabinet, or could not be reached; the message says why."""


def enrol_url(cloud: str) -> str:
    """The enrolment endpoint of the cloud at `cloud` (its API root, https://host[/prefix])."""
    parts = urlsplit(cloud.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise EnrolmentFailed(f"--cloud must be the cloud's address, https://HOST, not {cloud!r}")
    if parts.scheme == "http" and parts.hostname not in _LOCAL_HOSTS:
        raise EnrolmentFailed(
            "the code and the credentials travel in this request: use https:// "
            "(plain http only to this computer)"
        )
    root = cloud.strip().rstrip("/")
    return root + "/enrol" if root.endswith("/api/v1") else root + "/api/v1/enrol"


def fetch_enrolment(
    cloud: str, code: str, *, transport: httpx.BaseTransport | None = None
) -> Mapping[str, Any]:
    """Ask the cloud to enrol with `code`; return its answer or raise EnrolmentFailed."""
    url = enrol_url(cloud)
    try:
        with httpx.Client(timeout=TIMEOUT_S, transport=transport) as client:
            answer = client.post(url, json={"code": code.strip()})
    except httpx.HTTPError as err:
        raise EnrolmentFailed(f"cannot reach the cloud at {url}: {err}") from err
    if answer.status_code == 200:
        return answer.json()
    try:
        detail = answer.json().get("detail", answer.text)
    except ValueError:
        detail = answer.text[:200]
    if answer.status_code == 429:
        wait = answer.headers.get("Retry-After", "a while")
        raise EnrolmentFailed(f"too many wrong codes from here: try again in {wait} s ({detail})")
    if answer.status_code == 404:
        raise EnrolmentFailed(f"the cloud does not know this code: {detail}")
    raise EnrolmentFailed(f"the cloud answered {answer.status_code}: {detail}")
