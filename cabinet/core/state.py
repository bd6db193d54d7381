"""The cabinet's whole state as plain data: layout, parcels, couriers, sessions, settings.

`Cabinet` is the only mutable class; everything inside it is a frozen dataclass, so `copy()`
(new dicts, shared frozen leaves) is cheap and `apply` can work on a copy and throw it away when
an input is refused. `to_dict()` / `from_dict()` make the journal's snapshot. The pickup code key
is not state (it is a secret provisioned with the cabinet's credentials), so no snapshot holds it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from cabinet.core import serial
from cabinet.core.compartments import Compartment, Size
from cabinet.core.errors import BadSnapshot, InvalidInput, UnknownCompartment
from cabinet.core.lockout import COURIER_PIN_POLICY, KEYPAD_POLICY, Guard, LockoutPolicy

CABINET_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class Config:
    """Settings (the cloud may change them with config.put); durations in seconds."""

    code_digits: int = 8
    phone_region: str = "CN"
    unlock_window_s: int = 60  # after an unlock, how long an opening is expected
    # How long an unlocked removal door not yet seen open holds the queue (removal.py): the
    # lock's pulse and its release time (0.5 s + 2 s on the GPIO boards), then a margin.
    unlock_settle_s: float = 3.0
    left_open_after_s: int = 120  # door.left_open once a door stays open this long
    courier_idle_s: int = 180  # sign a courier out after this long without input
    resend_interval_s: int = 600  # at most one notice.resend_requested per phone per interval
    keypad: LockoutPolicy = KEYPAD_POLICY
    courier_pins: LockoutPolicy = COURIER_PIN_POLICY


@dataclass(frozen=True)
class Parcel:
    """A parcel in the cabinet, from its deposit until it is seen taken out."""

    parcel_id: str
    compartment: str
    size: Size
    tracking_no: str
    phone: str = field(repr=False)  # E.164
    courier_id: str
    deposited_at: datetime
    code_hash: str | None = field(default=None, repr=False)  # from codes.put; None: no code
    expires_at: datetime | None = None  # the code's deadline (kept when the code is revoked)
    retrieve: bool = False  # the cloud wants it back (retrievals.put)
    resend_requested_at: datetime | None = None


class Step(StrEnum):
    """Where a courier's deposit is (see `deposit` for the table)."""

    TRACKING = "tracking"  # waiting for a tracking number
    PHONE = "phone"  # waiting for the recipient's mobile
    SIZE = "size"  # waiting for a size
    RESERVED = "reserved"  # an announced parcel with a reserved door: waiting for OpenReserved
    AT_DOOR = "at_door"  # a door is reserved for this parcel


@dataclass(frozen=True)
class Draft:
    """The parcel a courier is depositing now."""

    tracking_no: str | None = None
    phone: str | None = field(default=None, repr=False)
    size: Size | None = None
    compartment: str | None = None
    door_cycled: bool = False  # its door was seen open then closed: the parcel may be inside
    reservation: str | None = None  # an announced parcel's id: its reservation (`reservations`)


@dataclass(frozen=True)
class Reservation:
    """A door held for an announced parcel (`compartments.reserve`) until `until`."""

    parcel_id: str
    compartment: str
    size: Size  # what the cloud asked for; `compartment` is that size or the next larger free
    until: datetime
    phone: str = field(repr=False)  # E.164: the deposit is recorded with it
    tracking_no: str | None = None  # how the courier's scan finds it (None: it only holds a door)
    carrier_id: str | None = None  # only a courier of this carrier may deposit it


@dataclass(frozen=True)
class CourierSession:
    """A signed-in courier."""

    courier_id: str
    signed_in_at: datetime
    last_activity_at: datetime
    step: Step = Step.TRACKING
    draft: Draft = field(default_factory=Draft)
    deposited: int = 0


