"""The webhook dispatcher against a real local receiver: signed (verified with the independent
`standardwebhooks` verifier), in order per parcel through failures, retried with backoff on the
injected clock, dead after the retry horizon, two signatures during a rotation, the SSRF guard
again at send time, an endpoint that keeps failing disabled; the delivery log and replay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select
from standardwebhooks import Webhook, WebhookVerificationError

from cloud import metrics
from cloud.core import webhooks as core
from cloud.db.models import AuditLog, WebhookOutbox
from cloud.db.webhook_models import WebhookAttempt, WebhookDelivery
from cloud.settings import CloudSettings
from tests.cloud.api.conftest import HEADERS, NOW, Clock
from tests.cloud.api.webhook_helpers import add_events, announce, dispatcher, register
from tests.cloud.api.webhook_receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture
def settings(settings: CloudSettings, receiver: Receiver) -> CloudSettings:
    return settings.model_copy(update={"webhook_allow_hosts": f"127.0.0.1:{receiver.port}"})


def order(receiver: Receiver, secret: str) -> dict[str, list[str]]:
    """Each parcel's events as received, every one verified; a duplicate id fails."""
    seen: set[str] = set()
    by_parcel: dict[str, list[str]] = {}
    for item in receiver.received:
        event = item.verify(secret)
        assert item.headers["webhook-id"] not in seen
        seen.add(item.headers["webhook-id"])
        by_parcel.setdefault(event["data"]["tracking_no"], []).append(event["type"])
    return by_parcel


def statuses(engine: Engine) -> list[str]:
    with Session(engine) as session:
        rows = session.exec(select(WebhookDelivery).order_by(WebhookDelivery.id))
        return [row.status for row in rows]


EVENTS = ["in_locker", "picked_up"]
EXPECTED = ["parcel.announced", "parcel.in_locker", "parcel.picked_up"]


def test_an_event_arrives_signed_and_is_logged(
    client: TestClient, engine: Engine, receiver: Receiver
) -> None:
    endpoint = register(client, receiver.url)
    announce(client, "SF0001")
    result = dispatcher(engine, f"127.0.0.1:{receiver.port}").tick(NOW)
    assert (result.fanned_out, result.delivered) == (1, 1)
    [item] = receiver.received
    event = item.verify(endpoint["secret"])  # the independent verifier
    assert event["type"] == "parcel.announced"
    assert event["data"]["tracking_no"] == "SF0001"
    assert item.headers["webhook-id"].startswith("msg_")
    with pytest.raises(WebhookVerificationError):
        item.verify("whsec_" + "A" * 32)  # another secret does not verify it
    log = client.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries", headers=HEADERS).json()[
        "items"
    ]
    assert log[0]["status"] == "delivered"
    assert log[0]["webhook_id"] == item.headers["webhook-id"]
    assert log[0]["log"][0]["status_code"] == 204
    assert log[0]["log"][0]["latency_ms"] >= 0


def test_unsubscribed_events_and_other_keys_parcels_are_not_sent(
    client: TestClient, engine: Engine, receiver: Receiver
) -> None:
    register(client, receiver.url, ["parcel.picked_up"])
    parcel = announce(client, "SF0001")
    add_events(engine, parcel, EVENTS, NOW)
    dispatcher(engine, f"127.0.0.1:{receiver.port}").tick(NOW)
    assert [r.headers["webhook-id"] for r in receiver.received] == ["msg_3"]


def test_order_per_parcel_holds_through_a_failure_burst(
    client: TestClient, engine: Engine, receiver: Receiver, clock: Clock
) -> None:
    endpoint = register(client, receiver.url)
    for tracking_no in ("SF0001", "SF0002"):
        add_events(engine, announce(client, tracking_no), EVENTS, NOW)
    sender = dispatcher(engine, f"127.0.0.1:{receiver.port}")
    receiver.mode = "fail"
    now = NOW
    for _ in range(4):  # four failing rounds: only each parcel's first event is tried
        sender.tick(now)
        now += timedelta(minutes=5)
    assert receiver.tries == 2 * 4
    receiver.recover()
    sender.tick(now)
    assert order(receiver, endpoint["secret"]) == {"SF0001": EXPECTED, "SF0002": EXPECTED}
    assert statuses(engine) == ["delivered"] * 6


