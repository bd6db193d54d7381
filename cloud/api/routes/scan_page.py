"""`GET /s/{cab}/{nonce}`: the page the idle-screen QR opens; it drives `/api/v1/scan`.

Chinese first (the browser's and the site's language), English on a tap; a phone proves itself
with an SMS code (or WeChat, inside WeChat's browser), then opens its door with one tap. The
session is kept in this origin's localStorage for its life, so the notice's pickup page can
open the door with one tap too. No cookie, no outside resource (cloud/api/phone_pages.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path
from fastapi.responses import HTMLResponse

from cloud.api.deps import SessionDep
from cloud.api.phone_pages import (
    CALL_SCRIPT,
    ERROR_WORDS,
    PLACE_HTML,
    PLACE_SCRIPT,
    page_language,
    place,
    render_page,
    words,
)
from cloud.services import queries

router = APIRouter()

WORDS = words(
    {
        "zh-CN": {
            "title": "扫码开门",
            "switch": "English",
            "wechat": "用微信登录，一键开门",
            "phone": "收件手机号",
            "ask": "获取短信验证码",
            "code": "短信验证码（6 位）",
            "check": "查看我的包裹",
            "sent": "如果 {phone} 在本柜有包裹，验证码已发出，请查收短信。",
            "none": "这个号码在本柜没有待取的包裹。",
            "open": "打开 {door} 号格口",
            "opened_button": "{door} 号格口已打开",
            "opened": "{door} 号格口门已打开，取件后请关门。",
            "bind": "请用短信验证一次手机号，以后用微信即可直接开门。",
            "declined": "未授权微信登录，请用手机号验证。",
            "parcel": "运单尾号 {tail}",
        },
        "en": {
            "title": "Open your door",
            "switch": "中文",
            "wechat": "Sign in with WeChat, open with one tap",
            "phone": "Your mobile number",
            "ask": "Text me a code",
            "code": "Code from the SMS (6 digits)",
            "check": "Show my parcels",
            "sent": "If {phone} has a parcel here, a code is on its way by SMS.",
            "none": "No parcel waits here for this number.",
            "open": "Open door {door}",
            "opened_button": "Door {door} is open",
            "opened": "Door {door} is open. Close it after taking your parcel.",
            "bind": "Prove your number once by SMS; next time WeChat alone opens your door.",
            "declined": "WeChat sign-in was declined: prove your number by SMS instead.",
            "parcel": "Tracking no. ending {tail}",
        },
    },
    ERROR_WORDS,
)

_BODY = """
__PLACE__
<div class="card" id="prove">
<a id="wechat" class="go wechat" href="" data-t="wechat" hidden></a>
<form id="ask"><label for="phone" data-t="phone"></label>
<input id="phone" type="tel" inputmode="tel" autocomplete="tel" maxlength="20" required>
<button class="go" data-t="ask"></button></form>
<form id="check" hidden><label for="code" data-t="code"></label>
<input id="code" inputmode="numeric" autocomplete="one-time-code" maxlength="6" required>
<button class="go" data-t="check"></button></form>
</div>
<ul id="parcels" class="parcels"></ul>
<p id="msg" class="msg" role="status"></p>
"""

_SCRIPT = """
const API = "/api/v1/scan/" + DATA.cab;
let token = null, ticket = null, parcels = [], opened = new Set();
// WeChat's sign-in works only inside WeChat's own browser: elsewhere it is not offered.
if (/MicroMessenger/i.test(navigator.userAgent)) {
  $("wechat").href = API + "/" + DATA.nonce + "/wechat";
  $("wechat").hidden = false;
}
function refused(err) { say("msg", "bad", err.key || "err_other", err.params); }
function drawParcels() {
  $("parcels").replaceChildren(...parcels.map((p) => {
    const li = document.createElement("li"), b = document.createElement("button");
    li.className = "card";
    const tail = document.createElement("div");
    tail.className = "muted";
    tail.textContent = T("parcel", {tail: (p.tracking_no || "").slice(-4)});
    b.className = "go";
    b.dataset.door = p.compartment;
    b.disabled = opened.has(p.parcel_id);
    b.textContent = T(b.disabled ? "opened_button" : "open", {door: p.compartment});
    b.onclick = async () => {
      b.disabled = true;
      try {
        await call(API + "/open", {token, parcel_id: p.parcel_id});
        opened.add(p.parcel_id);
        say("msg", "ok", "opened", {door: p.compartment});
      } catch (err) { refused(err); b.disabled = opened.has(p.parcel_id); }
      drawParcels();
    };
    li.append(tail, b);
    return li;
  }));
}
redraws.push(drawParcels);
function show(s) {
  token = s.token; parcels = s.parcels;
  keepSession({token: s.token, expires_at: s.expires_at, parcels: s.parcels});
  $("prove").hidden = true;
  if (parcels.length) say("msg", "info", ""); else say("msg", "info", "none");
  drawParcels();
}
$("ask").onsubmit = async (e) => {
  e.preventDefault();
  try {
    const phone = $("phone").value.trim();
    await call(API + "/" + DATA.nonce + "/otp", {phone, language: LANG});
    say("msg", "info", "sent", {phone: masked(phone)});
    $("check").hidden = false;
    $("code").focus();
  } catch (err) { refused(err); }
};
$("check").onsubmit = async (e) => {
  e.preventDefault();
  try {
    show(await call(API + "/" + DATA.nonce + "/verify",
      {phone: $("phone").value.trim(), code: $("code").value.trim(), wechat_ticket: ticket}));
  } catch (err) { refused(err); }
};
// Back from the WeChat sign-in: the outcome is in the fragment, which no server ever sees.
const back = new URLSearchParams(location.hash.slice(1));
history.replaceState(null, "", location.pathname);
if (back.get("session")) call(API + "/session", {token: back.get("session")}).then(show, refused);
if (back.get("bind")) { ticket = back.get("bind"); say("msg", "info", "bind"); }
if (back.get("wechat") === "declined") say("msg", "info", "declined");
"""


@router.get("/s/{cab}/{nonce}", response_class=HTMLResponse, include_in_schema=False)
def scan_page(
    cab: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
    nonce: Annotated[str, Path(min_length=3, max_length=64, pattern=r"^[0-9]+\.[A-Za-z0-9_-]+$")],
    session: SessionDep,
    accept_language: Annotated[str | None, Header()] = None,
) -> HTMLResponse:
    """Serve the scan-to-open page; the API checks the nonce when the page uses it."""
    cabinet = queries.cabinet_row(session=session, cab=cab)
    site = queries.get_site(session=session, site_id=cabinet.site_id) if cabinet else None
    language = page_language(accept_language, site.language if site else "zh-CN")
    page = render_page(
        title_key="title",
        body=_BODY.replace("__PLACE__", PLACE_HTML),
        script=CALL_SCRIPT + PLACE_SCRIPT + _SCRIPT,
        words=WORDS,
        language=language,
        data={"cab": cab, "nonce": nonce, "place": place(cabinet)},
    )
    # The nonce is in the URL: keep it out of other sites' logs and of caches.
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return HTMLResponse(page, headers=headers)
