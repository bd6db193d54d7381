"""The MQTT message models of the cabinet ↔ cloud contract (protocol version 1).

Every payload is one JSON object with `"v": 1`. The models are pydantic v2 and strict: JSON types
are never coerced (`"5"` is not 5, `1` is not `true`), and from Python, enum fields take enum
members and timestamps take aware `datetime`s.

Compatibility rules (the contract is versioned by `v` and changed only by adding):

- Top-level keys are fixed: an unknown key anywhere at the top of a payload is rejected, because a
  new top-level key could change what the whole message means. Adding one needs a new `v`.
- Inside `data` (and in nested items: code entries, courier entries, compartments of a state)
  unknown keys are ignored, so a newer sender can add data fields without breaking older
  receivers. A receiver must therefore never rely on a data field it does not know.
- A new event or command type is an addition too, but a receiver rejects a type it does not know
  (it cannot act on it): upgrade the cloud before the cabinets that send new events, and the
  cabinets before the cloud sends them new commands (the cabinet acks an unknown command with
  `ok: false`, so the cloud learns it was not understood).

Field conventions:

- Timestamps are RFC 3339 with an explicit offset; they are normalised to UTC and always written
  with `Z`. A timestamp without an offset is rejected.
- Ids (message ids, parcel ids, courier ids, tracking numbers) are 1–64 printable ASCII characters
  with no spaces; a ULID or UUID fits, and none is required.
- A compartment id is the label on its door: `[A-Za-z0-9_-]{1,16}` ("A03", "12").
- A phone is E.164 (`+` then 8–15 digits, no leading 0 after the `+`); only its shape is checked
  here, the cabinet parses it properly before it reaches the wire.
- Counters (`seq`, `boot`, `upto`) and durations fit a signed 64-bit SQL column.
- Free text (fault details, reasons, errors) is one line: no control characters, which also keeps
  NULs out of PostgreSQL and forged lines out of logs.
- Phones and code/PIN hashes are left out of `repr()`, so logging a message leaks neither.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from protocol.config_push import ConfigBodyError, check_body, config_sha256
from protocol.topics import CABINET_ID_PATTERN, TopicKind

PROTOCOL_VERSION = 1
ID_PATTERN = r"[!-~]{1,64}"
COMPARTMENT_ID_PATTERN = r"[A-Za-z0-9_-]{1,16}"
PHONE_PATTERN = r"\+[1-9][0-9]{7,14}"
# Date, `T`, time with optional fraction, and an offset that must be there (`Z` or ±hh:mm).
RFC3339_PATTERN = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_RFC3339 = re.compile(RFC3339_PATTERN)
INT64_MAX = 2**63 - 1


def _full(pattern: str) -> str:
    # pydantic (Rust regex) and JSON Schema (ECMA-262) both read `$` as the end of the text.
    return f"^{pattern}$"


def _printable_text(max_length: int) -> Any:
    return StringConstraints(min_length=1, max_length=max_length, pattern=r"^[^\x00-\x1F\x7F]+$")


def _parse_rfc3339(value: object) -> object:
    # Parsed here because pydantic alone would also take "1700000000" or a space for `T`.
    if not isinstance(value, str):
        return value
    match = _RFC3339.fullmatch(value)
    if not match:
        raise ValueError("timestamp must be RFC 3339 with an offset, e.g. 2024-05-01T08:30:00Z")
    dot_fraction, offset = match.groups()
    microseconds = (dot_fraction or ".")[1:7].ljust(6, "0")  # a datetime holds no more
    return datetime.fromisoformat(f"{value[:19]}.{microseconds}{offset}")


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 has no UTC form
        raise ValueError("timestamp is out of range in UTC") from None


def _format_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_parse_rfc3339),
    AfterValidator(_to_utc),
    PlainSerializer(_format_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _full(RFC3339_PATTERN)}),
]
CabinetId = Annotated[str, StringConstraints(pattern=_full(CABINET_ID_PATTERN))]
Id = Annotated[str, StringConstraints(pattern=_full(ID_PATTERN))]
CompartmentId = Annotated[str, StringConstraints(pattern=_full(COMPARTMENT_ID_PATTERN))]
Phone = Annotated[str, StringConstraints(pattern=_full(PHONE_PATTERN)), Field(repr=False)]
# A hash in whatever encoding the cloud chose (hex, or a PHC string such as `$argon2id$...`).
Hash = Annotated[str, StringConstraints(pattern=_full(r"[!-~]{1,256}")), Field(repr=False)]
Seconds = Annotated[int, Field(ge=1, le=INT64_MAX)]
Seq = Annotated[int, Field(ge=1, le=INT64_MAX)]
Counter = Annotated[int, Field(ge=0, le=INT64_MAX)]


class Size(StrEnum):
    """Compartment size, smallest first."""

    S = "S"
    M = "M"
    L = "L"
    XL = "XL"


class PickupMethod(StrEnum):
    """How a recipient opened the door: typed code, QR shown to the scanner, or remote tap."""

    CODE = "code"
    QR = "qr"
    REMOTE = "remote"


class RetrievalReason(StrEnum):
    """Why a courier took a parcel back out."""

    EXPIRED = "expired"
    COURIER_CANCEL = "courier_cancel"


class CompartmentState(StrEnum):
    """What a compartment is doing, as the cabinet sees it."""

    FREE = "free"  # empty and usable
    RESERVED = "reserved"  # held for a deposit in progress
    OCCUPIED = "occupied"  # holds a parcel
    OUT_OF_SERVICE = "out_of_service"  # taken out by a manager
    FAULTED = "faulted"  # lock fault or forced door: needs a technician


def _require_wire_keys(schema: dict[str, Any]) -> None:
    # `v` and `type` have defaults for Python callers, but the wire always carries them.
    required = schema.setdefault("required", [])
    for key in ("v", "type"):
        if key in schema.get("properties", {}) and key not in required:
            required.insert(0, key)


# _NO_VALUE_CACHE: by default pydantic-core keeps every string of 64 characters or less it parses
# from JSON in a process-wide cache of 16,384 entries. Our payloads are full of strings seen
# once (event, command and parcel ids, timestamps), so the cache only fills: the cabinet
# daemon's RSS crept ~1.6 MB over its first few thousand pickups (`locker bench edge --field`,
# tracemalloc). Keys repeat, so they stay cached.
class _Envelope(BaseModel):
    """A whole payload: strict, immutable, unknown top-level keys rejected."""

    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="forbid",
        json_schema_extra=_require_wire_keys,
        cache_strings="keys",  # see _NO_VALUE_CACHE
    )

    v: Literal[1] = 1


class _Data(BaseModel):
    """A nested object: strict, immutable, unknown keys ignored (a newer sender may add some)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore", cache_strings="keys")


