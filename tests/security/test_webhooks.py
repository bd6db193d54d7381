"""Issue 13, item 4 (webhooks): an ERP key and a hostile URL play the attacker.

Findings guarded here: (1) a key must not see, change or replay another key's endpoint (404, as
for a missing one); (2) a key must not receive another key's parcels' events; (3) a webhook URL
must not make the cloud call inside its own network (SSRF): loopback, private, link-local and
metadata addresses are refused, at registration and at send time, unless the operator's
allow-list names the exact host.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.api import create_app
from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import Carrier, ErpApiKey, ErpKeySite
from cloud.db.webhook_models import WebhookDelivery, WebhookEndpoint
from cloud.notify.webhooks import WebhookDispatcher
from cloud.services.queries import hash_api_key
from cloud.settings import CloudSettings
from tests.cloud.api.webhook_receiver import Receiver
from tests.cloud.db.builders import CAB, SEAL_KEY, SITE, T0, register_cabinet

NOW = T0 + timedelta(minutes=5)
KEYS = {
    "key-sf": ("lk_sf-0123456789abcdef0123456789abcdef", "SF"),
    "key-jd": ("lk_jd-0123456789abcdef0123456789abcdef", "JD"),
}


def headers(key_id: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[key_id][0]}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as session:
        register_cabinet(session)
        for key_id, (key, carrier) in KEYS.items():
            session.add(Carrier(id=carrier, name=carrier, created_at=T0))
            session.flush()
            session.add(
                ErpApiKey(
                    id=key_id,
                    name=key_id,
                    key_prefix=key[:8],
                    key_hash=hash_api_key(key),
                    carrier_id=carrier,
                    created_at=T0,
                )
            )
            session.flush()
            session.add(ErpKeySite(key_id=key_id, site_id=SITE))
        session.commit()
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine: Engine, receiver: Receiver) -> Iterator[TestClient]:
    settings = CloudSettings(
        database_url="sqlite://",
        secret_key=SEAL_KEY.decode(),
        webhook_allow_hosts=f"127.0.0.1:{receiver.port}",
    )
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as test_client:
        yield test_client


def register(client: TestClient, key_id: str, url: str) -> dict:
    answer = client.post(
        "/api/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=headers(key_id)
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def announce(client: TestClient, key_id: str, tracking_no: str) -> None:
    body = {"order_no": "SO-1", "tracking_no": tracking_no, "phone": "+8613812341234"}
    answer = client.post(
        "/api/v1/shipments",
        json={**body, "cabinet_id": CAB},
        headers={**headers(key_id), "Idempotency-Key": tracking_no},
    )
    assert answer.status_code == 201, answer.text


def test_another_key_can_neither_see_nor_change_nor_replay_an_endpoint(
    client: TestClient, engine: Engine, receiver: Receiver
) -> None:
    """Finding 1: endpoints are per key. JD's key, given SF's endpoint id (ids leak: logs,
    screenshots), gets exactly the answer of a missing endpoint on every route."""
    mine = register(client, "key-sf", receiver.url)
    base = f"/api/v1/webhooks/{mine['id']}"
    missing = client.get("/api/v1/webhooks/we_missing", headers=headers("key-jd")).json()
    attempts = [
        ("GET", base, None),
        ("DELETE", base, None),
        ("POST", f"{base}/rotate", None),
        ("POST", f"{base}/disable", None),
        ("POST", f"{base}/enable", None),
        ("GET", f"{base}/deliveries", None),
        ("POST", f"{base}/replay", {"delivery_id": 1}),
    ]
    for method, url, body in attempts:
        answer = client.request(method, url, json=body, headers=headers("key-jd"))
        assert answer.status_code == 404, (method, url, answer.text)
        assert answer.json() == missing
    assert client.get("/api/v1/webhooks", headers=headers("key-jd")).json() == {"items": []}
    with Session(engine) as session:
        row = session.exec(select(WebhookEndpoint)).one()
    assert (row.status, row.previous_secret_sealed) == ("active", None)  # nothing changed


def test_a_key_cannot_replay_another_endpoints_delivery_through_its_own(
    client: TestClient, engine: Engine, receiver: Receiver
) -> None:
    """Finding 1: a delivery id of SF's endpoint replayed through JD's own endpoint is refused:
    JD cannot make SF's events be sent to JD's URL."""
    register(client, "key-sf", receiver.url)
    theirs = register(client, "key-jd", receiver.url)
    announce(client, "key-sf", "SF0001")
    WebhookDispatcher(
        engine=engine, seal_key=SEAL_KEY, allow_hosts=frozenset({f"127.0.0.1:{receiver.port}"})
    ).tick(NOW)
    assert len(receiver.received) == 1
    answer = client.post(
        f"/api/v1/webhooks/{theirs['id']}/replay",
        json={"delivery_id": 1},
        headers=headers("key-jd"),
    )
    # A body's id naming nothing of this endpoint: the project's 422 naming the field.
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == "no delivery by that id at this endpoint"
    with Session(engine) as session:
        assert [d.status for d in session.exec(select(WebhookDelivery))] == ["delivered"]


def test_a_key_does_not_receive_another_keys_parcel_events(
    client: TestClient, engine: Engine, receiver: Receiver
) -> None:
    """Finding 2: events go to the endpoints of the key that owns the parcel only."""
    register(client, "key-jd", receiver.url)
    announce(client, "key-sf", "SF0001")
    result = WebhookDispatcher(
        engine=engine, seal_key=SEAL_KEY, allow_hosts=frozenset({f"127.0.0.1:{receiver.port}"})
    ).tick(NOW)
    assert (result.fanned_out, result.delivered) == (1, 0)
    assert receiver.tries == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",  # loopback, another port than the allow-listed receiver's
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.0.0.5/hook",
        "https://172.16.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:10.0.0.5]/hook",
        "https://0.0.0.0/hook",
    ],
)
def test_a_url_inside_the_network_is_refused(client: TestClient, engine: Engine, url: str) -> None:
    """Finding 3 (SSRF): the cloud would POST to its own network on an ERP's say-so."""
    answer = client.post(
        "/api/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=headers("key-sf")
    )
    assert answer.status_code == 422, answer.text
    with Session(engine) as session:
        assert session.exec(select(WebhookEndpoint)).all() == []


def test_the_guard_is_applied_again_at_send_time(
    client: TestClient, engine: Engine, receiver: Receiver
) -> None:
    """Finding 3: a host that was fine at registration and now resolves inside (DNS rebinding)
    is not called: the dispatcher resolves and checks again before each send."""
    client.app.state.webhook_resolve = lambda host, port: ["93.184.215.14"]
    register(client, "key-sf", "https://erp.example.com/hook")
    announce(client, "key-sf", "SF0001")
    called: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        called.append(host)
        return ["10.0.0.8"]

    result = WebhookDispatcher(engine=engine, seal_key=SEAL_KEY, resolve=rebinding).tick(NOW)
    assert called == ["erp.example.com"]
    assert (result.delivered, result.retried) == (0, 1)
    log = client.get(
        f"/api/v1/webhooks/{register_id(engine)}/deliveries", headers=headers("key-sf")
    ).json()["items"]
    assert "10.0.0.8, a non-public address" in log[0]["log"][0]["error"]


def register_id(engine: Engine) -> str:
    with Session(engine) as session:
        return session.exec(select(WebhookEndpoint)).one().id
