"""`/shipments`: a shipment over its whole life, every write once per Idempotency-Key.

announce (POST), list (GET, cursor pages), read (GET /{id}), update (PATCH /{id}), cancel
(POST /{id}/cancel), confirm a return (POST /{id}/confirm-return). A key sees and changes only
its own shipments: another's answers as a missing one (404).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status
from fastapi.responses import JSONResponse

from cloud.api.access import ErpPrincipalDep
from cloud.api.deps import NowDep, ReadSessionDep, SessionDep, SettingsDep
from cloud.api.schemas import (
    ParcelPublic,
    ReturnConfirm,
    ShipmentCancel,
    ShipmentRequest,
    ShipmentReserve,
    ShipmentsPublic,
    ShipmentUpdate,
    error_responses,
    json_answer,
)
from cloud.core.parcels import Status
from cloud.services import queries, shipments

router = APIRouter(tags=["shipments"])

API_PREFIX = "/api/v1"  # the Location of a new parcel
REPLAYED_HEADER = "Idempotent-Replayed"

IdempotencyKeyHeader = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=shipments.IDEMPOTENCY_KEY_MAX_CHARS,
        description="Any unique string per write (a UUID): a retry with the same key and body "
        "returns the first answer and changes nothing",
    ),
]
ShipmentId = Annotated[
    str, Path(min_length=1, max_length=64, description="The shipment's id (or its parcel_id)")
]


@router.post(
    "/shipments",
    status_code=status.HTTP_201_CREATED,
    response_model=ParcelPublic,
    responses=error_responses(401, 403, 409, 422),
)
def announce_shipment(
    body: ShipmentRequest,
    session: SessionDep,
    now: NowDep,
    principal: ErpPrincipalDep,
    idempotency_key: IdempotencyKeyHeader,
) -> JSONResponse:
    """Announce a shipment for a cabinet: the parcel is `announced` until a courier deposits it.

    The cabinet must be at one of the key's sites; the parcel is the key's carrier's or
    merchant's, and no other key sees it. The courier's deposit matches it by tracking number;
    the phone given here gets the code if the depositing courier is of the key's carrier or
    typed the same phone (docs/who-may-do-what.md, "A deposit meets an announcement").

    With a `size` (or length, width and height) a door of that size is held at the cabinet
    for the parcel until a day past `eta`; a cabinet with no free door of the size or larger
    (counting the doors held for other shipments) is a 409 whose message starts `no_door:`,
    and nothing is announced (docs/shipments.md, "Door reservations").

    A retry with the same Idempotency-Key answers as the first request
    did (header `Idempotent-Replayed: true`); the same key with another body is a 409.
    """
    shipment = shipments.ShipmentCreate(
        order_no=body.order_no,
        tracking_no=body.tracking_no,
        phone=body.phone,
        cabinet_id=body.cabinet_id,
        length_mm=body.length_mm,
        width_mm=body.width_mm,
        height_mm=body.height_mm,
        weight_g=body.weight_g,
        courier_company=body.courier_company,
        window_s=body.pickup_window_s,
        size=body.size,
        eta=body.eta,
    )
    result = shipments.announce_shipment(
        session=session,
        principal=principal,
        idempotency_key=idempotency_key,
        shipment=shipment,
        now=now,
    )
    if result.replayed:
        headers = {REPLAYED_HEADER: "true"}
    else:
        headers = {"Location": f"{API_PREFIX}/parcels/{result.parcel_row_id}"}
    return JSONResponse(result.response, status_code=status.HTTP_201_CREATED, headers=headers)


def _answer(result: shipments.Announced) -> JSONResponse:
    headers = {REPLAYED_HEADER: "true"} if result.replayed else None
    code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    return JSONResponse(result.response, status_code=code, headers=headers)


@router.get("/shipments", response_model=ShipmentsPublic, responses=error_responses(401, 403, 422))
def list_shipments(
    session: ReadSessionDep,
    now: NowDep,
    principal: ErpPrincipalDep,
    shipment_status: Annotated[
        Status | None, Query(alias="status", description="Only shipments in this status")
    ] = None,
    site: Annotated[str | None, Query(max_length=64, description="Only this site's")] = None,
    cabinet: Annotated[str | None, Query(max_length=64, description="Only this cabinet's")] = None,
    changed_since: Annotated[
        datetime | None,
        Query(description="Only shipments changed at or after this time (ISO 8601, with zone)"),
    ] = None,
    order_no: Annotated[str | None, Query(max_length=64, description="This order's")] = None,
    tracking_no: Annotated[
        str | None, Query(max_length=40, description="This tracking number's")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=512, description="`next_cursor` of the page before")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=shipments.MAX_PAGE)] = 50,
) -> Response:
    """List the key's shipments, oldest first, a page at a time.

    Follow `next_cursor` until it is null: a shipment announced meanwhile comes on a later page,
    none is skipped or repeated. Filter by order_no or tracking_no to read one by those.
    """
    if changed_since is not None and changed_since.tzinfo is None:
        raise shipments.InvalidShipment(
            "changed_since needs a time zone (e.g. 2026-12-04T10:00:00Z)",
            field="changed_since",
            location="query",
        )
    page = shipments.list_shipments(
        session=session,
        principal=principal,
        filters=shipments.ShipmentFilter(
            status=shipment_status,
            site=site,
            cabinet=cabinet,
            changed_since=changed_since,
            order_no=order_no,
            tracking_no=tracking_no,
        ),
        cursor=cursor,
        limit=limit,
        now=now,
    )
    data = [queries.parcel_record(view) for view in page.views]
    page_json = {"data": data, "count": len(data), "next_cursor": page.next_cursor}
    return json_answer(ShipmentsPublic.model_validate(page_json))


@router.get(
    "/shipments/{shipment_id}",
    response_model=ParcelPublic,
    responses=error_responses(401, 403, 404, 422),
)
def get_shipment(
    shipment_id: ShipmentId, session: ReadSessionDep, now: NowDep, principal: ErpPrincipalDep
) -> Response:
    """Show one of the key's shipments by its id: status, ERP order state and what was announced."""
    view = shipments.get_shipment(
        session=session, principal=principal, shipment_id=shipment_id, now=now
    )
    return json_answer(ParcelPublic(**queries.parcel_record(view)))