# --- events: cabinet → cloud on lockers/v1/{cab}/event -------------------------------------------


class EventBase(_Envelope):
    """Envelope of every event. `seq` rises by exactly 1 per event per cabinet, forever."""

    TOPIC_KIND: ClassVar[TopicKind] = TopicKind.EVENT

    id: Id
    cab: CabinetId
    seq: Seq
    ts: Timestamp


class ParcelDepositedData(_Data):
    """A courier put a parcel in; the cabinet named it `parcel_id` (globally unique, e.g. ULID)."""

    parcel_id: Id
    compartment: CompartmentId
    size: Size
    tracking_no: Id
    phone: Phone
    courier_id: Id


class ParcelDeposited(EventBase):
    """Event `parcel.deposited`."""

    type: Literal["parcel.deposited"] = "parcel.deposited"
    data: ParcelDepositedData


class ParcelPickedUpData(_Data):
    """The recipient took their parcel out."""

    compartment: CompartmentId
    parcel_id: Id
    method: PickupMethod


class ParcelPickedUp(EventBase):
    """Event `parcel.picked_up`."""

    type: Literal["parcel.picked_up"] = "parcel.picked_up"
    data: ParcelPickedUpData


class ParcelRetrievedData(_Data):
    """A courier took a parcel back out."""

    compartment: CompartmentId
    parcel_id: Id
    courier_id: Id
    reason: RetrievalReason


class ParcelRetrieved(EventBase):
    """Event `parcel.retrieved`."""

    type: Literal["parcel.retrieved"] = "parcel.retrieved"
    data: ParcelRetrievedData


class DoorLeftOpenData(_Data):
    """A door has stayed open for `seconds`."""

    compartment: CompartmentId
    seconds: Seconds


class DoorLeftOpen(EventBase):
    """Event `door.left_open`."""

    type: Literal["door.left_open"] = "door.left_open"
    data: DoorLeftOpenData


class DoorForcedData(_Data):
    """A door opened without the cabinet unlocking it."""

    compartment: CompartmentId


