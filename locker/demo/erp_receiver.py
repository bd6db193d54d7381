"""The demo's reference ERP receiver: where the shop's ERP would take the lockers' webhooks.

A small HTTP server of its own (its own port, started and stopped with the demo). `POST /hooks/...`
is the endpoint URL the ERP registers with the cloud; each request is verified with the
`standardwebhooks` package, an implementation independent of the cloud's sender, against the
secrets the ERP was shown at registration (`POST /secrets`, as an operator pastes one into the
ERP's settings). A verified request answers 204 at once, as the specification asks; one that
fails verification answers 400 (the cloud retries it, and the page shows it as INVALID).

`/` is the page that lists what arrived (zh-CN and English, a table on a laptop, cards on a
phone), `/webhooks.json` the same for scripts (`locker demo --story`). Phones never reach the
ERP's payload, so nothing here needs masking.
"""

from __future__ import annotations

import html
import json
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from zoneinfo import ZoneInfo

from standardwebhooks import Webhook, WebhookVerificationError

from cloud.fakes.background import BackgroundHttpServer, PageHandler

HOST = "127.0.0.1"
HOOK_PATH = "/hooks/lockers"
REFRESH_S = 3
MAX_BODY = 256 * 1024  # a parcel event is under 1 kB; anything far bigger is not ours
KEPT = 500  # the demo keeps (and its page shows) the newest this many


@dataclass(frozen=True)
class ReceivedWebhook:
    """One request that reached the hook, as the page shows it."""

    n: int
    received_at: str  # RFC 3339 UTC, the receiver's clock
    webhook_id: str
    verified: bool
    error: str | None  # why it failed verification
    duplicate: bool  # a webhook-id seen (verified) before: a retry or replay the ERP drops
    event_type: str
    tracking_no: str
    order_no: str
    parcel_id: str
    cabinet_id: str
    status: str
    order_state: str
    erp_state: str
    shipx_status: str


class ErpReceiver:
    """The reference receiver on `port` (0: a free one); `start()`, then `stop()`."""

    def __init__(
        self, *, port: int = 0, zone: str = "Asia/Shanghai", kept: int | None = KEPT
    ) -> None:
        """`kept`: how many of the newest webhooks to keep (None: every one, for a checker that
        reads the whole history; a long demo keeps its memory bounded)."""
        self.zone = ZoneInfo(zone)
        self.kept = kept
        self._secrets: list[str] = []
        self._received: list[ReceivedWebhook] = []
        self._verified_ids: set[str] = set()
        self._lock = threading.Lock()
        self._http = BackgroundHttpServer(_handler(self), HOST, port, name="erp-receiver")

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def url(self) -> str:
        return self._http.url

    @property
    def hook_url(self) -> str:
        """The URL to register with the cloud (`POST /api/v1/webhooks`)."""
        return f"{self.url}{HOOK_PATH}"

    def start(self) -> ErpReceiver:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def add_secret(self, secret: str) -> None:
        """Trust a signing secret shown at registration (or rotation); ValueError if it is not
        one (`whsec_` and base64)."""
        if not secret.startswith("whsec_"):
            raise ValueError("a Standard Webhooks secret starts with whsec_")
        try:
            Webhook(secret)
        except Exception as err:  # the library's own check of the base64 key
            raise ValueError(f"not a signing secret: {err}") from None
        with self._lock:
            if secret not in self._secrets:
                self._secrets.append(secret)

    @property
    def secrets_known(self) -> int:
        with self._lock:
            return len(self._secrets)

    def received(self) -> list[ReceivedWebhook]:
        """Everything that reached the hook, oldest first."""
        with self._lock:
            return list(self._received)

    def receive(self, body: bytes, headers: dict[str, str]) -> ReceivedWebhook:
        """Verify one request against every known secret; record it; return the record."""
        with self._lock:
            secrets = list(self._secrets)
        event: dict[str, Any] | None = None
        error = "no signing secret configured yet: register the webhook first"
        for secret in secrets:
            try:
                event = Webhook(secret).verify(body, headers)
                break
            except WebhookVerificationError as err:
                error = str(err) or type(err).__name__
        shown = event if event is not None else _unverified(body)
        data = shown.get("data") if isinstance(shown.get("data"), dict) else {}
        webhook_id = headers.get("webhook-id", "")
        with self._lock:
            duplicate = event is not None and webhook_id in self._verified_ids
            if event is not None:
                self._verified_ids.add(webhook_id)
            record = ReceivedWebhook(
                n=len(self._received) + 1,
                received_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                webhook_id=webhook_id[:100],
                verified=event is not None,
                error=None if event is not None else error[:200],
                duplicate=duplicate,
                event_type=_text(shown.get("type")),
                tracking_no=_text(data.get("tracking_no")),
                order_no=_text(data.get("order_no")),
                parcel_id=_text(data.get("parcel_id")),
                cabinet_id=_text(data.get("cabinet_id")),
                status=_text(data.get("status")),
                order_state=_text(data.get("order_state")),
                erp_state=_text(data.get("erp_state")),
                shipx_status=_text(data.get("shipx_status")),
            )
            self._received.append(record)
            if self.kept is not None:
                del self._received[: -self.kept]
        return record

    def local_time(self, stamp: str) -> str:
        """An RFC 3339 UTC time as the site's wall clock shows it."""
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(self.zone)
        return at.strftime("%Y-%m-%d %H:%M:%S")