def test_a_receiver_down_ten_minutes_loses_nothing_and_gets_all_in_order(
    client: TestClient, engine: Engine, receiver: Receiver
) -> None:
    """Events keep coming while the receiver is down (500s, then a hang past the timeout);
    after it recovers everything arrives, each parcel's events in order."""
    endpoint = register(client, receiver.url)
    sender = dispatcher(engine, f"127.0.0.1:{receiver.port}")
    receiver.mode = "fail"
    now = NOW
    parcels = []
    for minute in range(10):
        tracking_no = f"SF{minute:04d}"
        parcels.append(tracking_no)
        add_events(engine, announce(client, tracking_no), EVENTS, now)
        if minute == 9:
            receiver.mode = "hang"  # the last minute: no answer at all (timeouts)
        sender.tick(now)
        now += timedelta(minutes=1)
    assert receiver.received == []
    receiver.recover()
    # The longest wait after the failures so far is well under 10 minutes of backoff
    # (5 s * 2**6 = 320 s), so the next tick 10 minutes on finds every head due.
    now += timedelta(minutes=10)
    while sender.tick(now).delivered:
        pass
    assert order(receiver, endpoint["secret"]) == {p: EXPECTED for p in parcels}
    assert set(statuses(engine)) == {"delivered"}


def webhook_attempts(outcome: str) -> float:
    value = metrics.WORKER.get_sample_value("locker_webhook_deliveries_total", {"outcome": outcome})
    return value or 0.0


def test_a_delivery_is_dead_after_the_retry_horizon_and_the_next_event_goes(
    client: TestClient, engine: Engine, receiver: Receiver
) -> None:
    endpoint = register(client, receiver.url)
    parcel = announce(client, "SF0001")
    sender = dispatcher(engine, f"127.0.0.1:{receiver.port}")
    receiver.mode = "fail"
    now, first = NOW, NOW
    before = {outcome: webhook_attempts(outcome) for outcome in ("failed", "dead")}
    attempts = 0
    while True:
        result = sender.tick(now)
        attempts += 1
        if result.dead:
            break
        with Session(engine) as session:
            now = session.exec(select(WebhookDelivery)).one().next_attempt_at
    # Waits of 5 s doubling to the 2 h cap (jitter 0 here: half of each): 5 s * 2**n / 2
    # reaches 1 h at n = 11; then 1 h each until 3 days: about 11 + (72 - 1) attempts.
    assert now - first >= core.RETRY_HORIZON  # at least 3 days of trying
    assert now - first < core.RETRY_HORIZON + timedelta(hours=1)
    assert 70 <= attempts <= 90
    assert statuses(engine) == ["dead"]
    # What Prometheus reads (docs/metrics.md): each failed try, then the one death.
    assert webhook_attempts("failed") - before["failed"] == attempts - 1
    assert webhook_attempts("dead") - before["dead"] == 1
    # The parcel's next event is no longer held back by the dead one.
    add_events(engine, parcel, ["in_locker"], now)
    receiver.recover()
    sender.tick(now)
    assert order(receiver, endpoint["secret"]) == {"SF0001": ["parcel.in_locker"]}
    # ... and the dead one can be replayed through the API.
    log = client.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries", headers=HEADERS).json()[
        "items"
    ]
    dead = next(d for d in log if d["status"] == "dead")
    assert len(dead["log"]) == attempts
    assert {a["status_code"] for a in dead["log"]} == {500}
    replay = client.post(
        f"/api/v1/webhooks/{endpoint['id']}/replay",
        json={"delivery_id": dead["id"]},
        headers=HEADERS,
    )
    assert replay.json() == {"queued": [dead["id"]]}
    sender.tick(now + timedelta(seconds=1))
    assert order(receiver, endpoint["secret"])["SF0001"][-1] == "parcel.announced"