class DoorForced(EventBase):
    """Event `door.forced`."""

    type: Literal["door.forced"] = "door.forced"
    data: DoorForcedData


class DoorOccupancyMismatchData(_Data):
    """A shut door's occupancy sensor disagrees with the cabinet's record.

    `expected` is what the cabinet holds there (`empty` or `parcel`), `sensed` what the sensor
    reads (`occupied` or `empty`): `empty`/`occupied` is something left in a free compartment,
    `parcel`/`empty` a parcel the sensor no longer sees (or a sensor stuck "empty").
    """

    compartment: CompartmentId
    expected: Literal["empty", "parcel"]
    sensed: Literal["occupied", "empty"]


class DoorOccupancyMismatch(EventBase):
    """Event `door.occupancy_mismatch`."""

    type: Literal["door.occupancy_mismatch"] = "door.occupancy_mismatch"
    data: DoorOccupancyMismatchData


class LockFaultData(_Data):
    """A lock did not do what it was told."""

    compartment: CompartmentId
    detail: Annotated[str, _printable_text(500)]


class LockFault(EventBase):
    """Event `lock.fault`."""

    type: Literal["lock.fault"] = "lock.fault"
    data: LockFaultData


class KeypadLockoutData(_Data):
    """Too many wrong codes: the keypad refuses codes for `seconds`."""

    seconds: Seconds


class KeypadLockout(EventBase):
    """Event `keypad.lockout`."""

    type: Literal["keypad.lockout"] = "keypad.lockout"
    data: KeypadLockoutData


class CompartmentServiceData(_Data):
    """A compartment was taken out of service (`in_service` false) or put back."""

    compartment: CompartmentId
    in_service: bool


class CompartmentServiceChanged(EventBase):
    """Event `compartment.service`."""

    type: Literal["compartment.service"] = "compartment.service"
    data: CompartmentServiceData


class NoticeResendRequestedData(_Data):
    """A recipient at the screen asked for their code again."""

    phone: Phone


class NoticeResendRequested(EventBase):
    """Event `notice.resend_requested`."""

    type: Literal["notice.resend_requested"] = "notice.resend_requested"
    data: NoticeResendRequestedData


EVENT_MODELS: tuple[type[EventBase], ...] = (
    ParcelDeposited,
    ParcelPickedUp,
    ParcelRetrieved,
    DoorLeftOpen,
    DoorForced,
    LockFault,
    KeypadLockout,
    CompartmentServiceChanged,
    NoticeResendRequested,
    DoorOccupancyMismatch,
)
EVENT_TYPES: dict[str, type[EventBase]] = {m.model_fields["type"].default: m for m in EVENT_MODELS}

Event = Annotated[
    ParcelDeposited
    | ParcelPickedUp
    | ParcelRetrieved
    | DoorLeftOpen
    | DoorForced
    | LockFault
    | KeypadLockout
    | CompartmentServiceChanged
    | NoticeResendRequested
    | DoorOccupancyMismatch,
    Field(discriminator="type"),
]


# --- commands: cloud → cabinet on lockers/v1/{cab}/cmd -------------------------------------------


class CommandBase(_Envelope):
    """Envelope of every command.

    The cabinet runs each command id at most once, drops it at `expires_at`, and always acks it.
    """

    TOPIC_KIND: ClassVar[TopicKind] = TopicKind.CMD

    id: Id
    cab: CabinetId
    ts: Timestamp
    expires_at: Timestamp

    @model_validator(mode="after")
    def _expires_after_sent(self) -> Self:
        if self.expires_at <= self.ts:
            raise ValueError("expires_at must be later than ts")
        return self

    def is_expired(self, now: datetime) -> bool:
        """Return whether the command must be dropped (acked `ok: false`) at `now`."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return now >= self.expires_at


class CodeEntry(_Data):
    """The hash of the pickup code for one parcel, valid until `expires_at`."""

    parcel_id: Id
    compartment: CompartmentId
    code_hash: Hash
    expires_at: Timestamp


def _unique(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} {value!r} appears more than once")
        seen.add(value)


class PutCodesData(_Data):
    """Pickup codes to add or replace, keyed by parcel."""

    entries: Annotated[list[CodeEntry], Field(min_length=1)]

    @model_validator(mode="after")
    def _one_entry_per_parcel(self) -> Self:
        _unique([e.parcel_id for e in self.entries], "parcel_id")
        return self


class PutCodes(CommandBase):
    """Command `codes.put`."""

    type: Literal["codes.put"] = "codes.put"
    data: PutCodesData


class ParcelIdsData(_Data):
    """A list of parcels."""

    parcel_ids: Annotated[list[Id], Field(min_length=1)]


class RevokeCodes(CommandBase):
    """Command `codes.revoke`: these parcels' codes no longer open anything."""

    type: Literal["codes.revoke"] = "codes.revoke"
    data: ParcelIdsData


