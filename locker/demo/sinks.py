"""The demo's notice sinks: the fake Twilio and WeChat servers, and a page showing what they got.

The cloud worker sends notices exactly as in production, through the twilio library and WeChat's
HTTP API, only to base URLs on this machine (`cloud.fakes`). The "notices" page lists every
message the fakes accepted, newest first, so the person trying the demo reads the pickup code off
it and types it on a kiosk. `/notices.json` is the same list for scripts (`locker demo --story`).
Phones are masked, as everywhere; the text is shown whole, pickup code included: that is what
the recipient's phone would show.
"""

from __future__ import annotations

import html
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from http import HTTPStatus

import httpx

from cloud.core.phones import mask_phone
from cloud.fakes.background import BackgroundHttpServer, PageHandler
from cloud.fakes.twilio_server import FakeTwilio
from cloud.fakes.wechat_server import FakeWechat
from locker.demo import doors_page

HOST = "127.0.0.1"
SMS_FROM = "+15005550006"  # Twilio's magic test sender
WECHAT_APP_ID = "wx-locker-demo"
WECHAT_TEMPLATE_ID = "locker-demo-template"
REFRESH_S = 3


@dataclass(frozen=True)
class ShownNotice:
    """One message as the notices page shows it."""

    n: int  # 1 for the first message received, whichever channel
    channel: str  # "sms" or "wechat"
    to: str  # the phone, masked (a WeChat message shows the phone its openid is bound to)
    text: str
    link: str | None
    received_at: str  # RFC 3339 UTC


class NoticeSinks:
    """Fake Twilio and WeChat on free local ports, and the notices page on `page_port`."""

    def __init__(self, *, page_port: int = 0, wechat_bindings: dict[str, str] | None = None):
        self.twilio = FakeTwilio()
        self.wechat = FakeWechat(app_id=WECHAT_APP_ID)
        # phone -> openid, as the cloud has them bound: the page shows whose openid got what
        self.wechat_bindings = dict(wechat_bindings or {})
        self._phone_of = {openid: phone for phone, openid in self.wechat_bindings.items()}
        self.cabinets: list[doors_page.SimulatedCabinet] = []  # for the doors page
        self.http = httpx.Client(timeout=5)
        self._page = BackgroundHttpServer(_page_handler(self), HOST, page_port, name="notices-page")

    @property
    def page_url(self) -> str:
        return self._page.url

    def cloud_env(self) -> dict[str, str]:
        """The `LOCKER_CLOUD_*` variables that point a cloud worker or API at these fakes."""
        return {
            "LOCKER_CLOUD_TWILIO_BASE_URL": self.twilio.url,
            "LOCKER_CLOUD_TWILIO_ACCOUNT_SID": self.twilio.account_sid,
            "LOCKER_CLOUD_TWILIO_AUTH_TOKEN": self.twilio.auth_token,
            "LOCKER_CLOUD_TWILIO_FROM": SMS_FROM,
            "LOCKER_CLOUD_WECHAT_BASE_URL": self.wechat.url,
            "LOCKER_CLOUD_WECHAT_APP_ID": self.wechat.app_id,
            "LOCKER_CLOUD_WECHAT_APP_SECRET": self.wechat.app_secret,
            "LOCKER_CLOUD_WECHAT_TEMPLATE_ID": WECHAT_TEMPLATE_ID,
        }

    def start(self) -> NoticeSinks:
        self.twilio.start()
        self.wechat.start()
        self._page.start()
        return self

    def stop(self) -> None:
        self._page.stop()
        self.http.close()
        self.twilio.stop()
        self.wechat.stop()

    def notices(self) -> list[ShownNotice]:
        """Every message received so far, oldest first, each at the time its fake received it
        (numbered in that order: an SMS and a WeChat message interleave as they were sent)."""
        with self.twilio.lock:
            sms = list(self.twilio.messages)
        with self.wechat.lock:
            wechat = list(self.wechat.messages)
        got: list[tuple[datetime, int, str, str, str, str | None]] = []
        for message in sms:
            got.append((message.received_at, 0, "sms", mask_phone(message.to), message.body, None))
        for template in wechat:
            phone = self._phone_of.get(template.touser)
            to = mask_phone(phone) if phone else f"openid {template.touser}"
            got.append((template.received_at, 1, "wechat", to, template.text, template.url))
        got.sort(key=lambda item: (item[0], item[1]))
        return [
            ShownNotice(n, channel, to, text, url, _rfc3339(at))
            for n, (at, _order, channel, to, text, url) in enumerate(got, start=1)
        ]


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def demo_openid() -> str:
    """A made-up WeChat openid, shaped like the real ones (28 characters)."""
    return "o" + secrets.token_urlsafe(20)[:27]