@dataclass
class Cabinet:
    """Everything the cabinet knows."""

    cabinet_id: str
    compartments: dict[str, Compartment]
    config: Config = field(default_factory=Config)
    parcels: dict[str, Parcel] = field(default_factory=dict)
    couriers: dict[str, str] = field(default_factory=dict, repr=False)  # id -> PIN hash
    courier_carriers: dict[str, str] = field(default_factory=dict)  # id -> carrier id, if known
    reservations: dict[str, Reservation] = field(default_factory=dict)  # by parcel id
    courier_guards: dict[str, Guard] = field(default_factory=dict)
    keypad: Guard = field(default_factory=Guard)
    session: CourierSession | None = None
    # Compartments OPENING for removal whose unlock waits for the previous door to be seen open.
    open_queue: tuple[str, ...] = ()
    # The doors the kiosk's pickup screen shows now (the last code typed or scanned) and that
    # screen's number: when it ends (`PickupClosed`), its doors still queued are dropped, never
    # fired later.
    screen_pickup: tuple[str, ...] = ()
    pickups_shown: int = 0
    # When each mobile last asked for its code again at the screen (any number, parcel or not).
    resend_asked: dict[str, datetime] = field(default_factory=dict, repr=False)

    def copy(self) -> Cabinet:
        """A copy sharing the frozen leaves: changing it never changes `self`."""
        return replace(
            self,
            compartments=dict(self.compartments),
            parcels=dict(self.parcels),
            couriers=dict(self.couriers),
            courier_carriers=dict(self.courier_carriers),
            reservations=dict(self.reservations),
            courier_guards=dict(self.courier_guards),
            resend_asked=dict(self.resend_asked),
        )

    def compartment(self, compartment_id: str) -> Compartment:
        """The compartment with that id, or UnknownCompartment."""
        try:
            return self.compartments[compartment_id]
        except KeyError:
            raise UnknownCompartment(compartment_id) from None

    def to_dict(self, cache: serial.SnapshotCache | None = None) -> dict[str, Any]:
        """A JSON-ready snapshot (a `SnapshotCache` makes repeated snapshots cheap)."""
        body = cache.dump(self) if cache is not None else serial.dump(self)
        return {"v": SNAPSHOT_VERSION, **body}

    def to_json(self, cache: serial.JsonSnapshotCache) -> str:
        """`to_dict()` as compact JSON text, only what changed since the last call encoded."""
        body = cache.encode(self)  # "{...}": a cabinet has fields
        return f'{{"v":{SNAPSHOT_VERSION},{body[1:]}'

    def to_parts(self, cache: serial.JsonSnapshotCache) -> serial.SnapshotParts:
        """`to_json()` cut in parts (one per parcel, compartment...): the journal stores those."""
        return cache.encode_parts(self, head_fields=[("v", str(SNAPSHOT_VERSION))])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cabinet:
        """Rebuild from `to_dict()`'s output; raise BadSnapshot if it is not one."""
        if not isinstance(data, dict) or data.get("v") != SNAPSHOT_VERSION:
            raise BadSnapshot(f"not a version {SNAPSHOT_VERSION} cabinet snapshot")
        fields = {k: v for k, v in data.items() if k != "v"}
        cabinet = serial.load(cls, fields)
        _check_consistent(cabinet)
        return cabinet


def new_cabinet(
    cabinet_id: str, layout: Iterable[Compartment], config: Config | None = None
) -> Cabinet:
    """A cabinet with empty compartments from its layout (id, size, low-door flag each)."""
    if not CABINET_ID.fullmatch(cabinet_id):
        raise InvalidInput(f"cabinet id {cabinet_id!r} must match {CABINET_ID.pattern}")
    compartments: dict[str, Compartment] = {}
    for c in layout:
        if c.id in compartments:
            raise InvalidInput(f"compartment {c.id!r} appears twice in the layout")
        compartments[c.id] = Compartment(id=c.id, size=Size(c.size), low=c.low, sensor=c.sensor)
    if not compartments:
        raise InvalidInput("a cabinet needs at least one compartment")
    return Cabinet(cabinet_id=cabinet_id, compartments=compartments, config=config or Config())


def _check_consistent(cabinet: Cabinet) -> None:
    """Refuse a snapshot whose parcels and compartments disagree."""
    for cid, compartment in cabinet.compartments.items():
        if compartment.id != cid:
            raise BadSnapshot(f"compartments.{cid}: holds id {compartment.id!r}")
        held = compartment.parcel_id
        if held is not None and cabinet.parcels.get(held, None) is None:
            raise BadSnapshot(f"compartments.{cid}: parcel {held!r} is not among the parcels")
    for pid, held in cabinet.reservations.items():
        if held.parcel_id != pid or held.compartment not in cabinet.compartments:
            raise BadSnapshot(f"reservations.{pid}: names no compartment of this cabinet")
    for pid, parcel in cabinet.parcels.items():
        home = cabinet.compartments.get(parcel.compartment)
        if parcel.parcel_id != pid or home is None or home.parcel_id != pid:
            raise BadSnapshot(f"parcels.{pid}: not held by compartment {parcel.compartment!r}")
