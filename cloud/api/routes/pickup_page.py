"""`/pickup/{cab}`: the page a notice links to, showing the pickup code and its QR for the scanner.

The notice's link is `{base_url}/pickup/{cab}#LKR1:{cab}:{code};door=..;by=..`
(`cloud.core.codes.pickup_link`):
the code rides in the fragment, which a browser never sends, so the page can be served to anyone
and no access log ever holds a code. The page's script reads the fragment and asks
`POST /pickup/{cab}/qr` for the QR of that payload (drawn with `qrcode`, the same text the
cabinet's scanner accepts); the payload goes in the body, is checked, drawn and forgotten.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

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
from cloud.core.codes import QrPayloadError, parse_qr_payload, qr_payload
from cloud.services import queries
from cloud.services.scan_open import qr_svg

router = APIRouter()

CabinetPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
_PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

WORDS = words(
    {
        "zh-CN": {
            "title": "取件",
            "switch": "English",
            "door": "格口",
            "code_label": "取件码",
            "deadline": "请于 {deadline} 前取件",
            "how": "在柜机上输入取件码，或将二维码对准柜机的扫码口。",
            "remote": "在柜机前？扫描柜机屏幕上的二维码并验证手机号，即可在手机上一键开门。",
            "open": "打开 {door} 号格口",
            "opened": "{door} 号格口门已打开，取件后请关门。",
            "opened_button": "{door} 号格口已打开",
            "incomplete": "链接不完整，请打开通知中的完整链接。",
            "no_qr": "二维码暂不可用，请在柜机上输入取件码。",
        },
        "en": {
            "title": "Pick up",
            "switch": "中文",
            "door": "Door",
            "code_label": "Pickup code",
            "deadline": "Collect by {deadline}",
            "how": "Type the code on the cabinet, or hold the QR up to its scanner.",
            "remote": "At the cabinet? Scan the QR on its screen and prove your number: then "
            "one tap here opens your door.",
            "open": "Open door {door}",
            "opened": "Door {door} is open. Close it after taking your parcel.",
            "opened_button": "Door {door} is open",
            "incomplete": "This link is incomplete: open the whole link from your notice.",
            "no_qr": "The QR is unavailable: type the code on the cabinet instead.",
        },
    },
    ERROR_WORDS,
)

_BODY = """
__PLACE__
<div class="card" id="parcel" hidden>
<div class="muted" data-t="door"></div><div id="door" class="door"></div>
<div id="deadline" class="muted"></div>
<div class="muted" data-t="code_label" style="margin-top:8px"></div>
<div id="code" class="code" aria-label="pickup code"></div>
<div id="qr"></div>
<p class="muted" data-t="how"></p>
<button id="open" class="go" type="button" hidden></button>
<p id="remote" class="muted" data-t="remote" hidden></p>
</div>
<p id="msg" class="msg" role="status"></p>
"""

# The fragment: `LKR1:<cab>:<code>[;door=<door>][;by=<unix seconds>]` (codes.pickup_link).
_SCRIPT = """
const parts = decodeURIComponent(location.hash.slice(1)).split(";");
const payload = parts[0];
const extra = Object.fromEntries(parts.slice(1).map((p) => p.split("=")));
const match = /^LKR1:([A-Za-z0-9_-]+):([0-9]{4,12})$/.exec(payload);
const door = /^[A-Za-z0-9_-]{1,16}$/.test(extra.door || "") ? extra.door : "";
const by = /^[0-9]{9,11}$/.test(extra.by || "") ? new Date(Number(extra.by) * 1000) : null;
let opened = false;
function deadlineText() {
  const opts = {timeZone: DATA.zone, month: "long", day: "numeric", hour: "2-digit",
    minute: "2-digit", hour12: false};
  return by ? T("deadline", {deadline: by.toLocaleString(LANG, opts)}) : "";
}
// One tap opens the door when this phone proved itself at this cabinet's screen (the
// scan-to-open session, kept by the scan page) and the session holds this door's parcel.
function sessionParcel() {
  const s = storedSession();
  const p = s && door && s.parcels.find((x) => x.compartment === door);
  return p ? {token: s.token, parcel: p} : null;
}
function drawParcel() {
  $("door").textContent = door || "—";
  $("deadline").textContent = deadlineText();
  const found = sessionParcel();
  $("open").hidden = !found;
  $("remote").hidden = Boolean(found) || !door;
  $("open").disabled = opened;
  $("open").textContent = T(opened ? "opened_button" : "open", {door});
}
if (!match || match[1] !== DATA.cab) {
  say("msg", "bad", "incomplete");
} else {
  $("parcel").hidden = false;
  $("code").textContent = match[2];
  redraws.push(drawParcel);
  fetch("/pickup/" + DATA.cab + "/qr", {method: "POST", credentials: "omit",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify({payload})})
    .then((r) => r.ok ? r.text() : Promise.reject(new Error(r.statusText)))
    .then((svg) => { $("qr").innerHTML = svg; })
    .catch(() => say("msg", "bad", "no_qr"));
  $("open").onclick = async () => {
    const found = sessionParcel();
    if (!found) return;
    $("open").disabled = true;
    try {
      await call("/api/v1/scan/" + DATA.cab + "/open", {token: found.token,
        parcel_id: found.parcel.parcel_id});
      opened = true;
      say("msg", "ok", "opened", {door});
    } catch (err) { say("msg", "bad", err.key || "err_other", err.params); }
    drawParcel();
  };
}
"""


class QrRequest(BaseModel):
    """The fragment of a notice's link: `LKR1:<cab>:<code>`."""

    payload: str = Field(max_length=100, repr=False)


def _cabinet_or_404(session: SessionDep, cab: str) -> queries.Cabinet:
    cabinet = queries.cabinet_row(session=session, cab=cab)
    if cabinet is None:
        raise HTTPException(status_code=404, detail=f"no cabinet {cab!r}")
    return cabinet


@router.get("/pickup/{cab}", response_class=HTMLResponse, include_in_schema=False)
def pickup_page(
    cab: CabinetPath,
    session: SessionDep,
    accept_language: Annotated[str | None, Header()] = None,
) -> HTMLResponse:
    """Serve the page of a notice's link: the cabinet, then the door, deadline, code and QR
    from the fragment, and a one-tap open when this phone has a scan-to-open session here."""
    cabinet = _cabinet_or_404(session, cab)
    site = queries.get_site(session=session, site_id=cabinet.site_id)
    language = page_language(accept_language, site.language if site else "zh-CN")
    page = render_page(
        title_key="title",
        body=_BODY.replace("__PLACE__", PLACE_HTML),
        script=CALL_SCRIPT + PLACE_SCRIPT + _SCRIPT,
        words=WORDS,
        language=language,
        data={
            "cab": cab,
            "place": place(cabinet),
            "zone": site.timezone if site else "Asia/Shanghai",
        },
    )
    return HTMLResponse(page, headers=_PRIVATE)


@router.post("/pickup/{cab}/qr", response_class=Response, include_in_schema=False)
def pickup_qr(cab: CabinetPath, body: QrRequest, session: SessionDep) -> Response:
    """Return the QR (SVG) of a pickup payload for cabinet `cab`; 422 for any other text."""
    _cabinet_or_404(session, cab)
    try:
        payload_cab, code = parse_qr_payload(body.payload)
    except QrPayloadError as err:
        raise HTTPException(status_code=422, detail=str(err)) from None
    if payload_cab != cab:
        raise HTTPException(status_code=422, detail="the payload names another cabinet")
    svg = qr_svg(qr_payload(cab, code))
    return Response(svg, media_type="image/svg+xml", headers=_PRIVATE)
