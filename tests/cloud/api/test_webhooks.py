"""`/api/v1/webhooks`: an ERP key registers endpoints (the secret shown once, kept sealed),
lists its own, rotates, disables, deletes; URLs that point inside are refused (SSRF guard)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.core.webhooks import ROTATION_GRACE
from cloud.db.repo import count_rows
from cloud.db.webhook_models import WebhookEndpoint
from cloud.settings import CloudSettings
from tests.cloud.api.conftest import HEADERS, NOW
from tests.cloud.api.webhook_helpers import register
from tests.cloud.api.webhook_receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture
def settings(settings: CloudSettings, receiver: Receiver) -> CloudSettings:
    """The API's settings with the local receiver allow-listed, as the tests and demo do."""
    return settings.model_copy(update={"webhook_allow_hosts": f"127.0.0.1:{receiver.port}"})


def endpoints(engine: Engine) -> int:
    with Session(engine) as session:
        return count_rows(session=session, model=WebhookEndpoint)


def test_a_key_registers_an_endpoint_and_sees_its_secret_only_once(
    client: TestClient, engine: Engine, receiver: Receiver
) -> None:
    created = register(client, receiver.url, ["parcel.in_locker", "parcel.picked_up"])
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["parcel.in_locker", "parcel.picked_up"]
    assert created["status"] == "active"
    listed = client.get("/api/v1/webhooks", headers=HEADERS).json()["items"]
    assert [e["id"] for e in listed] == [created["id"]]
    assert "secret" not in listed[0]
    one = client.get(f"/api/v1/webhooks/{created['id']}", headers=HEADERS).json()
    assert "secret" not in one
    # Kept sealed: the database alone does not give the secret.
    with Session(engine) as session:
        row = session.exec(select(WebhookEndpoint)).one()
    assert created["secret"] not in row.secret_sealed
    assert created["secret"].removeprefix("whsec_") not in row.secret_sealed


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:8000/hook", "must be https"),
        ("https://127.0.0.1/hook", "non-public"),
        ("https://10.1.2.3/hook", "non-public"),
        ("https://192.168.0.10/hook", "non-public"),
        ("https://169.254.169.254/latest/meta-data", "non-public"),  # the cloud metadata address
        ("https://[::1]/hook", "non-public"),
        ("https://[fe80::1]/hook", "non-public"),
        ("ftp://erp.example.com/hook", "https"),
        ("https://user:pw@erp.example.com/hook", "credentials"),
    ],
)
def test_a_url_pointing_inside_is_refused_and_nothing_is_written(
    client: TestClient, engine: Engine, url: str, words: str
) -> None:
    answer = client.post(
        "/api/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=HEADERS
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "body.url"
    assert words in answer.json()["detail"]
    assert endpoints(engine) == 0


def test_a_public_name_that_resolves_inside_is_refused(client: TestClient, engine: Engine) -> None:
    """DNS names are resolved and every address checked (a public-looking name may point in)."""
    client.app.state.webhook_resolve = lambda host, port: ["93.184.215.14", "10.0.0.7"]
    answer = client.post(
        "/api/v1/webhooks",
        json={"url": "https://erp.example.com/hook", "event_types": ["*"]},
        headers=HEADERS,
    )
    assert answer.status_code == 422
    assert "10.0.0.7" in answer.json()["detail"]
    client.app.state.webhook_resolve = lambda host, port: ["93.184.215.14"]
    answer = client.post(
        "/api/v1/webhooks",
        json={"url": "https://erp.example.com/hook", "event_types": ["*"]},
        headers=HEADERS,
    )
    assert answer.status_code == 201, answer.text


def test_unknown_event_types_are_refused_by_name(client: TestClient, engine: Engine) -> None:
    client.app.state.webhook_resolve = lambda host, port: ["93.184.215.14"]
    answer = client.post(
        "/api/v1/webhooks",
        json={"url": "https://erp.example.com/hook", "event_types": ["parcel.exploded"]},
        headers=HEADERS,
    )
    assert answer.status_code == 422
    assert "parcel.exploded" in answer.json()["detail"]
    assert endpoints(engine) == 0


def test_rotation_gives_a_new_secret_and_a_grace_period_for_the_old(
    client: TestClient, receiver: Receiver
) -> None:
    created = register(client, receiver.url)
    rotated = client.post(f"/api/v1/webhooks/{created['id']}/rotate", headers=HEADERS)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] != created["secret"]
    assert rotated.json()["previous_secret_until"].startswith(
        (NOW + ROTATION_GRACE).isoformat()[:19]
    )


def test_disable_enable_and_delete(client: TestClient, engine: Engine, receiver: Receiver) -> None:
    created = register(client, receiver.url)
    base = f"/api/v1/webhooks/{created['id']}"
    disabled = client.post(f"{base}/disable", headers=HEADERS).json()
    assert disabled["status"] == "disabled"
    assert disabled["disabled_reason"] == "disabled by its owner"
    assert client.post(f"{base}/enable", headers=HEADERS).json()["status"] == "active"
    assert client.delete(base, headers=HEADERS).json()["status"] == "deleted"
    assert client.get(base, headers=HEADERS).status_code == 404
    assert endpoints(engine) == 0


def test_writes_begin_as_writers_so_a_commit_elsewhere_does_not_fail_them(
    client: TestClient, engine: Engine, receiver: Receiver
) -> None:
    """The route's key lookup opens a read transaction; a worker commits meanwhile (it writes
    all the time). On SQLite, a read transaction that then tries to write fails at once
    ("database is locked", no busy wait): every write must begin as a writer."""
    from cloud.db.models import ErpApiKey
    from cloud.services import webhooks
    from tests.cloud.db.builders import SEAL_KEY

    allow = frozenset({f"127.0.0.1:{receiver.port}"})
    steps = {
        "register": lambda s: webhooks.register(
            session=s,
            key_id="erp-1",
            url=receiver.url,
            event_types=["*"],
            seal_key=SEAL_KEY,
            allow=allow,
            resolve=lambda host, port: [],
            now=NOW,
        ),
        "rotate": lambda s: webhooks.rotate(
            session=s, key_id="erp-1", endpoint_id=first, seal_key=SEAL_KEY, now=NOW
        ),
        "disable": lambda s: webhooks.set_enabled(
            session=s, key_id="erp-1", endpoint_id=first, enabled=False
        ),
        "replay": lambda s: webhooks.replay(
            session=s,
            key_id="erp-1",
            endpoint_id=first,
            delivery_id=None,
            since=NOW,
            until=NOW + ROTATION_GRACE,
            now=NOW,
        ),
        "delete": lambda s: webhooks.delete(session=s, key_id="erp-1", endpoint_id=first),
    }
    first = ""
    for name, step in steps.items():
        with Session(engine) as session:
            assert session.get(ErpApiKey, "erp-1") is not None  # the principal's lookup
            with Session(engine) as worker:  # another connection writes and commits
                key = worker.get(ErpApiKey, "erp-1")
                assert key is not None
                key.name = f"Test ERP ({name})"
                worker.add(key)
                worker.commit()
            done = step(session)
            if name == "register":
                first = done.endpoint.id
    assert endpoints(engine) == 0  # registered, rotated, disabled, replayed, deleted
