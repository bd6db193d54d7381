"""`GET /s/{cab}/{nonce}`: the minimal page the idle-screen QR opens; it drives `/api/v1/scan`."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse

router = APIRouter()

# Plain HTML and a little script, no outside resources: it must load on any phone, fast. The
# cabinet id and nonce are embedded as JSON (their path patterns admit no markup anyway).
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Open your locker</title>
<style>body{font-family:sans-serif;max-width:28rem;margin:1rem auto;padding:0 1rem}
input,button{font-size:1.2rem;padding:.5rem;margin:.25rem 0;width:100%}
#msg{color:#a00}</style></head>
<body><h1>Open your locker</h1>
<p><a id="wechat" href="">Sign in with WeChat / 微信登录</a></p>
<form id="ask"><label>Mobile number <input id="phone" type="tel" required></label>
<button>Text me a code</button></form>
<form id="check" hidden><label>Code <input id="code" inputmode="numeric" maxlength="6"
required></label><button>Show my parcels</button></form>
<ul id="parcels"></ul><p id="msg" role="status"></p>
<script>
const CAB = __CAB__, NONCE = __NONCE__, API = "/api/v1/scan/" + CAB;
const $ = (id) => document.getElementById(id);
let token = null, ticket = null;
$("wechat").href = API + "/" + NONCE + "/wechat";
async function call(path, body) {
  const r = await fetch(API + path, {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await r.json();
  if (!r.ok) throw new Error(data.detail || r.statusText);
  return data;
}
function say(text) { $("msg").textContent = text; }
$("ask").onsubmit = async (e) => { e.preventDefault();
  try { say((await call("/" + NONCE + "/otp", {phone: $("phone").value})).detail);
    $("check").hidden = false; } catch (err) { say(err.message); } };
function show(s) {
  token = s.token; say(s.parcels.length ? "" : "No parcel for this number here.");
  $("parcels").replaceChildren(...s.parcels.map((p) => {
    const li = document.createElement("li"), b = document.createElement("button");
    b.textContent = "Open door " + p.compartment + " (" + p.tracking_no + ")";
    b.onclick = async () => { try { await call("/open", {token, parcel_id: p.parcel_id});
      say("Door " + p.compartment + " is opening."); } catch (err) { say(err.message); } };
    li.append(b); return li; }));
}
$("check").onsubmit = async (e) => { e.preventDefault();
  try { show(await call("/" + NONCE + "/verify",
      {phone: $("phone").value, code: $("code").value, wechat_ticket: ticket}));
  } catch (err) { say(err.message); } };
// Back from the WeChat sign-in: the outcome is in the fragment, which no server ever sees.
const back = new URLSearchParams(location.hash.slice(1));
history.replaceState(null, "", location.pathname);
if (back.get("session")) call("/session", {token: back.get("session")}).then(show,
  (err) => say(err.message));
if (back.get("bind")) { ticket = back.get("bind");
  say("Verify your number once by SMS to link WeChat. / 请用短信验证一次手机号以绑定微信。"); }
if (back.get("wechat") === "declined") say("WeChat sign-in declined: use your number instead.");
</script></body></html>
"""


@router.get("/s/{cab}/{nonce}", response_class=HTMLResponse, include_in_schema=False)
def scan_page(
    cab: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
    nonce: Annotated[str, Path(min_length=3, max_length=64, pattern=r"^[0-9]+\.[A-Za-z0-9_-]+$")],
) -> HTMLResponse:
    """Serve the scan-to-open page; the API checks the nonce when the page uses it."""
    page = _PAGE.replace("__CAB__", json.dumps(cab)).replace("__NONCE__", json.dumps(nonce))
    # The nonce is in the URL: keep it out of other sites' logs and of caches.
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return HTMLResponse(page, headers=headers)
