"""What the kiosk shows after an input: one typed outcome per message, never a string.

The kiosk maps each class to its text (in its own language files); the fields are the
parameters. Phones appear only masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from cabinet.core.compartments import Size

# --- courier sign-in ------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    """The courier is in; `retrievals_due` parcels wait to be taken back."""

    courier_id: str
    retrievals_due: int


@dataclass(frozen=True)
class UnknownCourier:
    """No courier with that id (compared case-insensitively) is registered at this cabinet."""

    courier_id: str


@dataclass(frozen=True)
class WrongPin:
    """Wrong PIN; `attempts_left` before a lockout."""

    attempts_left: int


@dataclass(frozen=True)
class CourierLocked:
    """Too many wrong PINs for this courier: try again in `seconds_left`."""

    seconds_left: int


@dataclass(frozen=True)
class SignedOut:
    """The session ended (`idle`: by the idle timer) after `deposited` parcels."""

    courier_id: str
    deposited: int
    idle: bool = False


# --- deposit --------------------------------------------------------------------------------


class TrackingProblem(StrEnum):
    """Why a tracking number was refused."""

    EMPTY = "empty"
    TOO_LONG = "too_long"
    BAD_CHARACTERS = "bad_characters"
    ALREADY_IN_CABINET = "already_in_cabinet"


class PhoneProblem(StrEnum):
    """Why a mobile number was refused."""

    EMPTY = "empty"
    INVALID = "invalid"  # not a number phonenumbers accepts for the region
    NOT_MOBILE = "not_mobile"  # a landline: it cannot get the SMS


@dataclass(frozen=True)
class TrackingAccepted:
    """Tracking number taken (normalised); ask for the mobile."""

    tracking_no: str


@dataclass(frozen=True)
class TrackingRejected:
    """Tracking number refused."""

    problem: TrackingProblem


class ReservationProblem(StrEnum):
    """Why an announced parcel's reserved door is not opened for this courier."""

    OTHER_CARRIER = "other_carrier"  # the shipment's carrier is not the courier's
    LAPSED = "lapsed"  # the reservation ended (released, or its time ran out) meanwhile


@dataclass(frozen=True)
class ReservationFound:
    """The tracking number is an announced parcel with a door held for it: confirm, then open.

    The recipient's phone comes from the announcement, so the courier types none."""

    tracking_no: str
    phone_masked: str
    size: Size


@dataclass(frozen=True)
class ReservationRefused:
    """The announced parcel's door is not opened (`problem` says why); nothing was taken."""

    tracking_no: str
    problem: ReservationProblem


@dataclass(frozen=True)
class PhoneAccepted:
    """Mobile taken; ask for the size."""

    phone_masked: str
    free_by_size: dict[Size, int]


@dataclass(frozen=True)
class PhoneRejected:
    """Mobile refused."""

    problem: PhoneProblem


@dataclass(frozen=True)
class NoFreeDoor:
    """No usable compartment of `size` or larger."""

    size: Size


@dataclass(frozen=True)
class NoLargerDoor:
    """No usable compartment larger than `compartment`: keep it, or cancel."""

    compartment: str


@dataclass(frozen=True)
class DepositDoorOpening:
    """Door `compartment` is opening: put the parcel in and shut it."""

    compartment: str
    size: Size


@dataclass(frozen=True)
class DoorMoved:
    """Door `from_compartment` would not open; use `to_compartment` instead."""

    from_compartment: str
    to_compartment: str


@dataclass(frozen=True)
class DepositDoorClosed:
    """The door is shut: confirm, reopen, larger, or cancel."""

    compartment: str


@dataclass(frozen=True)
class DepositEmpty:
    """The door is shut but its sensor sees nothing inside: put the parcel in, or cancel."""

    compartment: str


@dataclass(frozen=True)
class ParcelStillInside:
    """The door was opened and shut, but the parcel is still inside: it stays, code still good."""

    compartment: str