@router.patch(
    "/shipments/{shipment_id}",
    response_model=ParcelPublic,
    responses=error_responses(401, 403, 404, 409, 422),
)
def update_shipment(
    shipment_id: ShipmentId,
    body: ShipmentUpdate,
    session: SessionDep,
    now: NowDep,
    principal: ErpPrincipalDep,
    idempotency_key: IdempotencyKeyHeader,
) -> JSONResponse:
    """Change the phone, the cabinet or the pickup window of a shipment not deposited yet.

    Only while it is `announced`: afterwards a 409 names the status it is in.
    """
    change = shipments.ShipmentChange(
        phone=body.phone, cabinet_id=body.cabinet_id, window_s=body.pickup_window_s
    )
    result = shipments.update_shipment(
        session=session,
        principal=principal,
        idempotency_key=idempotency_key,
        shipment_id=shipment_id,
        change=change,
        now=now,
    )
    return _answer(result)


@router.post(
    "/shipments/{shipment_id}/cancel",
    response_model=ParcelPublic,
    responses=error_responses(401, 403, 404, 409, 422),
)
def cancel_shipment(
    shipment_id: ShipmentId,
    session: SessionDep,
    now: NowDep,
    settings: SettingsDep,
    principal: ErpPrincipalDep,
    idempotency_key: IdempotencyKeyHeader,
    body: ShipmentCancel | None = None,
) -> JSONResponse:
    """Cancel a shipment, announced or in a locker (its code is revoked and couriers are asked
    to take it back); once it left the locker, a 409 names the status it is in."""
    result = shipments.cancel_shipment(
        session=session,
        principal=principal,
        idempotency_key=idempotency_key,
        shipment_id=shipment_id,
        reason=body.reason if body is not None else "",
        now=now,
        seal_key=settings.secret_key_bytes,
    )
    return _answer(result)


@router.post(
    "/shipments/{shipment_id}/reserve",
    response_model=ParcelPublic,
    responses=error_responses(401, 403, 404, 409, 422),
)
def reserve_door(
    shipment_id: ShipmentId,
    body: ShipmentReserve,
    session: SessionDep,
    now: NowDep,
    principal: ErpPrincipalDep,
    idempotency_key: IdempotencyKeyHeader,
) -> JSONResponse:
    """The shipment is on its way: hold a door of its size at its cabinet until a day past `eta`.

    For an announced shipment; the size is the body's, else the announcement's (its size or
    its three dimensions). Sent again, it renews the hold. A cabinet with no free door of the
    size or larger (counting the doors held for other shipments) is a 409 whose message starts
    `no_door:`, and nothing changes (docs/shipments.md, "Door reservations").
    """
    result = shipments.reserve_door(
        session=session,
        principal=principal,
        idempotency_key=idempotency_key,
        shipment_id=shipment_id,
        size=body.size,
        eta=body.eta,
        now=now,
    )
    return _answer(result)


@router.post(
    "/shipments/{shipment_id}/confirm-return",
    response_model=ParcelPublic,
    responses=error_responses(401, 403, 404, 409, 422),
)
def confirm_return(
    shipment_id: ShipmentId,
    session: SessionDep,
    now: NowDep,
    principal: ErpPrincipalDep,
    idempotency_key: IdempotencyKeyHeader,
    body: ReturnConfirm | None = None,
) -> JSONResponse:
    """Confirm a shipment a courier took back (`retrieved`) is back with the sender: `returned`."""
    result = shipments.confirm_return(
        session=session,
        principal=principal,
        idempotency_key=idempotency_key,
        shipment_id=shipment_id,
        note=body.note if body is not None else "",
        now=now,
    )
    return _answer(result)
