"""A local fake of Twilio's Messages API for tests and the demo: records messages, injects failures.

It speaks what the `twilio` library speaks: `POST /2010-04-01/Accounts/{sid}/Messages.json` with
basic auth and form fields To, From, Body, StatusCallback; 201 with the message resource as JSON;
errors in Twilio's shape `{"code", "message", "more_info", "status"}`. `status_callback` builds the
signed form Twilio would POST to a message's StatusCallback, so the receiving side is tested with
the real `RequestValidator` arithmetic.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from twilio.request_validator import RequestValidator

from cloud.fakes._http import FakeServer, Request

_MESSAGES = re.compile(r"/2010-04-01/Accounts/(?P<sid>AC[0-9a-zA-Z]+)/Messages\.json")
_MESSAGE = re.compile(r"/2010-04-01/Accounts/(?P<sid>AC[0-9a-zA-Z]+)/Messages/(?P<msg>SM\w+)\.json")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


@dataclass(frozen=True)
class ReceivedMessage:
    """A message the fake accepted."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str = field(repr=False)
    status_callback: str | None
    received_at: datetime


@dataclass(frozen=True)
class Failure:
    """An injected failure: the HTTP status and Twilio error code the next request gets."""

    status: int
    code: int
    message: str


SERVER_ERROR = Failure(500, 20500, "An internal server error has occurred")
INVALID_NUMBER = Failure(400, 21211, "The 'To' number is not a valid phone number.")
TOO_MANY_REQUESTS = Failure(429, 20429, "Too Many Requests")


class FakeTwilio(FakeServer):
    """Twilio's Messages API on 127.0.0.1; `messages` is what it accepted, in order."""

    def __init__(self, *, account_sid: str | None = None, auth_token: str | None = None) -> None:
        super().__init__()
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.messages: list[ReceivedMessage] = []
        self.requests = 0  # every Messages POST, failed or not
        self._failures: deque[Failure] = deque()
        self._invalid_numbers: set[str] = set()
        self._statuses: dict[str, str] = {}

    # --- what tests and the demo drive ---------------------------------------------------------

    def fail_next(self, count: int = 1, failure: Failure = SERVER_ERROR) -> None:
        """Make the next `count` Messages requests fail with `failure`, nothing recorded."""
        with self.lock:
            self._failures.extend([failure] * count)

    def reject_number(self, phone: str) -> None:
        """Refuse every message to `phone` with 21211 (invalid 'To' number), as Twilio would."""
        with self.lock:
            self._invalid_numbers.add(phone)

    def status_callback(self, sid: str, status: str) -> tuple[str, dict[str, str], str]:
        """Return (url, form, X-Twilio-Signature) of the callback Twilio would POST for `sid`."""
        with self.lock:
            message = next(m for m in self.messages if m.sid == sid)
            self._statuses[sid] = status
        if not message.status_callback:
            raise LookupError(f"message {sid} asked for no status callback")
        form = {
            "AccountSid": message.account_sid,
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "To": message.to,
            "From": message.from_,
            "ApiVersion": "2010-04-01",
        }
        if status == "undelivered":
            form["ErrorCode"] = "30003"
        signature = RequestValidator(self.auth_token).compute_signature(
            message.status_callback, form
        )
        return message.status_callback, form, signature

    def sent_to(self, phone: str) -> list[ReceivedMessage]:
        """Return the messages accepted for `phone`."""
        with self.lock:
            return [m for m in self.messages if m.to == phone]

    # --- the API ---------------------------------------------------------------------------------

    def handle(self, request: Request) -> tuple[int, Any]:
        if request.method == "POST" and (match := _MESSAGES.fullmatch(request.path)):
            return self._create(request, match["sid"])
        if request.method == "GET" and (match := _MESSAGE.fullmatch(request.path)):
            return self._fetch(request, match["sid"], match["msg"])
        return _error(404, 20404, f"The requested resource {request.path} was not found")

    def _authorised(self, request: Request, sid: str) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return sid == self.account_sid and request.headers.get("Authorization") == (
            f"Basic {expected}"
        )

    def _create(self, request: Request, sid: str) -> tuple[int, Any]:
        if not self._authorised(request, sid):
            return _error(401, 20003, "Authenticate")
        form = request.form()
        with self.lock:
            self.requests += 1
            if self._failures:
                failure = self._failures.popleft()
                return _error(failure.status, failure.code, failure.message)
            to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
            if not to:
                return _error(400, 21604, "A 'To' phone number is required.")
            if not _E164.fullmatch(to) or to in self._invalid_numbers:
                return _error(400, 21211, INVALID_NUMBER.message)
            if not from_:
                return _error(400, 21603, "A 'From' phone number is required.")
            if not body:
                return _error(400, 21602, "Message body is required.")
            message = ReceivedMessage(
                sid="SM" + secrets.token_hex(16),
                account_sid=sid,
                to=to,
                from_=from_,
                body=body,
                status_callback=form.get("StatusCallback") or None,
                received_at=datetime.now(UTC),
            )
            self.messages.append(message)
            self._statuses[message.sid] = "queued"
        return 201, self._resource(message)

    def _fetch(self, request: Request, sid: str, msg: str) -> tuple[int, Any]:
        if not self._authorised(request, sid):
            return _error(401, 20003, "Authenticate")
        with self.lock:
            message = next((m for m in self.messages if m.sid == msg), None)
        if message is None:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        return 200, self._resource(message)

    def _resource(self, message: ReceivedMessage) -> dict[str, Any]:
        created = format_datetime(message.received_at)  # Twilio's RFC 2822 dates
        return {
            "sid": message.sid,
            "account_sid": message.account_sid,
            "to": message.to,
            "from": message.from_,
            "body": message.body,
            "status": self._statuses.get(message.sid, "queued"),
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "num_segments": "1",
            "num_media": "0",
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "messaging_service_sid": None,
            "date_created": created,
            "date_updated": created,
            "date_sent": None,
            "uri": f"/2010-04-01/Accounts/{message.account_sid}/Messages/{message.sid}.json",
            "subresource_uris": {},
        }


def _error(status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
