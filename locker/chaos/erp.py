"""The shop's ERP: it registers its webhook endpoint, announces shipments with their size (so the
cloud holds a door for each), cancels one a courier never brought, and takes the webhooks at the
reference receiver (`locker/demo/erp_receiver.py`, in the campaign's process), which verifies each
signature with the secret the registration showed once.
"""

from __future__ import annotations

from typing import Any

import httpx

from locker.demo.erp_receiver import ErpReceiver


class ErpFailed(Exception):
    """An ERP call did not work; the message says which and what the API answered."""


class Erp:
    def __init__(self, http: httpx.Client, api_url: str, key: str) -> None:
        self.http = http
        self.api = f"{api_url.rstrip('/')}/api/v1"
        self.headers = {"X-API-Key": key}

    def register(self, receiver: ErpReceiver) -> str:
        """Register the receiver for every parcel event; give it the secret. Return the id."""
        answer = self.http.post(
            f"{self.api}/webhooks",
            headers=self.headers,
            json={"url": receiver.hook_url, "event_types": ["*"]},
        )
        if answer.status_code != 201:
            raise ErpFailed(f"registering the webhook answered {answer.status_code}: {answer.text}")
        receiver.add_secret(answer.json()["secret"])
        return str(answer.json()["id"])

    def announce(self, *, tracking_no: str, phone: str, cabinet_id: str, size: str) -> str:
        """POST the shipment (retried with one Idempotency-Key, as an ERP's queue does): its id."""
        body = {
            "order_no": f"SO-{tracking_no}",
            "tracking_no": tracking_no,
            "phone": phone,
            "cabinet_id": cabinet_id,
            "size": size,
        }
        answer = self._post("/shipments", body, key=f"announce-{tracking_no}")
        if answer.status_code != 201:
            raise ErpFailed(f"POST /shipments answered {answer.status_code}: {answer.text[:200]}")
        return str(answer.json()["id"])

    def cancel(self, shipment_id: str, tracking_no: str) -> dict[str, Any]:
        answer = self._post(
            f"/shipments/{shipment_id}/cancel",
            {"reason": "the courier never brought it"},
            key=f"cancel-{tracking_no}",
        )
        if answer.status_code != 200:
            raise ErpFailed(f"cancel answered {answer.status_code}: {answer.text[:200]}")
        return answer.json()

    def _post(self, path: str, body: dict[str, Any], *, key: str) -> httpx.Response:
        return self.http.post(
            f"{self.api}{path}", headers={**self.headers, "Idempotency-Key": key}, json=body
        )