# --- the page ---------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; background: #f6f7f9; color: #1b1f24; }
h1 { font-size: 1.4rem; } p.hint { color: #555; }
table { border-collapse: collapse; width: 100%; background: white; }
th, td { text-align: left; padding: .5rem .75rem; border-bottom: 1px solid #e3e6ea;
         vertical-align: top; }
td.text { white-space: pre-wrap; font-size: 1.05rem; }
span.sms { color: #0b5cad; } span.wechat { color: #07a35a; }
"""


def render_page(notices: list[ShownNotice]) -> str:
    """The notices page's HTML (zh-CN and English), newest message first."""
    rows = "".join(
        "<tr>"
        f"<td>{notice.n}</td><td>{html.escape(notice.received_at)}</td>"
        f'<td><span class="{notice.channel}">'
        f"{'短信 SMS' if notice.channel == 'sms' else '微信 WeChat'}</span></td>"
        f"<td>{html.escape(notice.to)}</td>"
        f'<td class="text">{html.escape(notice.text)}'
        + (
            f'<br><a href="{html.escape(notice.link)}">{html.escape(notice.link)}</a>'
            if notice.link
            else ""
        )
        + "</td></tr>"
        for notice in reversed(notices)
    )
    if not rows:
        rows = (
            '<tr><td colspan="5">还没有通知。No notice yet: deposit a parcel at a kiosk.</td></tr>'
        )
    return (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        f"<meta http-equiv='refresh' content='{REFRESH_S}'>"
        "<title>通知 Notices — parcel lockers demo</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>收件人和快递员收到的通知 · What recipients and couriers received</h1>"
        "<p class='hint'>本页代替短信和微信：取件码在这里，输入到柜机上即可取件。"
        " This page stands in for SMS and WeChat: read the pickup code here and type it on a"
        f" kiosk. It refreshes every {REFRESH_S} s.</p>"
        "<table><thead><tr><th>#</th><th>时间 received (UTC)</th><th>渠道 channel</th>"
        "<th>发给 to</th><th>内容 text</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></body></html>"
    )


def _page_handler(sinks: NoticeSinks) -> type[PageHandler]:
    class Handler(PageHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/doors":
                page = doors_page.render(sinks.cabinets, sinks.http)
                self.send_body(HTTPStatus.OK, "text/html", page.encode())
            elif path in ("/", "/notices"):
                self.send_body(HTTPStatus.OK, "text/html", render_page(sinks.notices()).encode())
            elif path == "/notices.json":
                body = [asdict(notice) for notice in sinks.notices()]
                self.send_json(HTTPStatus.OK, body)
            else:
                error = {"error": f"no page {path}: try / or /notices.json"}
                self.send_json(HTTPStatus.NOT_FOUND, error)

        def do_POST(self) -> None:
            # /doors/{cabinet}/{door}/{action}: a button of the doors page
            parts = self.path.split("?", 1)[0].strip("/").split("/")
            if len(parts) != 4 or parts[0] != "doors":
                error = {"error": f"no POST route {self.path}"}
                self.send_json(HTTPStatus.NOT_FOUND, error)
                return
            refused = doors_page.press(sinks.cabinets, sinks.http, *parts[1:])
            if refused:
                page = doors_page.render(sinks.cabinets, sinks.http, refused)
                self.send_body(HTTPStatus.CONFLICT, "text/html", page.encode())
                return
            self.send_response(HTTPStatus.SEE_OTHER)
            self.send_header("Location", "/doors")
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler
