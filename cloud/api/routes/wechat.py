"""`/wechat/push`: WeChat's server push for the official account (plaintext mode), signed.

Configure the account's server URL as `{base_url}/api/v1/wechat/push` with the Token in
`LOCKER_CLOUD_WECHAT_TOKEN`, message encryption "plaintext" (明文模式: the safe and compatible
modes' AES envelope is not implemented). WeChat first verifies the URL with a signed `GET` that
must echo `echostr`; then it `POST`s each message as XML, signed the same way in the query. A
text message (any words) or a menu click with key PICKUP_CODES from a bound user reissues their
codes (`cloud.services.wechat_codes`) and is answered with a passive text reply; anything else
gets `success`, which WeChat takes as "no reply". A bad signature is 403 and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeXml
from defusedxml import DefusedXmlException
from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from cloud.api.deps import NowDep, SessionDep, SettingsDep
from cloud.api.schemas import json_error_responses
from cloud.core.wechat_push import codes_reply, push_is_genuine
from cloud.services import wechat_codes

router = APIRouter(prefix="/wechat", tags=["wechat"])

PICKUP_CODES_KEY = "PICKUP_CODES"  # the EventKey of a menu button that asks for codes
MAX_BODY_BYTES = 64 * 1024  # WeChat's messages are a few hundred bytes
NO_REPLY = "success"  # what WeChat reads as "received, nothing to answer"

Signature = Annotated[str, Query(max_length=64, description="sha1 of sorted token/timestamp/nonce")]
Timestamp = Annotated[str, Query(max_length=16, description="Unix seconds, as WeChat sent it")]
PushNonce = Annotated[str, Query(max_length=64, description="WeChat's random string")]

_XML_BODY = {
    "requestBody": {
        "required": True,
        "description": "A message or event pushed by WeChat (plaintext mode).",
        "content": {
            "text/xml": {
                "schema": {"type": "string"},
                "example": (
                    "<xml><ToUserName><![CDATA[gh_account]]></ToUserName>"
                    "<FromUserName><![CDATA[openid]]></FromUserName>"
                    "<CreateTime>1764579600</CreateTime><MsgType><![CDATA[text]]></MsgType>"
                    "<Content><![CDATA[取件码]]></Content><MsgId>24000000000000001</MsgId></xml>"
                ),
            }
        },
    }
}


def _check(
    settings: SettingsDep, signature: str, timestamp: str, nonce: str, now: datetime
) -> None:
    token = settings.wechat_token.get_secret_value()
    if not push_is_genuine(
        token=token, signature=signature, timestamp=timestamp, nonce=nonce, now=now
    ):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "not a genuine WeChat push: bad signature or stale timestamp"
            if token
            else "WeChat pushes are not configured (LOCKER_CLOUD_WECHAT_TOKEN is empty)",
        )


@router.get(
    "/push",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **json_error_responses(403, 422),
    },
)
def verify_push_url(
    settings: SettingsDep,
    now: NowDep,
    signature: Signature,
    timestamp: Timestamp,
    nonce: PushNonce,
    echostr: Annotated[str, Query(max_length=128, description="Echoed back when genuine")],
) -> PlainTextResponse:
    """WeChat's server-URL check: echo `echostr` if the signature is the account's Token's."""
    _check(settings, signature, timestamp, nonce, now)
    return PlainTextResponse(echostr)


@dataclass(frozen=True)
class _Pushed:
    to_account: str
    openid: str
    msg_type: str
    msg_id: str
    event: str
    event_key: str


def _parse(body: bytes) -> _Pushed:
    try:
        root: Element = SafeXml.fromstring(body)
    except (SafeXml.ParseError, DefusedXmlException, ValueError) as err:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"not WeChat XML: {err}"
        ) from None

    def field(name: str) -> str:
        return (root.findtext(name) or "").strip()

    openid, account = field("FromUserName"), field("ToUserName")
    if root.tag != "xml" or not openid or not account or not field("MsgType"):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "not WeChat XML: needs <xml> with ToUserName, FromUserName and MsgType",
        )
    # Events carry no MsgId; WeChat's advice is to tell them apart by sender and CreateTime.
    msg_id = field("MsgId") or f"{openid}:{field('CreateTime')}"
    return _Pushed(
        to_account=account,
        openid=openid,
        msg_type=field("MsgType"),
        msg_id=msg_id[:64],
        event=field("Event"),
        event_key=field("EventKey"),
    )


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(*, to_openid: str, from_account: str, content: str, now: datetime) -> str:
    """Return a passive text reply in WeChat's XML."""
    return (
        f"<xml><ToUserName>{_cdata(to_openid)}</ToUserName>"
        f"<FromUserName>{_cdata(from_account)}</FromUserName>"
        f"<CreateTime>{int(now.timestamp())}</CreateTime>"
        f"<MsgType>{_cdata('text')}</MsgType><Content>{_cdata(content)}</Content></xml>"
    )


@router.post(
    "/push",
    response_class=Response,
    responses={
        200: {
            "description": "A passive text reply (XML), or `success` for no reply",
            "content": {"application/xml": {"schema": {"type": "string"}}},
        },
        **json_error_responses(403, 422),
    },
    openapi_extra=_XML_BODY,
)
async def receive_push(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    signature: Signature,
    timestamp: Timestamp,
    nonce: PushNonce,
    encrypt_type: Annotated[
        str | None,
        Query(max_length=16, description="Sent in safe/compatible mode only; `aes` is refused"),
    ] = None,
) -> Response:
    """A message to the official account: a bound user's text or menu click reissues their codes."""
    _check(settings, signature, timestamp, nonce, now)
    if encrypt_type not in (None, "raw"):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"encrypted pushes ({encrypt_type}) are not supported: set the account's message "
            "encryption to plaintext (明文模式)",
        )
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "message too large")
    pushed = _parse(body)
    asks_for_codes = pushed.msg_type == "text" or (
        pushed.msg_type == "event"
        and pushed.event == "CLICK"
        and pushed.event_key == PICKUP_CODES_KEY
    )
    if not asks_for_codes:
        return PlainTextResponse(NO_REPLY)

    def handle() -> str | None:
        # Blocking database work: off the event loop.
        if wechat_codes.seen_before(
            session=session, msg_id=pushed.msg_id, openid=pushed.openid, now=now
        ):
            return None
        summary = wechat_codes.resend_codes(
            session=session, openid=pushed.openid, now=now, seal_key=settings.secret_key_bytes
        )
        return codes_reply(summary)

    content = await run_in_threadpool(handle)
    if content is None:  # WeChat's retry of a push already handled
        return PlainTextResponse(NO_REPLY)
    reply = text_reply(
        to_openid=pushed.openid, from_account=pushed.to_account, content=content, now=now
    )
    return Response(reply, media_type="application/xml")
