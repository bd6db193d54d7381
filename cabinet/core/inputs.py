"""Everything that can happen to a cabinet, as plain frozen dataclasses: `apply`'s second argument.

Four sources: the courier at the screen, the recipient at the screen, the door driver, and the
cloud's commands (already decoded and validated by the MQTT adapter). Secrets typed at the screen
(PINs, codes, QR payloads, phones) are left out of `repr()`, so logging an input leaks nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cabinet.core.compartments import Size
from cabinet.core.errors import InvalidInput

# --- the courier at the screen --------------------------------------------------------------


@dataclass(frozen=True)
class CourierSignIn:
    """A courier typed their id and PIN."""

    courier_id: str
    pin: str = field(repr=False)


@dataclass(frozen=True)
class CourierSignOut:
    """The courier tapped "sign out"."""


@dataclass(frozen=True)
class TrackingEntered:
    """A tracking number, typed or scanned."""

    tracking_no: str


@dataclass(frozen=True)
class PhoneEntered:
    """The recipient's mobile number, as typed."""

    phone: str = field(repr=False)


@dataclass(frozen=True)
class SizeChosen:
    """The smallest size the parcel needs."""

    size: Size

    def __post_init__(self) -> None:
        try:  # the kiosk may hand over the button's text, "M"
            object.__setattr__(self, "size", Size(self.size))
        except ValueError:
            raise InvalidInput(f"no size {self.size!r}: one of S, M, L, XL") from None


@dataclass(frozen=True)
class Confirm:
    """The parcel is in and the door is shut: record it."""


@dataclass(frozen=True)
class Reopen:
    """Open the same door again (to fix how the parcel sits)."""


@dataclass(frozen=True)
class Larger:
    """The parcel did not fit: give back this door and open a larger one."""


@dataclass(frozen=True)
class Cancel:
    """Give back this door: the courier declares it empty."""


@dataclass(frozen=True)
class OpenReserved:
    """The courier confirmed the announced parcel shown (masked phone, size): open its door."""


@dataclass(frozen=True)
class RetrieveParcels:
    """Open, one after another, every door holding a parcel the cloud wants back."""


# --- the recipient at the screen ------------------------------------------------------------


@dataclass(frozen=True)
class CodeEntered:
    """A pickup code typed on the keypad."""

    code: str = field(repr=False)


@dataclass(frozen=True)
class QrScanned:
    """A payload read by the QR scanner (see `pickup` for the format)."""

    payload: str = field(repr=False)


@dataclass(frozen=True)
class PickupClosed:
    """The pickup screen ended: the person tapped Done or went home, or the screen timed out.

    `pickup` is the `DoorsOpening.pickup` it showed. Its doors still waiting in the queue are
    dropped (see `removal`): nobody may be there. A pickup screen a later code replaced is
    not the screen's any more, so closing it late drops nothing of the newer one."""

    pickup: str


@dataclass(frozen=True)
class ResendRequested:
    """A recipient asked for their code again, giving their mobile number."""

    phone: str = field(repr=False)


# --- the door driver ------------------------------------------------------------------------


@dataclass(frozen=True)
class DoorObserved:
    """A door reading (an edge from a reed switch, or a poll of the lock board)."""

    compartment: str
    open: bool


@dataclass(frozen=True)
class OccupancyObserved:
    """An occupancy sensor reading (KR-CU boards): something is in the compartment, or not."""

    compartment: str
    occupied: bool


@dataclass(frozen=True)
class UnlockFailed:
    """The driver's unlock did not release the latch after its retries."""

    compartment: str
    detail: str


@dataclass(frozen=True)
class Tick:
    """Time passed: run timers (unlock lapse, door left open, idle courier). Send every second."""


# --- the cloud's commands -------------------------------------------------------------------


@dataclass(frozen=True)
class CodeGrant:
    """One `codes.put` entry."""

    parcel_id: str
    compartment: str
    code_hash: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True)
class CodesPut:
    """Command `codes.put`: add or replace pickup codes."""

    entries: tuple[CodeGrant, ...]


@dataclass(frozen=True)
class CodesRevoke:
    """Command `codes.revoke`: these parcels' codes open nothing any more."""

    parcel_ids: tuple[str, ...]


@dataclass(frozen=True)
class CompartmentOpen:
    """Command `compartment.open`: a remote open; `actor` and `reason` are for the audit."""

    compartment: str
    reason: str
    actor: str


@dataclass(frozen=True)
class CompartmentService:
    """Command `compartment.service`: out of service, or back in (also clears a fault)."""

    compartment: str
    in_service: bool


@dataclass(frozen=True)
class CourierGrant:
    """One `couriers.put` entry (`carrier_id`: the courier company, if the cloud names it)."""

    courier_id: str
    pin_hash: str = field(repr=False)
    carrier_id: str | None = None


@dataclass(frozen=True)
class CouriersPut:
    """Command `couriers.put`: add or update couriers allowed to sign in here."""

    couriers: tuple[CourierGrant, ...]


@dataclass(frozen=True)
class RetrievalsPut:
    """Command `retrievals.put`: parcels couriers must take back."""

    parcel_ids: tuple[str, ...]


@dataclass(frozen=True)
class CompartmentsReserve:
    """Command `compartments.reserve`: hold a door of `size` for an announced parcel."""

    parcel_id: str
    size: Size
    until: datetime
    phone: str = field(repr=False)  # E.164
    tracking_no: str | None = None
    carrier_id: str | None = None


@dataclass(frozen=True)
class CompartmentsRelease:
    """Command `compartments.release`: these parcels' reservations end."""

    parcel_ids: tuple[str, ...]


Input = (
    CourierSignIn
    | CourierSignOut
    | TrackingEntered
    | PhoneEntered
    | SizeChosen
    | Confirm
    | Reopen
    | Larger
    | Cancel
    | OpenReserved
    | RetrieveParcels
    | CodeEntered
    | QrScanned
    | PickupClosed
    | ResendRequested
    | DoorObserved
    | OccupancyObserved
    | UnlockFailed
    | Tick
    | CodesPut
    | CodesRevoke
    | CompartmentOpen
    | CompartmentService
    | CouriersPut
    | RetrievalsPut
    | CompartmentsReserve
    | CompartmentsRelease
)