def _unverified(body: bytes) -> dict[str, Any]:
    """What an unverified body claims, for the page only (never acted on)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _text(value: object) -> str:
    return "" if value is None else str(value)[:200]


# --- the page -------------------------------------------------------------------------------------

_STYLE = """
:root { --ok: #0a7a45; --ok-bg: #e3f6ec; --bad: #b42318; --bad-bg: #fdecea; --line: #e3e6ea; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Noto Sans CJK SC", "PingFang SC", sans-serif;
       margin: 0; background: #f4f6f8; color: #1b1f24; line-height: 1.45; }
header { background: #1f3a5f; color: white; padding: 1.25rem 2rem; }
header > div { max-width: calc(1280px - 4rem); margin: 0 auto; }
header h1 { margin: 0; font-size: 1.35rem; font-weight: 600; }
header p { margin: .35rem 0 0; color: #d5e1f0; font-size: .95rem; }
main { padding: 1.25rem 2rem 2rem; max-width: 1280px; margin: 0 auto; }
.facts { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; margin: 0 0 1rem; font-size: .95rem; }
.facts code { background: white; border: 1px solid var(--line); border-radius: 4px;
              padding: .05rem .35rem; word-break: break-all; }
table { border-collapse: collapse; width: 100%; background: white; border-radius: 8px;
        overflow: hidden; box-shadow: 0 1px 2px rgba(0,0,0,.06); }
th, td { text-align: left; padding: .6rem .75rem; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { background: #eef1f5; font-size: .85rem; font-weight: 600; color: #3d4753; }
td.col-n { color: #6b7580; width: 2.5rem; }
td.col-time { white-space: nowrap; }
.event { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .92rem; }
.sub { display: block; color: #5c6670; font-size: .85rem; }
.order-state { font-size: 1.05rem; font-weight: 600; }
.badge { display: inline-block; border-radius: 999px; padding: .15rem .6rem; font-size: .88rem;
         font-weight: 600; white-space: nowrap; }
.badge.ok { color: var(--ok); background: var(--ok-bg); }
.badge.bad { color: var(--bad); background: var(--bad-bg); }
tr.invalid td { background: #fff8f7; }
.empty { padding: 1.5rem; text-align: center; color: #5c6670; }
@media (max-width: 700px) {
  header { padding: 1rem; } header h1 { font-size: 1.1rem; } header p { font-size: .85rem; }
  main { padding: 1rem .75rem; }
  .facts { flex-direction: column; gap: .3rem; }
  thead { display: none; }
  table, tbody, tr, td { display: block; width: 100%; }
  table { background: none; box-shadow: none; }
  tr { background: white; border-radius: 8px; margin: 0 0 .75rem; padding: .5rem .75rem;
       box-shadow: 0 1px 2px rgba(0,0,0,.08); }
  tr.invalid, tr.invalid td { background: #fff8f7; }
  td { border: none; padding: .3rem 0; display: flex; gap: .75rem; }
  td::before { content: attr(data-label); flex: 0 0 6.5rem; color: #5c6670; font-size: .8rem;
               padding-top: .15rem; }
  td .v { flex: 1; min-width: 0; overflow-wrap: anywhere; }
  td.col-n, td.col-time { width: 100%; white-space: normal; }
  .badge { white-space: normal; }
}
"""

_COLUMNS = (
    ("#", "n"),
    ("时间 time", "time"),
    ("事件 event", "event"),
    ("包裹 / 订单 parcel / shipment", "parcel"),
    ("订单状态 order state", "state"),
    ("签名 signature", "signature"),
)


def render_page(receiver: ErpReceiver) -> str:
    """The receiver's page (zh-CN and English), newest webhook first."""
    items = receiver.received()
    rows = "".join(_row(receiver, item) for item in reversed(items[-KEPT:]))
    if not rows:
        rows = (
            f"<tr><td class='empty' colspan='{len(_COLUMNS)}'>还没有收到 webhook。"
            " No webhook yet: deposit or pick up a parcel the shop announced.</td></tr>"
        )
    head = "".join(f"<th>{html.escape(label)}</th>" for label, _ in _COLUMNS)
    verified = sum(item.verified for item in items)
    zone = receiver.zone.key
    return (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<meta http-equiv='refresh' content='{REFRESH_S}'>"
        "<title>ERP 接收端 · ERP webhook receiver — parcel lockers demo</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<header><div><h1>商城 ERP 收到的快递柜通知 · Webhooks the shop's ERP received</h1>"
        "<p>每条请求都用 standardwebhooks 库和注册时给出的密钥校验签名。"
        " Each request is verified with the standardwebhooks library and the secret shown at"
        f" registration. 每 {REFRESH_S} 秒刷新 · Refreshes every {REFRESH_S} s.</p></div></header>"
        "<main><div class='facts'>"
        f"<span>接收地址 endpoint: <code>{html.escape(receiver.hook_url)}</code></span>"
        f"<span>密钥 secrets: {receiver.secrets_known}</span>"
        f"<span>已收到 received: {len(items)} (✓ {verified})</span>"
        f"<span>时间为 times in {html.escape(zone)}</span></div>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        "</main></body></html>"
    )


def _row(receiver: ErpReceiver, item: ReceivedWebhook) -> str:
    esc = html.escape
    if item.verified:
        badge = "<span class='badge ok'>✓ 签名有效 signature verified</span>"
        if item.duplicate:
            badge += "<span class='sub'>重复，已忽略 duplicate id: dropped</span>"
    else:
        badge = "<span class='badge bad'>✗ 签名无效 signature INVALID</span>"
        badge += f"<span class='sub'>{esc(item.error or '')}</span>"
    where = " · ".join(
        part
        for part in (f"订单 order {item.order_no}" if item.order_no else "", item.cabinet_id)
        if part
    )
    states = " · ".join(part for part in (item.erp_state, item.shipx_status) if part)
    cells = {
        "n": f"{item.n}",
        "time": f"{esc(receiver.local_time(item.received_at))}"
        f"<span class='sub'>{esc(item.webhook_id)}</span>",
        "event": f"<span class='event'>{esc(item.event_type or '?')}</span>",
        "parcel": f"{esc(item.tracking_no or '-')}<span class='sub'>{esc(where)}</span>",
        "state": f"<span class='order-state'>{esc(item.order_state or '-')}</span>"
        f"<span class='sub'>{esc(states)}</span>",
        "signature": badge,
    }
    tds = "".join(
        f"<td class='col-{key}' data-label='{esc(label)}'><div class='v'>{cells[key]}</div></td>"
        for label, key in _COLUMNS
    )
    return f"<tr class='{'ok' if item.verified else 'invalid'}'>{tds}</tr>"


def _handler(receiver: ErpReceiver) -> type[PageHandler]:
    class Handler(PageHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/":
                self.send_body(HTTPStatus.OK, "text/html", render_page(receiver).encode())
            elif path == "/webhooks.json":
                body = [asdict(item) for item in receiver.received()]
                self.send_json(HTTPStatus.OK, body)
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no page {path}: try / or /webhooks.json")

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
                return
            body = self.rfile.read(length)
            if path.startswith("/hooks/"):
                headers = {k.lower(): v for k, v in self.headers.items()}
                record = receiver.receive(body, headers)
                if record.verified:
                    self.send_body(HTTPStatus.NO_CONTENT, "text/plain", b"")
                else:
                    self._error(HTTPStatus.BAD_REQUEST, f"signature INVALID: {record.error}")
            elif path == "/secrets":
                try:
                    receiver.add_secret(str(json.loads(body or b"{}").get("secret", "")))
                except (ValueError, AttributeError) as err:
                    self._error(HTTPStatus.UNPROCESSABLE_ENTITY, f"secret: {err}")
                    return
                self.send_body(HTTPStatus.NO_CONTENT, "text/plain", b"")
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no POST route {path}: try {HOOK_PATH}")

        def _error(self, status: HTTPStatus, message: str) -> None:
            self.send_json(status, {"error": message})

    return Handler
