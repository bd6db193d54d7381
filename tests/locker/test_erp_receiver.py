"""The demo's reference ERP receiver over real HTTP: a request signed with the secret it was
given is verified (204) and listed as such; a forged or tampered one is refused (400) and listed
as INVALID; a retry with the same webhook-id is marked a duplicate; the page is zh-CN and
English."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks import Webhook

from locker.demo.erp_receiver import ErpReceiver

SECRET = "whsec_" + base64.b64encode(b"s" * 24).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 24).decode()


@pytest.fixture
def receiver() -> Iterator[ErpReceiver]:
    server = ErpReceiver().start()
    try:
        yield server
    finally:
        server.stop()


def event(tracking_no: str, kind: str = "in_locker") -> bytes:
    data = {
        "status": kind,
        "erp_state": "awaiting_pickup",
        "order_state": "已发货",
        "shipx_status": "ready_to_pickup",
        "tracking_no": tracking_no,
        "order_no": "SO-1",
        "parcel_id": "P000001",
        "cabinet_id": "cab-1",
    }
    return json.dumps({"type": f"parcel.{kind}", "timestamp": "x", "data": data}).encode()


def signed(body: bytes, secret: str, msg_id: str) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }


def test_signed_requests_are_verified_forged_ones_listed_invalid(receiver: ErpReceiver) -> None:
    with httpx.Client(base_url=receiver.url, timeout=5) as http:
        body = event("SF1")
        before = http.post("/hooks/lockers", content=body, headers=signed(body, SECRET, "msg_1"))
        assert before.status_code == 400  # no secret yet: nothing verifies
        refused = http.post("/secrets", json={"secret": "not-a-secret"})
        assert refused.status_code == 422 and "whsec_" in refused.json()["error"]
        assert http.post("/secrets", json={"secret": SECRET}).status_code == 204

        assert (
            http.post(
                "/hooks/lockers", content=body, headers=signed(body, SECRET, "msg_1")
            ).status_code
            == 204
        )
        again = http.post("/hooks/lockers", content=body, headers=signed(body, SECRET, "msg_1"))
        assert again.status_code == 204  # a retry: answered, marked a duplicate
        forged = http.post("/hooks/lockers", content=body, headers=signed(body, OTHER, "msg_2"))
        assert forged.status_code == 400 and "INVALID" in forged.json()["error"]
        headers = signed(body, SECRET, "msg_3")
        tampered = body.replace(b"SF1", b"SF9")
        assert http.post("/hooks/lockers", content=tampered, headers=headers).status_code == 400

        items = http.get("/webhooks.json").json()
        assert [(i["webhook_id"], i["verified"], i["duplicate"]) for i in items] == [
            ("msg_1", False, False),
            ("msg_1", True, False),
            ("msg_1", True, True),
            ("msg_2", False, False),
            ("msg_3", False, False),
        ]
        assert items[1]["event_type"] == "parcel.in_locker"
        assert (items[1]["tracking_no"], items[1]["order_state"]) == ("SF1", "已发货")

        page = http.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        text = page.text
        assert text.count("signature verified") == 2 and text.count("signature INVALID") == 3
        assert "签名有效" in text and "签名无效" in text and "SF9" in text
        assert "name='viewport'" in text  # readable on a phone
        assert text.index("msg_3") < text.index("msg_2")  # newest first


@pytest.mark.parametrize("kept", [3, None])
def test_the_demo_keeps_the_newest_webhooks_and_a_checker_keeps_every_one(
    kept: int | None,
) -> None:
    """The demo's receiver keeps the newest few (its page shows those); the fault campaign's
    checker reads every webhook of a long run, so its receiver keeps all of them (a bound of 500
    once made a 1,000-cycle run's early parcels look never delivered)."""
    from locker.chaos.cluster import _ProxiedStack
    from locker.demo.erp_receiver import KEPT
    from locker.demo.stack import DemoStack

    assert (DemoStack.receiver_kept, _ProxiedStack.receiver_kept) == (KEPT, None)
    receiver = ErpReceiver(kept=kept)  # not started: `receive` is what the handler calls
    receiver.add_secret(SECRET)
    for n in range(1, 6):
        body = event(f"SF{n}")
        receiver.receive(body, signed(body, SECRET, f"msg_{n}"))
    ids = [item.webhook_id for item in receiver.received()]
    assert ids == ([f"msg_{n}" for n in (3, 4, 5)] if kept else [f"msg_{n}" for n in range(1, 6)])
