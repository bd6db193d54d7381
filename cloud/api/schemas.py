"""What the API returns and takes: `XPublic` models (phones masked, never a code or hash)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.responses import Response

from cloud.core.parcels import MAX_WINDOW_S, MIN_WINDOW_S, ErpOrderState, Status
from cloud.core.policies import Language


class FieldErrorPublic(BaseModel):
    """One invalid part of a request."""

    field: str = Field(description="Where the bad value is: `body.phone`, `query.status`, …")
    message: str


class ErrorPublic(BaseModel):
    """Every error answer: a sentence saying what went wrong, and the fields at fault (422)."""

    detail: str
    errors: list[FieldErrorPublic] | None = None


class HealthPublic(BaseModel):
    """Whether the service and its database answer."""

    status: str = Field(description="`ok`, or `degraded` when the database does not answer")
    database: bool


class OccupancyPublic(BaseModel):
    """A cabinet's compartments of one size by state."""

    size: str
    total: int
    free: int
    occupied: int
    out_of_service: int


class CabinetPublic(BaseModel):
    """A cabinet, its presence and its occupancy by size (no credentials)."""

    id: str
    site_id: str
    name: str
    address: str
    online: bool | None = Field(description="null: never seen")
    last_seen_at: datetime | None
    firmware: str | None
    occupancy: list[OccupancyPublic]


class SitePublic(BaseModel):
    """A site's policy as its cabinets and notices run by it."""

    id: str
    name: str
    timezone: str = Field(description="IANA zone of the quiet hours and the deadlines' wall time")
    language: str
    pickup_window_s: int
    reminder_before_s: int | None = Field(description="null: no reminder")
    code_length: int
    quiet_start: time | None = Field(description="local wall time; null with quiet_end: none")
    quiet_end: time | None = Field(description="local wall time; null with quiet_start: none")


class CabinetsPublic(BaseModel):
    """A list of cabinets."""

    data: list[CabinetPublic]
    count: int


class CompartmentPublic(BaseModel):
    """A compartment of a cabinet."""

    id: str = Field(description="The label on its door")
    size: str
    state: str
    in_service: bool
    low_door: bool


class CompartmentsPublic(BaseModel):
    """A cabinet's compartments."""

    data: list[CompartmentPublic]
    count: int


class ParcelPublic(BaseModel):
    """A parcel as the ERP sees it: the phone masked, never the code or its hash."""

    id: str = Field(description="The row's id (the cabinet's parcel_id, or a ULID if announced)")
    parcel_id: str | None = Field(description="The cabinet's id for it; null until deposited")
    tracking_no: str
    order_no: str | None
    status: Status
    erp_state: ErpOrderState
    order_state: str | None = Field(
        default=None,
        description="The order state of a Chinese ERP (docs/parcel-life.md)",
        examples=["已发货"],
    )
    shipx_status: str | None = Field(
        default=None, description="The ShipX-like status", examples=["ready_to_pickup"]
    )
    cabinet_id: str
    compartment: str | None
    size: str | None
    phone_masked: str = Field(examples=["+86 138****1234"])
    deposited_at: datetime | None
    deadline: datetime | None = Field(description="The pickup deadline, pauses included")
    left_locker_at: datetime | None
    length_mm: int | None = None
    width_mm: int | None = None
    height_mm: int | None = None
    weight_g: int | None = None
    courier_company: str | None = None
    pickup_window_s: int | None = Field(
        default=None, description="The ERP's pickup window override; null: the site's"
    )
    updated_at: datetime | None = None


class ParcelsPublic(BaseModel):
    """A page of parcels, newest first."""

    data: list[ParcelPublic]
    count: int


class TimelineEntryPublic(BaseModel):
    """One change in a parcel's life."""

    status: Status
    erp_state: ErpOrderState
    order_state: str | None = Field(default=None, examples=["已签收"])
    shipx_status: str | None = Field(default=None, examples=["delivered"])
    at: datetime
    source: str
    note: str


class OverdueFeePublic(BaseModel):
    """The fee run up past the deadline (shown, never charged here)."""

    amount_minor: int = Field(description="In the currency's minor unit (fen, cents)")
    currency: str
    days: int


class TrackingPublic(BaseModel):
    """A shipment's tracking: the parcel, its timeline, its overdue fee."""

    parcel: ParcelPublic
    timeline: list[TimelineEntryPublic]
    overdue_fee: OverdueFeePublic | None


MAX_PARCEL_MM = 2_000
MAX_PARCEL_G = 30_000


class ShipmentRequest(BaseModel):
    """Announce a shipment: the parcel a courier will bring to a cabinet."""

    order_no: str = Field(min_length=1, max_length=64, examples=["SO-2026-000123"])
    tracking_no: str = Field(
        min_length=1,
        max_length=40,
        examples=["SF1234567890"],
        description="As the courier will scan or type it: letters, digits, '-' (kept upper case)",
    )
    phone: str = Field(
        min_length=8, max_length=16, examples=["+8613812341234"], description="E.164"
    )
    cabinet_id: str = Field(min_length=1, max_length=64, examples=["cab-0001"])
    # A parcel's size: a locker door is well under 2 m and a courier carries no more than 30 kg;
    # anything past these is a typo (mm for cm, g for kg), refused rather than stored.
    length_mm: int | None = Field(default=None, ge=1, le=MAX_PARCEL_MM, examples=[300])
    width_mm: int | None = Field(default=None, ge=1, le=MAX_PARCEL_MM, examples=[200])
    height_mm: int | None = Field(default=None, ge=1, le=MAX_PARCEL_MM, examples=[100])
    weight_g: int | None = Field(default=None, ge=1, le=MAX_PARCEL_G, examples=[1500])
    courier_company: str | None = Field(
        default=None, min_length=1, max_length=100, examples=["SF Express"]
    )
    pickup_window_s: int | None = Field(
        default=None,
        ge=MIN_WINDOW_S,
        le=MAX_WINDOW_S,
        description="Overrides the site's pickup window for this parcel (seconds)",
        examples=[172800],
    )
    size: Literal["S", "M", "L", "XL"] | None = Field(
        default=None,
        description="The door size to hold for it (else derived from length, width and height); "
        "with either, a door is reserved at the cabinet, and a cabinet with none free answers "
        "409 whose message starts `no_door:`",
        examples=["M"],
    )
    eta: AwareDatetime | None = Field(
        default=None,
        description="When the courier is expected: the door is held until a day after it "
        "(default: three days from now, at most 14 days)",
        examples=["2026-12-05T10:00:00+08:00"],
    )


