"""The recipient's phone: the notices it received (SMS or WeChat), the notice's pickup page with
the code's QR, and scan-to-open (the cabinet's screen QR, a one-time code by SMS, one tap).

Everything goes over the interfaces a phone uses: the fakes' inboxes stand in for the SMS app
and WeChat, the cloud's phone pages and `/api/v1/scan` for the browser. Each phone comes from an
address of its own (`X-Forwarded-For`, which uvicorn trusts from 127.0.0.1, where the site's
reverse proxy runs), as real phones on mobile networks do: the API's per-address limits are for
one attacker, not a city's recipients.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httpx

CODE = re.compile(r"(?:取件码|[Pp]ickup code)\s*(\d{6,10})")
OTP = re.compile(r"(?:(\d{6,10}) is your one-time code|验证码\s*(\d{6,10}))")


@dataclass(frozen=True)
class Notice:
    """One message a recipient's phone shows: its channel, text and link (WeChat's only)."""

    channel: str  # "sms" | "wechat"
    to: str  # the phone (SMS) or the openid (WeChat)
    text: str
    link: str | None = None


def openid_of(phone: str) -> str:
    """The made-up WeChat openid of a recipient bound to WeChat (28 characters, as WeChat's)."""
    return "o" + hashlib.sha256(f"chaos-wechat-{phone}".encode()).hexdigest()[:27]


def address_of(phone: str) -> str:
    """The phone's network address as the API sees it behind its proxy (one per phone)."""
    n = int(hashlib.sha256(phone.encode()).hexdigest()[:6], 16)
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255 or 1}"


def pickup_code(notices: list[Notice], phone: str, tracking_no: str) -> tuple[str, str | None]:
    """The pickup code for a parcel off the phone's notices (and the WeChat link beside it),
    or ("", None) while none has come."""
    openid = openid_of(phone)
    for notice in notices:
        if notice.to not in (phone, openid) or tracking_no not in notice.text:
            continue
        if match := CODE.search(notice.text):
            return match.group(1), notice.link
    return "", None


class PhoneFailed(Exception):
    """A step on the phone did not work; the message says which."""


class Phone:
    """One recipient's browser against the cloud's phone pages and scan-to-open API."""

    def __init__(self, http: httpx.Client, api_url: str, phone: str) -> None:
        self.http = http
        self.api_url = api_url.rstrip("/")
        self.phone = phone
        self.headers = {"X-Forwarded-For": address_of(phone), "Accept-Language": "en"}

    # --- the notice's pickup page and its QR -----------------------------------------------------

    def qr_from_link(self, link: str) -> str:
        """Open the notice's link: the page, then the QR it draws from the fragment; return what
        the QR encodes (checked: the page's SVG is that payload's QR)."""
        from cloud.services.scan_open import qr_svg

        parts = urlsplit(link)
        page = self.http.get(f"{self.api_url}{parts.path}", headers=self.headers)
        if page.status_code != 200:
            raise PhoneFailed(f"the pickup page answered {page.status_code}")
        payload = unquote(parts.fragment).split(";")[0]
        drawn = self.http.post(
            f"{self.api_url}{parts.path}/qr", json={"payload": payload}, headers=self.headers
        )
        if drawn.status_code != 200:
            raise PhoneFailed(f"the page's QR answered {drawn.status_code}: {drawn.text[:100]}")
        if drawn.text != qr_svg(payload):
            raise PhoneFailed("the page drew a QR of something else than its link's code")
        return payload

    # --- scan-to-open ----------------------------------------------------------------------------

    def scan_to_open(
        self,
        scan_url: str,
        otp_of: Callable[[int], str | None],
        otps_before: int,
        compartment: str,
        wait: Callable[[Callable[[], object], str], object],
    ) -> dict:
        """The screen's QR opened (`scan_url`), the phone proven by SMS, the door opened with
        one tap: return the API's answer to the open (the command it queued)."""
        parts = urlsplit(scan_url)
        page = self.http.get(f"{self.api_url}{parts.path}", headers=self.headers)
        if page.status_code != 200:
            raise PhoneFailed(f"the scan page answered {page.status_code}")
        _s, cab, nonce = parts.path.strip("/").split("/")
        api = f"{self.api_url}/api/v1/scan/{cab}"
        asked = self.http.post(
            f"{api}/{nonce}/otp", json={"phone": self.phone, "language": "en"}, headers=self.headers
        )
        if asked.status_code != 202:
            raise PhoneFailed(f"asking for a code answered {asked.status_code}: {asked.text[:120]}")
        code = wait(lambda: otp_of(otps_before), "the scan-to-open SMS code")
        verified = self.http.post(
            f"{api}/{nonce}/verify",
            json={"phone": self.phone, "code": code},
            headers=self.headers,
        )
        if verified.status_code != 200:
            raise PhoneFailed(f"verify answered {verified.status_code}: {verified.text[:120]}")
        session = verified.json()
        mine = [p for p in session["parcels"] if p["compartment"] == compartment]
        if not mine:
            raise PhoneFailed(f"the session lists no parcel in door {compartment}")
        opened = self.http.post(
            f"{api}/open",
            json={"token": session["token"], "parcel_id": mine[0]["parcel_id"]},
            headers=self.headers,
        )
        if opened.status_code != 202:
            raise PhoneFailed(f"open answered {opened.status_code}: {opened.text[:120]}")
        return opened.json()


def otps(notices: list[Notice], phone: str) -> list[str]:
    """The one-time scan-to-open codes texted to `phone`, oldest first."""
    found = []
    for notice in notices:
        if notice.channel == "sms" and notice.to == phone and (match := OTP.search(notice.text)):
            found.append(match.group(1) or match.group(2))
    return found
