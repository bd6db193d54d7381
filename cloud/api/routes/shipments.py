"""`POST /shipments`: the ERP announces a shipment, once per Idempotency-Key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, status
from fastapi.responses import JSONResponse

from cloud.api.access import ErpPrincipalDep
from cloud.api.deps import NowDep, SessionDep
from cloud.api.schemas import (
    ParcelPublic,
    ShipmentRequest,
    error_responses,
)
from cloud.services import shipments

router = APIRouter(tags=["shipments"])

API_PREFIX = "/api/v1"  # the Location of a new parcel
REPLAYED_HEADER = "Idempotent-Replayed"


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
    idempotency_key: Annotated[
        str,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=shipments.IDEMPOTENCY_KEY_MAX_CHARS,
            description="Any unique string per shipment (a UUID): a retry with the same key "
            "and body returns the first answer and creates nothing",
        ),
    ],
) -> JSONResponse:
    """Announce a shipment for a cabinet: the parcel is `announced` until a courier deposits it.

    The cabinet must be at one of the key's sites; the parcel is the key's carrier's or
    merchant's, and no other key sees it. The courier's deposit matches it by tracking number;
    the phone given here gets the code if the depositing courier is of the key's carrier or
    typed the same phone (docs/who-may-do-what.md, "A deposit meets an announcement").

    A retry with the same Idempotency-Key answers as the first request
    did (header `Idempotent-Replayed: true`); the same key with another body is a 409.
    """
    shipment = shipments.ShipmentCreate(
        order_no=body.order_no,
        tracking_no=body.tracking_no,
        phone=body.phone,
        cabinet_id=body.cabinet_id,
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
