"""`/callbacks`: provider callbacks (Twilio delivery status), verified by their signatures."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from cloud.api.deps import NowDep, SessionDep, SettingsDep
from cloud.api.schemas import CallbackPublic, error_responses
from cloud.notify.errors import SignatureError
from cloud.notify.sms_twilio import record_status_callback

router = APIRouter(prefix="/callbacks", tags=["callbacks"])

TWILIO_STATUS_PATH = "/api/v1/callbacks/twilio/status"

_FORM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "MessageSid": {"type": "string"},
                        "MessageStatus": {"type": "string"},
                        "ErrorCode": {"type": "string"},
                    },
                    "required": ["MessageSid", "MessageStatus"],
                }
            }
        },
    }
}


@router.post(
    "/twilio/status",
    response_model=CallbackPublic,
    responses=error_responses(403, 422, 503),
    openapi_extra=_FORM_BODY,
)
async def twilio_status(
    request: Request, session: SessionDep, settings: SettingsDep, now: NowDep
) -> CallbackPublic:
    """Record a Twilio message status callback; 403 unless `X-Twilio-Signature` verifies.

    503 if no Twilio auth token is set: there is nothing to verify against, and a signature
    made with an empty key is one anybody can make.
    """
    auth_token = settings.twilio_auth_token.get_secret_value()
    if not auth_token:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "Twilio status callbacks are off: LOCKER_CLOUD_TWILIO_AUTH_TOKEN is not set, so no "
            "callback can be verified",
        )
    # Parsed by hand: FastAPI's Form() needs python-multipart for a body this simple.
    form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
    # Twilio signs the URL it was given, which we built from base_url (a proxy may sit between).
    url = settings.base_url.rstrip("/") + TWILIO_STATUS_PATH
    if request.url.query:
        url += "?" + request.url.query
    try:
        # The database work is blocking: keep it off the event loop.
        row = await run_in_threadpool(
            record_status_callback,
            session=session,
            auth_token=auth_token,
            url=url,
            form=form,
            signature=request.headers.get("X-Twilio-Signature"),
            now=now,
        )
    except SignatureError as err:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(err)) from None
    except ValueError as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err)) from None
    return CallbackPublic(recorded=row is not None)
