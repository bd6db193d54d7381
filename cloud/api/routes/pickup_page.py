"""`/pickup/{cab}`: the page a notice links to, showing the pickup code and its QR for the scanner.

The notice's link is `{base_url}/pickup/{cab}#LKR1:{cab}:{code}` (`cloud.core.codes.pickup_link`):
the code rides in the fragment, which a browser never sends, so the page can be served to anyone
and no access log ever holds a code. The page's script reads the fragment and asks
`POST /pickup/{cab}/qr` for the QR of that payload (drawn with `qrcode`, the same text the
cabinet's scanner accepts); the payload goes in the body, is checked, drawn and forgotten.
"""

from __future__ import annotations

import html
import json
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from cloud.api.deps import SessionDep
from cloud.core.codes import QrPayloadError, parse_qr_payload, qr_payload
from cloud.services import queries
from cloud.services.scan_open import qr_svg

router = APIRouter()

CabinetPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
_PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

# Plain HTML, no outside resources: it must load on any phone, and be shown to a scanner bright.
_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>取件码 · Pickup code</title>
<style>body{font-family:system-ui,sans-serif;max-width:26rem;margin:1rem auto;padding:0 1rem;
text-align:center;background:#fff;color:#111}
#code{font-size:2.6rem;letter-spacing:.3rem;font-weight:700;margin:.5rem 0}
#qr svg{width:16rem;height:16rem}#msg{color:#a00}.where{color:#444}</style></head>
<body><h1>取件 · Pick up</h1>
<p class="where"><b>__NAME__</b><br>__ADDRESS__</p>
<p>在柜机上输入取件码，或将二维码对准扫码口。<br>
Type the code on the cabinet, or hold the QR up to its scanner.</p>
<div id="code" aria-label="pickup code"></div><div id="qr"></div>
<p id="msg" role="status"></p>
<script>
const CAB = __CAB__;
const payload = decodeURIComponent(location.hash.slice(1));
const match = /^LKR1:([A-Za-z0-9_-]+):([0-9]{4,12})$/.exec(payload);
const say = (t) => { document.getElementById("msg").textContent = t; };
if (!match || match[1] !== CAB) {
  say("链接不完整，请打开通知中的完整链接。 " +
      "This link is incomplete: open the whole link from your message.");
} else {
  document.getElementById("code").textContent = match[2];
  fetch("/pickup/" + CAB + "/qr", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({payload})})
    .then((r) => r.ok ? r.text() : Promise.reject(new Error(r.statusText)))
    .then((svg) => { document.getElementById("qr").innerHTML = svg; })
    .catch(() => say("二维码暂不可用，请输入取件码。 " +
                     "The QR is unavailable: type the code instead."));
}
</script></body></html>
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
def pickup_page(cab: CabinetPath, session: SessionDep) -> HTMLResponse:
    """Serve the page of a notice's link: the cabinet, then the code and QR from the fragment."""
    cabinet = _cabinet_or_404(session, cab)
    page = (
        _PAGE.replace("__CAB__", json.dumps(cab))
        .replace("__NAME__", html.escape(cabinet.name))
        .replace("__ADDRESS__", html.escape(cabinet.address))
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
