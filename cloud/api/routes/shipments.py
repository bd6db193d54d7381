"""`POST /shipments`: the ERP announces a shipment, once per Idempotency-Key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, status
from fastapi.responses import JSONResponse

from cloud.api.access import ErpPrincipalDep
from cloud.api.deps import NowDep, SessionDep
from cloud.api.routes.parcels import parcel_public
from cloud.api.schemas import (
    ErrorPublic,
    FieldErrorPublic,
    ParcelPublic,
    ShipmentRequest,
    error_responses,
)
from cloud.core.parcels import Status, erp_state
from cloud.db.models import Parcel
from cloud.services import queries, shipments

router = APIRouter(tags=["shipments"])

REPLAYED_HEADER = "Idempotent-Replayed"


def _public(row: Parcel) -> dict[str, Any]:
    view = queries.ParcelView(row, erp_state(Status(row.status)), deadline=None)
    return parcel_public(view).model_dump(mode="json")


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
    try:
        result = shipments.announce_shipment(
            session=session,
            principal=principal,
            idempotency_key=idempotency_key,
            shipment=shipment,
            now=now,
            render=_public,
        )
    except shipments.ShipmentError as err:
        return _refused(err)
    if result.replayed:
        return JSONResponse(
            result.response, status_code=status.HTTP_201_CREATED, headers={REPLAYED_HEADER: "true"}
        )
    row = session.get(Parcel, result.parcel_row_id)
    assert row is not None  # just committed
    return JSONResponse(
        _public(row),
        status_code=status.HTTP_201_CREATED,
        headers={"Location": f"/api/v1/parcels/{row.id}"},
    )


def _refused(err: shipments.ShipmentError) -> JSONResponse:
    errors = None
    if err.status_code == status.HTTP_422_UNPROCESSABLE_CONTENT and err.field:
        where = "header" if err.field == "Idempotency-Key" else "body"
        errors = [FieldErrorPublic(field=f"{where}.{err.field}", message=str(err))]
    body = ErrorPublic(detail=str(err), errors=errors)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=err.status_code)