def test_rotation_both_secrets_verify_in_the_grace_period_only_the_new_after(
    client: TestClient, engine: Engine, receiver: Receiver, clock: Clock
) -> None:
    endpoint = register(client, receiver.url)
    new = client.post(f"/api/v1/webhooks/{endpoint['id']}/rotate", headers=HEADERS).json()
    sender = dispatcher(engine, f"127.0.0.1:{receiver.port}")
    parcel = announce(client, "SF0001")
    sender.tick(NOW + timedelta(hours=1))
    in_grace = receiver.received[-1]
    assert len(in_grace.headers["webhook-signature"].split(" ")) == 2
    in_grace.verify(endpoint["secret"])
    in_grace.verify(new["secret"])
    after = NOW + core.ROTATION_GRACE + timedelta(seconds=1)
    add_events(engine, parcel, ["in_locker"], after)
    sender.tick(after)
    late = receiver.received[-1]
    late.verify(new["secret"])
    with pytest.raises(WebhookVerificationError):
        late.verify(endpoint["secret"])


def test_the_ssrf_guard_runs_again_at_send_time(
    client: TestClient, engine: Engine, receiver: Receiver
) -> None:
    """Registered while allow-listed; the operator drops the allow-list: nothing is sent."""
    endpoint = register(client, receiver.url)
    announce(client, "SF0001")
    dispatcher(engine, "nothing-allowed").tick(NOW)
    assert receiver.tries == 0
    log = client.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries", headers=HEADERS).json()[
        "items"
    ]
    assert "must be https" in log[0]["log"][0]["error"]


def test_an_endpoint_failing_for_five_days_is_disabled_and_the_owner_told(
    client: TestClient, engine: Engine, receiver: Receiver
) -> None:
    endpoint = register(client, receiver.url)
    sender = dispatcher(engine, f"127.0.0.1:{receiver.port}")
    receiver.mode = "fail"
    now: datetime = NOW
    # A new parcel a day (its announcement), the worker ticking every 2 hours (the longest
    # wait), the receiver failing throughout: 5 days and a tick are over 20 failures in a row.
    while now <= NOW + core.DISABLE_AFTER:
        add_events(engine, announce(client, f"SF{(now - NOW).days:04d}"), [], now)
        for _ in range(12):
            sender.tick(now)
            now += timedelta(hours=2)
    listed = client.get(f"/api/v1/webhooks/{endpoint['id']}", headers=HEADERS).json()
    assert listed["status"] == "disabled"
    assert "every attempt failed since" in listed["disabled_reason"]
    with Session(engine) as session:
        audit = session.exec(select(AuditLog)).all()
    assert [a.action for a in audit] == ["disable_webhook_endpoint"]
    assert audit[0].resource_id == "erp-1"
    # Disabled: nothing more is tried, and nothing is lost: enabling sends what waited.
    tries = receiver.tries
    sender.tick(now)
    assert receiver.tries == tries
    receiver.recover()
    assert client.post(f"/api/v1/webhooks/{endpoint['id']}/enable", headers=HEADERS).is_success
    while sender.tick(now).delivered:
        pass
    assert "pending" not in statuses(engine)


def test_replay_of_a_time_range_resends_in_order(
    client: TestClient, engine: Engine, receiver: Receiver
) -> None:
    endpoint = register(client, receiver.url)
    add_events(engine, announce(client, "SF0001"), EVENTS, NOW)
    sender = dispatcher(engine, f"127.0.0.1:{receiver.port}")
    sender.tick(NOW)
    assert len(receiver.received) == 3
    answer = client.post(
        f"/api/v1/webhooks/{endpoint['id']}/replay",
        json={
            "since": (NOW - timedelta(minutes=1)).isoformat(),
            "until": (NOW + timedelta(minutes=1)).isoformat(),
        },
        headers=HEADERS,
    )
    assert len(answer.json()["queued"]) == 3
    sender.tick(NOW + timedelta(seconds=1))
    events = [r.verify(endpoint["secret"])["type"] for r in receiver.received]
    assert events == EXPECTED * 2
    bad = client.post(
        f"/api/v1/webhooks/{endpoint['id']}/replay",
        json={"since": NOW.isoformat()},
        headers=HEADERS,
    )
    assert bad.status_code == 422


