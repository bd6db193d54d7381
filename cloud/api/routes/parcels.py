"""`/parcels` and `/tracking`: parcels for the ERP, with masked phones and the tracking timeline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from cloud.api.access import ErpPrincipalDep, enforce
from cloud.api.deps import NowDep, ReadSessionDep
from cloud.api.schemas import (
    ParcelPublic,
    ParcelsPublic,
    TrackingPublic,
    error_responses,
    json_answer,
)
from cloud.core.access import Action, decide, parcel_scope
from cloud.core.parcels import Status, erp_state, order_state
from cloud.services import queries

router = APIRouter(tags=["parcels"])


def parcel_public(view: queries.ParcelView) -> ParcelPublic:
    """Return the API's view of a parcel: the phone masked, no code hash."""
    return ParcelPublic(**queries.parcel_record(view))


@router.get("/parcels", response_model=ParcelsPublic, responses=error_responses(401, 403, 422))
def list_parcels(
    session: ReadSessionDep,
    now: NowDep,
    principal: ErpPrincipalDep,
    cabinet: Annotated[str | None, Query(max_length=64, description="Only this cabinet's")] = None,
    parcel_status: Annotated[
        Status | None, Query(alias="status", description="Only parcels in this status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=queries.MAX_OFFSET)] = 0,
) -> Response:
    """List the key's parcels, newest first, optionally of one cabinet and in one status.

    A key's parcels: those its carrier or merchant announced, and (a carrier's key) those its
    couriers deposited unannounced at its sites.
    """
    views = queries.list_parcels(
        session=session,
        now=now,
        scope=parcel_scope(principal),
        cabinet=cabinet,
        status=parcel_status,
        limit=limit,
        offset=offset,
    )
    records = [queries.parcel_record(v) for v in views]
    return json_answer(ParcelsPublic.model_validate({"data": records, "count": len(records)}))


@router.get(
    "/parcels/{parcel_id}",
    response_model=ParcelPublic,
    responses=error_responses(401, 403, 404, 422),
)
def get_parcel(
    parcel_id: Annotated[str, Path(min_length=1, max_length=64)],
    session: ReadSessionDep,
    now: NowDep,
    principal: ErpPrincipalDep,
) -> Response:
    """Show one of the key's parcels by its cabinet-made parcel_id (or its row id)."""
    row = queries.find_parcel(session=session, parcel_id=parcel_id)
    decision = decide(
        principal, Action.READ_PARCEL, queries.parcel_resource(session=session, row=row)
    )
    enforce(decision, f"no parcel {parcel_id!r}")
    assert row is not None
    return json_answer(parcel_public(queries.parcel_view(row, now)))


@router.get(
    "/tracking/{tracking_no}",
    response_model=TrackingPublic,
    responses=error_responses(401, 403, 404, 422),
    tags=["tracking"],
)
def get_tracking(
    tracking_no: Annotated[str, Path(min_length=1, max_length=64)],
    session: ReadSessionDep,
    now: NowDep,
    principal: ErpPrincipalDep,
) -> Response:
    """Show one of the key's shipments: status, ERP order state, timeline and overdue fee."""
    found = queries.tracking(
        connection=session.connection(),
        tracking_no=tracking_no,
        now=now,
        scope=parcel_scope(principal),
    )
    if found is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no parcel with tracking number {tracking_no!r}"
        )
    return json_answer(tracking_public(found))


def tracking_public(found: queries.Tracking) -> TrackingPublic:
    """The API's view of a tracking read (the route's and cloud/api/fast_reads.py's answer)."""
    timeline = [
        {
            "status": e.status,
            "erp_state": erp_state(Status(e.status)),
            "order_state": order_state(Status(e.status)).zh,
            "shipx_status": order_state(Status(e.status)).shipx,
            "at": e.at,
            "source": e.source,
            "note": e.note,
        }
        for e in found.timeline
    ]
    fee = vars(found.fee) if found.fee is not None else None
    # Built from plain values and validated once, in pydantic's core (not model by model).
    answer = {"parcel": queries.parcel_record(found.view), "timeline": timeline, "overdue_fee": fee}
    return TrackingPublic.model_validate(answer)
