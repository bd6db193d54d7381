"""`/cabinets`: cabinets with presence and occupancy, their compartments, the idle-screen QR."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Response, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from cloud.api.access import ErpPrincipalDep, enforce
from cloud.api.deps import NowDep, SessionDep, SettingsDep
from cloud.api.schemas import (
    CabinetPublic,
    CabinetsPublic,
    CompartmentPublic,
    CompartmentsPublic,
    OccupancyPublic,
    error_responses,
)
from cloud.core.access import Action, Principal, cabinet_scope, decide
from cloud.services import queries, scan_open

router = APIRouter(prefix="/cabinets", tags=["cabinets"])

CabinetId = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="Cabinet id")
]


def _public(view: queries.CabinetView) -> CabinetPublic:
    cabinet = view.cabinet
    return CabinetPublic(
        id=cabinet.id,
        site_id=cabinet.site_id,
        name=cabinet.name,
        address=cabinet.address,
        online=cabinet.online,
        last_seen_at=cabinet.last_seen_at,
        firmware=cabinet.firmware,
        occupancy=[OccupancyPublic(**vars(o)) for o in view.occupancy],
    )


def _not_found(cab: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no cabinet {cab!r}")


def _visible(session: SessionDep, principal: Principal, cab: str) -> queries.CabinetView:
    """The cabinet if `principal` may read it; 404 alike for a missing and a hidden one."""
    view = queries.get_cabinet(session=session, cab=cab)
    resource = queries.cabinet_resource(view.cabinet if view is not None else None)
    enforce(decide(principal, Action.READ_CABINET, resource), f"no cabinet {cab!r}")
    assert view is not None
    return view


@router.get("", response_model=CabinetsPublic, responses=error_responses(401, 403))
def list_cabinets(session: SessionDep, principal: ErpPrincipalDep) -> CabinetsPublic:
    """List the cabinets of the key's sites: online or not, last seen, occupancy by size."""
    views = queries.list_cabinets(session=session, scope=cabinet_scope(principal))
    return CabinetsPublic(data=[_public(v) for v in views], count=len(views))


@router.get("/{cab}", response_model=CabinetPublic, responses=error_responses(401, 403, 404, 422))
def get_cabinet(cab: CabinetId, session: SessionDep, principal: ErpPrincipalDep) -> CabinetPublic:
    """Show one cabinet of the key's sites: online or not, last seen, occupancy by size."""
    return _public(_visible(session, principal, cab))


@router.get(
    "/{cab}/compartments",
    response_model=CompartmentsPublic,
    responses=error_responses(401, 403, 404, 422),
)
def list_compartments(
    cab: CabinetId, session: SessionDep, principal: ErpPrincipalDep
) -> CompartmentsPublic:
    """List the compartments of a cabinet of the key's sites: size, state, in service or not."""
    _visible(session, principal, cab)
    rows = queries.list_compartments(session=session, cab=cab)
    data = [
        CompartmentPublic(
            id=c.id, size=c.size, state=c.state, in_service=c.in_service, low_door=c.low_door
        )
        for c in rows
    ]
    return CompartmentsPublic(data=data, count=len(data))


_cabinet_basic = HTTPBasic(
    auto_error=False,
    realm="cabinet",
    description="The cabinet's id and its MQTT password (what the registry provisioned).",
)


@router.get(
    "/{cab}/scan-qr",
    response_class=Response,
    responses={
        200: {
            "content": {"image/svg+xml": {}},
            "description": "The QR (SVG) of `{base_url}/s/{cab}/{nonce}`; the URL is in the "
            "`X-Scan-URL` header. The nonce dies after 5 minutes: refresh it well before.",
        },
        **error_responses(401, 422),
    },
    tags=["scan-to-open"],
)
def scan_qr(
    cab: CabinetId,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(_cabinet_basic)],
) -> Response:
    """Return the cabinet idle screen's scan-to-open QR with a fresh nonce.

    Only for the cabinet itself: HTTP Basic with its id and MQTT password. A nonce is what
    proves a recipient stands at the screen, so nobody else may have one. An unknown cabinet
    gets the same 401 as a wrong password (the route tells no one which ids exist).
    """
    if credentials is None or not scan_open.cabinet_credentials_ok(
        session=session, cab=cab, username=credentials.username, password=credentials.password
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the scan QR is for the cabinet only: give its id and MQTT password (HTTP Basic)",
            headers={"WWW-Authenticate": 'Basic realm="cabinet"'},
        )
    nonce = scan_open.make_nonce(secret_key=settings.secret_key_bytes, cab=cab, now=now)
    url = scan_open.scan_url(settings.base_url, cab, nonce)
    return Response(
        content=scan_open.qr_svg(url),
        media_type="image/svg+xml",
        headers={"X-Scan-URL": url, "Cache-Control": "no-store"},
    )