class OpenCompartmentData(_Data):
    """Open a door remotely; `actor` (who) and `reason` (why) go to the audit trail."""

    compartment: CompartmentId
    reason: Annotated[str, _printable_text(500)]
    actor: Annotated[str, _printable_text(128)]


class OpenCompartment(CommandBase):
    """Command `compartment.open`."""

    type: Literal["compartment.open"] = "compartment.open"
    data: OpenCompartmentData


class SetCompartmentService(CommandBase):
    """Command `compartment.service`: take a compartment out of service or put it back."""

    type: Literal["compartment.service"] = "compartment.service"
    data: CompartmentServiceData


CarrierId = Annotated[str, _printable_text(100)]


class CourierEntry(_Data):
    """A courier allowed to log in at this cabinet, with the hash of their PIN.

    `carrier_id` (optional, added later) is the courier company they work for: a door reserved
    for one carrier's shipment opens only for its couriers.
    """

    courier_id: Id
    pin_hash: Hash
    carrier_id: CarrierId | None = None


class PutCouriersData(_Data):
    """Couriers to add or update (one command carries many)."""

    couriers: Annotated[list[CourierEntry], Field(min_length=1)]

    @model_validator(mode="after")
    def _one_entry_per_courier(self) -> Self:
        _unique([c.courier_id for c in self.couriers], "courier_id")
        return self


class PutCouriers(CommandBase):
    """Command `couriers.put`."""

    type: Literal["couriers.put"] = "couriers.put"
    data: PutCouriersData


class PutRetrievals(CommandBase):
    """Command `retrievals.put`: parcels couriers must take back (expired or cancelled)."""

    type: Literal["retrievals.put"] = "retrievals.put"
    data: ParcelIdsData


class ReserveCompartmentData(_Data):
    """Hold a free door of `size` (or the smallest larger one) for an announced parcel.

    The door is given to no other deposit until `until`, or until this parcel is deposited.
    `phone` is the recipient's (the cabinet keeps every parcel's phone, for "send my code again"
    and for `parcel.deposited`; its screen shows only a mask of it). Where `carrier_id` is set,
    only a courier of that carrier may deposit the parcel. Sent again for the same `parcel_id`,
    it replaces the reservation (a changed phone, say).
    """

    parcel_id: Id
    size: Size
    until: Timestamp
    phone: Phone
    tracking_no: Id | None = None
    carrier_id: CarrierId | None = None


class ReserveCompartment(CommandBase):
    """Command `compartments.reserve`."""

    type: Literal["compartments.reserve"] = "compartments.reserve"
    data: ReserveCompartmentData


class ReleaseCompartments(CommandBase):
    """Command `compartments.release`: these parcels' reservations end (an unknown one is no
    error: it may have lapsed or been deposited already)."""

    type: Literal["compartments.release"] = "compartments.release"
    data: ParcelIdsData


SettingKey = Annotated[str, StringConstraints(pattern=_full(r"[A-Za-z0-9_.-]{1,64}"))]


def _check_setting(value: object) -> object:
    # One check instead of a union, so an error names the setting, not a union branch.
    if isinstance(value, str):
        if len(value) > 1024 or "\x00" in value:  # NUL cannot go into SQL text
            raise ValueError("a string setting has at most 1024 characters and no NUL")
        value.encode("utf-8")  # lone surrogates cannot go on the wire
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("a number setting must be finite")
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise ValueError("an integer setting must fit in 64 bits")
    elif not isinstance(value, bool):
        raise ValueError("a setting is a JSON string, number or boolean")
    return value


SettingValue = Annotated[
    bool | int | float | str,
    PlainValidator(_check_setting),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "maxLength": 1024}, {"type": "number"}, {"type": "boolean"}]}
    ),
]


Sha256Hex = Annotated[str, StringConstraints(pattern=_full(r"[0-9a-f]{64}"))]