class ShipmentUpdate(BaseModel):
    """Change an announced shipment: any of its phone, cabinet and pickup window."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field must not pass as "no change"

    phone: str | None = Field(
        default=None, min_length=8, max_length=16, examples=["+8613812341234"]
    )
    cabinet_id: str | None = Field(default=None, min_length=1, max_length=64)
    pickup_window_s: int | None = Field(default=None, ge=MIN_WINDOW_S, le=MAX_WINDOW_S)


class ShipmentReserve(BaseModel):
    """Hold a door for an announced shipment that is on its way."""

    model_config = ConfigDict(extra="forbid")

    size: Literal["S", "M", "L", "XL"] | None = Field(
        default=None, description="Else the announcement's size or dimensions", examples=["M"]
    )
    eta: AwareDatetime | None = Field(
        default=None,
        description="When the courier is expected: the door is held until a day after it",
        examples=["2026-12-05T10:00:00+08:00"],
    )


class ShipmentCancel(BaseModel):
    """Cancel a shipment; the reason goes on its timeline."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=200)


class ReturnConfirm(BaseModel):
    """Confirm a retrieved shipment is back with the sender."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=200)


class ShipmentsPublic(BaseModel):
    """A page of shipments, oldest first; `next_cursor` fetches the next (null: the last)."""

    data: list[ParcelPublic]
    count: int
    next_cursor: str | None


# --- scan-to-open ---------------------------------------------------------------------------------


class OtpRequest(BaseModel):
    """Ask for a one-time code by SMS."""

    phone: str = Field(min_length=3, max_length=32, examples=["13812341234"])
    # The page's language, so the SMS is in the language the person is reading.
    language: Language | None = Field(default=None, examples=["zh-CN"])


class OtpRequestedPublic(BaseModel):
    """The same answer whether or not the phone has a parcel here."""

    detail: str
    expires_at: datetime


class VerifyRequest(BaseModel):
    """Prove the phone with the code it received."""

    phone: str = Field(min_length=3, max_length=32)
    code: str = Field(pattern=r"^\s*[0-9]{6}\s*$", description="The 6 digits of the SMS")
    wechat_ticket: str | None = Field(
        default=None,
        max_length=1024,
        description="From a WeChat sign-in of an unbound user: bind that WeChat user to the phone",
    )


class ScanParcelPublic(BaseModel):
    """A parcel the verified phone may open."""

    parcel_id: str
    tracking_no: str
    compartment: str | None
    size: str | None
    deposited_at: datetime | None


class ScanSessionPublic(BaseModel):
    """A verified session: pass `token` to open one of `parcels`."""

    token: str
    expires_at: datetime
    phone_masked: str
    parcels: list[ScanParcelPublic]


class SessionRequest(BaseModel):
    """A session token, to list its parcels (after a WeChat sign-in's redirect)."""

    token: str = Field(min_length=1, max_length=4096)


class OpenRequest(BaseModel):
    """Open the door of one parcel of the session."""

    token: str = Field(min_length=1, max_length=4096)
    parcel_id: str = Field(min_length=1, max_length=64)


class OpenQueuedPublic(BaseModel):
    """The `compartment.open` command is queued for the cabinet."""

    command_id: str
    cabinet_id: str
    compartment: str
    expires_at: datetime


class CallbackPublic(BaseModel):
    """A provider callback was recorded."""

    recorded: bool = Field(description="false: the message is not one of ours (ignored)")


_ERROR_DESCRIPTIONS = {
    401: "Not authenticated: no or a bad X-API-Key, or a wrong or expired one-time code",
    403: "Refused: a bad signature, nonce or token",
    404: "Not found: the message names what",
    409: "Not possible in the current state",
    422: "The request is invalid: `errors` names each field",
    429: "Too many requests: see Retry-After",
    503: "A backing service is unavailable",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, object]]:
    """Return the OpenAPI `responses` entries of these error statuses, all `ErrorPublic`."""
    return {
        code: {"model": ErrorPublic, "description": _ERROR_DESCRIPTIONS[code]} for code in codes
    }


def json_error_responses(*codes: int) -> dict[int | str, dict[str, object]]:
    """As `error_responses`, for a route whose success is not JSON (its errors still are)."""
    schema = {"$ref": "#/components/schemas/ErrorPublic"}
    return {
        code: {
            "description": _ERROR_DESCRIPTIONS[code],
            "content": {"application/json": {"schema": schema}},
        }
        for code in codes
    }


def json_answer(model: BaseModel) -> Response:
    """`model` as the JSON response FastAPI would make of it, serialized once.

    A route that returns the model itself has FastAPI validate it again against the response
    model (in a worker thread of its own) and then dump it: for a page of 50 parcels that was
    most of the API's CPU (`locker bench queries`). The model was validated when it was built,
    so its JSON is written straight from it, in the response model's field names."""
    return Response(model.__pydantic_serializer__.to_json(model), media_type="application/json")
