"""`/scan`: the scan-to-open page's steps: a one-time SMS code, a verified session, an open door."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from fastapi.exceptions import RequestValidationError

from cloud.api.deps import NowDep, SessionDep, SettingsDep
from cloud.api.schemas import (
    OpenQueuedPublic,
    OpenRequest,
    OtpRequest,
    OtpRequestedPublic,
    ScanParcelPublic,
    ScanSessionPublic,
    SessionRequest,
    VerifyRequest,
    error_responses,
)
from cloud.core.phones import mask_phone, normalize_phone
from cloud.services import scan_open, scan_wechat

router = APIRouter(prefix="/scan", tags=["scan-to-open"])

CabinetId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Nonce = Annotated[str, Path(min_length=3, max_length=64, description="From the QR's URL")]


def _client(request: Request) -> str | None:
    """The client's address, as the server saw it (behind a proxy: uvicorn's --proxy-headers)."""
    return request.client.host if request.client else None


def _phone(text: str) -> str:
    try:
        return normalize_phone(text)
    except ValueError as err:
        error = {"loc": ("body", "phone"), "msg": str(err), "type": "value_error"}
        raise RequestValidationError([error]) from None


@router.post(
    "/{cab}/{nonce}/otp",
    response_model=OtpRequestedPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(403, 404, 422, 429),
)
def request_otp(
    cab: CabinetId,
    nonce: Nonce,
    body: OtpRequest,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
) -> OtpRequestedPublic:
    """Queue a one-time code for the phone if it has a parcel in the cabinet (same answer if not).

    The SMS goes out from the notice outbox, so this answers as fast, with the same body, either
    way. Limited per phone, per cabinet, per client address and per QR nonce (429).
    """
    phone = _phone(body.phone)
    done = scan_open.request_otp(
        session=session,
        secret_key=settings.secret_key_bytes,
        cab=cab,
        nonce=nonce,
        phone=phone,
        now=now,
        client=_client(request),
        language=body.language,
    )
    return OtpRequestedPublic(
        detail=f"if {mask_phone(phone)} has a parcel here, a code is on its way",
        expires_at=done.expires_at,
    )


@router.post(
    "/{cab}/{nonce}/verify",
    response_model=ScanSessionPublic,
    responses=error_responses(401, 403, 404, 422, 429),
)
def verify(
    cab: CabinetId,
    nonce: Nonce,
    body: VerifyRequest,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
) -> ScanSessionPublic:
    """Check the one-time code; return a short-lived token and the phone's parcels here.

    With `wechat_ticket` (a WeChat sign-in of an unbound user), that WeChat user is bound to
    the phone once it is proven, so next time WeChat alone signs them in. Wrong codes are
    limited per QR nonce, per client address and per cabinet-day (429).
    """
    phone = _phone(body.phone)
    openid = None
    if body.wechat_ticket:
        openid = scan_wechat.check_bind_ticket(
            secret_key=settings.secret_key_bytes, ticket=body.wechat_ticket, cab=cab, now=now
        )
    found = scan_open.verify_otp(
        session=session,
        secret_key=settings.secret_key_bytes,
        cab=cab,
        nonce=nonce,
        phone=phone,
        code=body.code,
        now=now,
        client=_client(request),
        bind_openid=openid,
    )
    return ScanSessionPublic(
        token=found.token,
        expires_at=found.expires_at,
        phone_masked=mask_phone(phone),
        parcels=_parcels(found.parcels),
    )


def _parcels(rows) -> list[ScanParcelPublic]:
    return [
        ScanParcelPublic(
            parcel_id=p.parcel_id or p.id,
            tracking_no=p.tracking_no,
            compartment=p.compartment,
            size=p.size,
            deposited_at=p.deposited_at,
        )
        for p in rows
    ]


@router.post(
    "/{cab}/session", response_model=ScanSessionPublic, responses=error_responses(403, 422)
)
def session_of_token(
    cab: CabinetId, body: SessionRequest, session: SessionDep, settings: SettingsDep, now: NowDep
) -> ScanSessionPublic:
    """Return a session token's parcels still in the locker (after the WeChat sign-in)."""
    claims, rows = scan_open.session_parcels(
        session=session,
        secret_key=settings.secret_key_bytes,
        cab=cab,
        token=body.token,
        now=now,
    )
    return ScanSessionPublic(
        token=body.token,
        expires_at=claims.expires_at,
        phone_masked=claims.actor,
        parcels=_parcels(rows),
    )


@router.post(
    "/{cab}/open",
    response_model=OpenQueuedPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(403, 409, 422),
)
def open_door(
    cab: CabinetId, body: OpenRequest, session: SessionDep, settings: SettingsDep, now: NowDep
) -> OpenQueuedPublic:
    """Queue `compartment.open` for one parcel of the session (audited on its timeline)."""
    command = scan_open.open_parcel(
        session=session,
        secret_key=settings.secret_key_bytes,
        cab=cab,
        token=body.token,
        parcel_id=body.parcel_id,
        now=now,
    )
    return OpenQueuedPublic(
        command_id=command.id,
        cabinet_id=command.cabinet_id,
        compartment=command.data["compartment"],
        expires_at=command.expires_at,
    )