class PutConfigData(_Data):
    """Cabinet settings to change by name (each a JSON scalar; to reset one, send its default),
    or a whole new config body: its `version`, its `sha256` (protocol.config_push) and the body
    itself (`config`: layout, buses, boards, screen and broker settings; never an identity or a
    secret). A body is applied by the daemon atomically and rolled back if its doors do not come
    up (docs/mqtt.md#config-push). One message carries settings or a body, not both.
    """

    settings: Annotated[dict[SettingKey, SettingValue], Field(min_length=1)] | None = None
    version: Annotated[int, Field(ge=1, le=INT64_MAX)] | None = None
    sha256: Sha256Hex | None = None
    config: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _settings_or_body(self) -> PutConfigData:
        body = (self.version, self.sha256, self.config)
        if self.settings is not None:
            if any(part is not None for part in body):
                raise ValueError("config.put carries settings or a config body, not both")
            return self
        if any(part is None for part in body):
            raise ValueError("config.put needs settings, or version, sha256 and config together")
        assert self.config is not None
        try:
            check_body(self.config)
        except ConfigBodyError as err:
            raise ValueError(str(err)) from None
        if config_sha256(self.config) != self.sha256:
            raise ValueError("sha256 is not the hash of config (protocol.config_push)")
        return self


class PutConfig(CommandBase):
    """Command `config.put`."""

    type: Literal["config.put"] = "config.put"
    data: PutConfigData


COMMAND_MODELS: tuple[type[CommandBase], ...] = (
    PutCodes,
    RevokeCodes,
    OpenCompartment,
    SetCompartmentService,
    PutCouriers,
    PutRetrievals,
    PutConfig,
    ReserveCompartment,
    ReleaseCompartments,
)
COMMAND_TYPES: dict[str, type[CommandBase]] = {
    m.model_fields["type"].default: m for m in COMMAND_MODELS
}

Command = Annotated[
    PutCodes
    | RevokeCodes
    | OpenCompartment
    | SetCompartmentService
    | PutCouriers
    | PutRetrievals
    | PutConfig
    | ReserveCompartment
    | ReleaseCompartments,
    Field(discriminator="type"),
]


# --- presence: cabinet → cloud on lockers/v1/{cab}/state (retained) ------------------------------


class CompartmentInfo(_Data):
    """One compartment in a birth message."""

    id: CompartmentId
    size: Size
    state: CompartmentState


class DoorHealthEntry(_Data):
    """One door's wear since the cabinet was installed (counters never go down).

    `open_ms_recent` is the median pulse-to-open time of the door's last few opens,
    `open_ms_long` the median of its longer history (docs/mqtt.md says how many): a lock that
    is going stiff opens later and later before it jams. Both are absent until timed.
    """

    compartment: CompartmentId
    board: Annotated[str, _printable_text(40)] | None = None  # "bus:address"; None for GPIO
    pulses: Counter
    failed_unlocks: Counter
    flaps: Counter  # a door or occupancy sensor that flipped back within a second or two
    opens_timed: Counter
    open_ms_recent: Annotated[int, Field(ge=0, le=600_000)] | None = None
    open_ms_long: Annotated[int, Field(ge=0, le=600_000)] | None = None


class BoardHealthEntry(_Data):
    """One RS485 board's bus errors (timeouts, bad checksums, garbage, ...) and requests."""

    board: Annotated[str, _printable_text(40)]  # "bus:address"
    requests: Counter
    errors: Counter


class CabinetHealthData(_Data):
    """Per-door and per-board health counters: a birth's `health` (docs/mqtt.md)."""

    doors: Annotated[list[DoorHealthEntry], Field(max_length=1024)]
    boards: Annotated[list[BoardHealthEntry], Field(max_length=256)] = []


def _state_schema_rules(schema: dict[str, Any]) -> None:
    _require_wire_keys(schema)
    schema["if"] = {"properties": {"online": {"const": True}}}
    schema["then"] = {"required": ["firmware", "compartments"]}
    schema["else"] = {"not": {"anyOf": [{"required": ["compartments"]}, {"required": ["health"]}]}}


