"""What the core asks the adapters to do, in order: unlock a door, send an event, show, log.

Event data is JSON-ready (str, int, bool) and carries exactly the fields docs/mqtt.md#events
lists for its type, so the MQTT adapter wraps `Emit(type, data)` in an envelope (v, id, cab,
seq, ts) 1:1.
The builders below are the only way the core makes an `Emit`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cabinet.core.screens import Screen


@dataclass(frozen=True)
class Unlock:
    """Release the latch of `compartment` (the driver retries, then reports `UnlockFailed`)."""

    compartment: str


@dataclass(frozen=True)
class Emit:
    """Send event `type` with `data` to the cloud (journal it first, with the next seq)."""

    type: str
    data: dict[str, Any] = field(repr=False)  # may hold a phone


@dataclass(frozen=True)
class Show:
    """Show `screen` on the kiosk."""

    screen: Screen


@dataclass(frozen=True)
class Log:
    """Log `message` as a warning (it never holds a phone, code or PIN)."""

    message: str


Effect = Unlock | Emit | Show | Log

# The data fields per event type (docs/mqtt.md#events); the builders produce exactly these.
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "parcel.deposited": ("parcel_id", "compartment", "size", "tracking_no", "phone", "courier_id"),
    "parcel.picked_up": ("compartment", "parcel_id", "method"),
    "parcel.retrieved": ("compartment", "parcel_id", "courier_id", "reason"),
    "door.left_open": ("compartment", "seconds"),
    "door.forced": ("compartment",),
    "lock.fault": ("compartment", "detail"),
    "keypad.lockout": ("seconds",),
    "compartment.service": ("compartment", "in_service"),
    "notice.resend_requested": ("phone",),
    "door.occupancy_mismatch": ("compartment", "expected", "sensed"),
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
MAX_DETAIL_CHARS = 500  # the contract's limit on free text


def parcel_deposited(
    *, parcel_id: str, compartment: str, size: str, tracking_no: str, phone: str, courier_id: str
) -> Emit:
    """Event `parcel.deposited`."""
    return Emit(
        "parcel.deposited",
        {
            "parcel_id": parcel_id,
            "compartment": compartment,
            "size": str(size),
            "tracking_no": tracking_no,
            "phone": phone,
            "courier_id": courier_id,
        },
    )


def parcel_picked_up(*, compartment: str, parcel_id: str, method: str) -> Emit:
    """Event `parcel.picked_up`; method is code, qr or remote."""
    assert method in ("code", "qr", "remote"), method
    data = {"compartment": compartment, "parcel_id": parcel_id, "method": str(method)}
    return Emit("parcel.picked_up", data)


def parcel_retrieved(*, compartment: str, parcel_id: str, courier_id: str, reason: str) -> Emit:
    """Event `parcel.retrieved`; reason is expired or courier_cancel."""
    assert reason in ("expired", "courier_cancel"), reason
    data = {
        "compartment": compartment,
        "parcel_id": parcel_id,
        "courier_id": courier_id,
        "reason": reason,
    }
    return Emit("parcel.retrieved", data)


def door_left_open(*, compartment: str, seconds: int) -> Emit:
    """Event `door.left_open`."""
    return Emit("door.left_open", {"compartment": compartment, "seconds": max(1, int(seconds))})


def door_occupancy_mismatch(*, compartment: str, expected: str, sensed: str) -> Emit:
    """Event `door.occupancy_mismatch`: a shut door's sensor disagrees with the record."""
    return Emit(
        "door.occupancy_mismatch",
        {"compartment": compartment, "expected": expected, "sensed": sensed},
    )


def door_forced(*, compartment: str) -> Emit:
    """Event `door.forced`."""
    return Emit("door.forced", {"compartment": compartment})


def lock_fault(*, compartment: str, detail: str) -> Emit:
    """Event `lock.fault`; the driver's detail made one printable line the contract accepts."""
    line = _CONTROL.sub(" ", detail).strip()[:MAX_DETAIL_CHARS].strip() or "unlock failed"
    return Emit("lock.fault", {"compartment": compartment, "detail": line})


def keypad_lockout(*, seconds: int) -> Emit:
    """Event `keypad.lockout`."""
    return Emit("keypad.lockout", {"seconds": max(1, int(seconds))})


def compartment_service(*, compartment: str, in_service: bool) -> Emit:
    """Event `compartment.service`."""
    return Emit("compartment.service", {"compartment": compartment, "in_service": in_service})


def notice_resend_requested(*, phone: str) -> Emit:
    """Event `notice.resend_requested`."""
    return Emit("notice.resend_requested", {"phone": phone})