@dataclass(frozen=True)
class DoorFaulted:
    """Door `compartment` would not open again; the operator is told."""

    compartment: str


@dataclass(frozen=True)
class Deposited:
    """Parcel recorded in `compartment`."""

    compartment: str
    parcel_id: str
    tracking_no: str


@dataclass(frozen=True)
class DepositCancelled:
    """The door was given back."""

    compartment: str


# --- retrieval ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievalOpening:
    """These doors open one after another; `unavailable` ones are faulted (operator told)."""

    compartments: tuple[str, ...]
    unavailable: tuple[str, ...] = ()


@dataclass(frozen=True)
class NothingToRetrieve:
    """No parcel waits to be taken back."""


@dataclass(frozen=True)
class ParcelRetrievedShown:
    """Door `compartment` was opened and shut: the parcel is back with the courier."""

    compartment: str


# --- pickup ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DoorsOpening:
    """These doors open one after another; `unavailable` ones are faulted (operator told).

    `after_others`: another person's door is opening first, so theirs opens next, in a few
    seconds (`DoorNowOpening` says when). `pickup` names this pickup screen for `PickupClosed`;
    it is a handle, not something shown, so it takes no part in comparing screens."""

    compartments: tuple[str, ...]
    unavailable: tuple[str, ...] = ()
    after_others: bool = False
    pickup: str = field(default="", compare=False)


@dataclass(frozen=True)
class DoorNowOpening:
    """A door that waited behind another person's is being unlocked now."""

    compartment: str


@dataclass(frozen=True)
class DoorNotSeenOpen:
    """Door `compartment` was unlocked but never seen open: the parcel is still the recipient's,
    and their code opens it again."""

    compartment: str


@dataclass(frozen=True)
class WrongCode:
    """The code opens nothing; `attempts_left` before a lockout."""

    attempts_left: int


@dataclass(frozen=True)
class CodeExpired:
    """The code was right but its pickup window has passed: the courier will take it back."""


@dataclass(frozen=True)
class MalformedCode:
    """Not a code at all: codes are `digits` digits."""

    digits: int


@dataclass(frozen=True)
class UnreadableQr:
    """The scanned QR is not a pickup QR."""


@dataclass(frozen=True)
class WrongCabinet:
    """The QR is for another cabinet."""


@dataclass(frozen=True)
class KeypadLocked:
    """Too many wrong codes: the keypad takes codes again in `seconds_left`."""

    seconds_left: int


@dataclass(frozen=True)
class ResendAccepted:
    """Shown for any valid mobile, parcel or not: the screen reveals nothing about who has one."""


@dataclass(frozen=True)
class ResendTooSoon:
    """That mobile asked within `resend_interval_s` (any number alike): wait `seconds_left`."""

    seconds_left: int


@dataclass(frozen=True)
class ParcelTaken:
    """Door `compartment` was opened and shut: thank you."""

    compartment: str


@dataclass(frozen=True)
class CloseDoor:
    """Door `compartment` has been open too long: please shut it."""

    compartment: str


Screen = (
    SignedIn
    | UnknownCourier
    | WrongPin
    | CourierLocked
    | SignedOut
    | TrackingAccepted
    | TrackingRejected
    | ReservationFound
    | ReservationRefused
    | PhoneAccepted
    | PhoneRejected
    | NoFreeDoor
    | NoLargerDoor
    | DepositDoorOpening
    | DoorMoved
    | DepositDoorClosed
    | DepositEmpty
    | ParcelStillInside
    | DoorFaulted
    | Deposited
    | DepositCancelled
    | RetrievalOpening
    | NothingToRetrieve
    | ParcelRetrievedShown
    | DoorsOpening
    | DoorNowOpening
    | DoorNotSeenOpen
    | WrongCode
    | CodeExpired
    | MalformedCode
    | UnreadableQr
    | WrongCabinet
    | KeypadLocked
    | ResendAccepted
    | ResendTooSoon
    | ParcelTaken
    | CloseDoor
)