class State(_Envelope):
    """Presence of a cabinet, retained on its state topic.

    The birth (`online: true`) is published on connect and carries the firmware version and every
    compartment. The Last Will (`online: false`) is set at the same connect with the same `boot`,
    so its `ts` is the connect time, it may carry `firmware`, and it never carries compartments
    (they would be stale). Which of two states wins is `supersedes`.
    """

    model_config = ConfigDict(json_schema_extra=_state_schema_rules)
    TOPIC_KIND: ClassVar[TopicKind] = TopicKind.STATE

    cab: CabinetId
    online: bool
    boot: Annotated[int, Field(ge=0, le=INT64_MAX)]
    firmware: Annotated[str, _printable_text(64)] | None = None
    ts: Timestamp
    compartments: list[CompartmentInfo] | None = None
    # The hash of the config body the daemon runs (protocol.config_push): how the cloud sees
    # that a pushed config took, or was rolled back. None: a cabinet configured by hand.
    config_sha256: Sha256Hex | None = None
    # Wear counters per door and board: a birth may carry them (a will never does). The cabinet
    # publishes its birth again, same boot and a later `ts`, to refresh them.
    health: CabinetHealthData | None = None

    @model_validator(mode="after")
    def _birth_or_will(self) -> Self:
        if self.online and (self.firmware is None or self.compartments is None):
            raise ValueError("a birth (online true) needs firmware and compartments")
        if not self.online and self.compartments is not None:
            raise ValueError("a will (online false) carries no compartments")
        if not self.online and self.health is not None:
            raise ValueError("a will (online false) carries no health")
        _unique([c.id for c in self.compartments or []], "compartment id")
        return self

    def supersedes(self, old: State | None) -> bool:
        """Return whether this state replaces `old`, so a late Will never hides a newer birth.

        A higher `boot` is a newer connection and wins; a lower one is stale. Within one boot the
        Will (offline) ends the session and beats its birth; otherwise the later `ts` wins.
        """
        if old is None:
            return True
        if old.cab != self.cab:
            raise ValueError(f"cannot compare states of cabinets {old.cab!r} and {self.cab!r}")
        if self.boot != old.boot:
            return self.boot > old.boot
        if self.online != old.online:
            return not self.online
        return self.ts >= old.ts


# --- acks -----------------------------------------------------------------------------------------


def _ack_schema_rules(schema: dict[str, Any]) -> None:
    _require_wire_keys(schema)
    schema["if"] = {"properties": {"ok": {"const": False}}}
    schema["then"] = {"required": ["error"], "properties": {"error": {"type": "string"}}}
    schema["else"] = {"properties": {"error": {"type": "null"}}}


class Ack(_Envelope):
    """The cabinet's answer to command `cmd`, on lockers/v1/{cab}/ack; `error` says why not ok.

    A sender writes `error` only beside `ok: false` (the JSON Schema says so). The decoder is
    liberal there: a string `error` beside `ok: true` (a cabinet that copied the contract's
    example, often as `""`) is dropped, so the success still counts instead of the whole ack
    being rejected and the command resent until it expires (docs/mqtt.md#acks).
    """

    model_config = ConfigDict(json_schema_extra=_ack_schema_rules)
    TOPIC_KIND: ClassVar[TopicKind] = TopicKind.ACK

    cmd: Id
    ok: bool
    error: Annotated[str, _printable_text(1024)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _ignore_error_beside_ok(cls, data: Any) -> Any:
        # `ok` must be a real true (strict): `"ok": 1` still fails below with a clear reason.
        if isinstance(data, dict) and data.get("ok") is True and isinstance(data.get("error"), str):
            return {key: value for key, value in data.items() if key != "error"}
        return data

    @classmethod
    def failure(cls, cmd: str, error: str) -> Ack:
        """Return a failed ack, squeezing any `error` text (an exception's, say) into one line."""
        one_line = " ".join("".join(c if c.isprintable() else " " for c in error).split())
        return cls(cmd=cmd, ok=False, error=one_line[:1024] or "failed")

    @model_validator(mode="after")
    def _error_iff_failed(self) -> Self:
        if not self.ok and self.error is None:
            raise ValueError("a failed ack (ok false) needs an error")
        return self


class EventAck(_Envelope):
    """Every event of the cabinet with seq ≤ `upto` is durably stored in the cloud.

    Sent on lockers/v1/{cab}/event-ack after the cloud's commit; `upto: 0` acks nothing.
    """

    TOPIC_KIND: ClassVar[TopicKind] = TopicKind.EVENT_ACK

    upto: Annotated[int, Field(ge=0, le=INT64_MAX)]


Message = EventBase | CommandBase | State | Ack | EventAck