class Rebinding:
    """A DNS name that answers a public address once, then an internal one (a rebinding)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_dns_pinning_connects_to_the_address_the_guard_checked(
    client: TestClient, engine: Engine
) -> None:
    """The name is resolved once per send and the connection goes to the checked address (the
    Host header and TLS server name stay the name), so a rebinding to 127.0.0.1 never connects
    inside; a name with any internal address sends nothing at all."""
    client.app.state.webhook_resolve = lambda host, port: ["93.184.215.14"]
    endpoint = register(client, "https://hooks.example.com:8443/lockers")
    announce(client, "SF0001")
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    resolve = Rebinding(["93.184.215.14"], ["127.0.0.1"])
    mock = httpx.Client(transport=httpx.MockTransport(answer))
    result = dispatcher(engine, "none", resolve=resolve, client=mock).tick(NOW)
    assert result.delivered == 1 and resolve.asked == 1
    [request] = sent
    assert request.url.host == "93.184.215.14" and request.url.port == 8443
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    Webhook(endpoint["secret"]).verify(request.content, dict(request.headers))

    # Next event: the name now resolves inside too; the guard refuses before any connection.
    with Session(engine) as session:
        parcel_row_id = session.exec(select(WebhookDelivery.parcel_row_id)).one()
    add_events(engine, parcel_row_id, ["in_locker"], NOW)
    inside = dispatcher(
        engine, "none", resolve=lambda host, port: ["93.184.215.14", "127.0.0.1"], client=mock
    )
    assert inside.tick(NOW).retried == 1 and len(sent) == 1
    log = client.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries", headers=HEADERS).json()
    assert "non-public address" in log["items"][0]["log"][0]["error"]


def test_delivered_deliveries_past_the_retention_are_pruned_pending_and_dead_kept(
    client: TestClient, engine: Engine, receiver: Receiver
) -> None:
    """On the injected clock: nothing goes before the retention has passed; then the delivered
    delivery, its attempts and its outbox row go, while a dead one (it may be replayed) stays."""
    endpoint = register(client, receiver.url)
    announce(client, "SF0001")
    allow = f"127.0.0.1:{receiver.port}"
    assert dispatcher(engine, allow).tick(NOW).delivered == 1
    receiver.mode = "fail"
    announce(client, "SF0002")
    assert dispatcher(engine, allow).tick(NOW + timedelta(days=1)).retried == 1

    kept = dispatcher(engine, allow, retention=timedelta(days=30))
    assert kept.tick(NOW + timedelta(days=29)).pruned == 0
    assert statuses(engine) == ["delivered", "dead"]  # failing past its 3-day horizon

    sweeper = dispatcher(engine, allow, retention=timedelta(days=30))
    assert sweeper.tick(NOW + timedelta(days=31)).pruned == 1
    assert statuses(engine) == ["dead"]
    with Session(engine) as session:
        attempts = session.exec(select(WebhookAttempt)).all()
        assert len(attempts) == 2 and all(a.status_code == 500 for a in attempts)
        outbox = session.exec(select(WebhookOutbox.payload)).all()
    assert [payload["tracking_no"] for payload in outbox] == ["SF0002"]
    log = client.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries", headers=HEADERS).json()
    assert [item["status"] for item in log["items"]] == ["dead"]
    # The next sweep is an hour later on the worker's clock, not at every tick.
    assert sweeper.tick(NOW + timedelta(days=31, minutes=30)).pruned == 0
