"""Recipients at the cabinet: a typed code or a scanned QR opens every live parcel under it.

The cabinet holds only code hashes (`codes.put`: parcel_id, compartment, code_hash, expires_at)
and checks codes itself, offline if need be: HMAC-SHA256 under the cabinet's code key
(`protocol.hashing.code_hash`), compared in constant time with every held parcel's hash. One code
may cover several parcels (the cloud gives a recipient one code per cabinet); every live one
opens, one door after another, in door order (see `removal`). A code whose deadline has passed
shows "expired" and opens nothing.

QR payload, as the cloud puts it in the notice's QR:  `LKR1:<cab>:<code>`
    LKR1   the format tag and its version
    <cab>  the cabinet id (`[A-Za-z0-9_-]{1,64}`): a QR for another cabinet is refused as such,
           before any code is compared, and is not counted as a guess
    <code> the pickup code, exactly as typed on the keypad
The QR carries the code itself because the notice already does (SMS text); it is checked and
counted against the keypad lockout exactly like a typed code, under method `qr`.

Remote open (`compartment.open`): a compartment that holds a parcel (occupied, or faulted) opens
at once, outside the queue, and once its door is seen open then closed the parcel is
`picked_up` with method `remote`: a manager (or WeChat's "open", sent by the cloud) opens for
the recipient, and that is a pickup on their behalf. An empty compartment (free, faulted, out of
service) is simply unlocked, for a technician; nothing is emitted. A door reserved for a deposit
or already opening is refused.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import replace
from datetime import datetime, timedelta
from math import ceil
from typing import TYPE_CHECKING

from cabinet.core import effects as fx
from cabinet.core.compartments import (
    CompartmentState,
    Removal,
    RemovalKind,
    Trigger,
    natural_key,
    transition,
)
from cabinet.core.effects import Effect, Log, Show, Unlock
from cabinet.core.errors import IllegalTransition
from cabinet.core.inputs import (
    CodeEntered,
    CodesPut,
    CodesRevoke,
    CompartmentOpen,
    QrScanned,
    ResendRequested,
)
from cabinet.core.lockout import attempts_left, locked_for_s, record_failure, record_success
from cabinet.core.phones import parse_phone
from cabinet.core.removal import holds_queue, queue
from cabinet.core.screens import (
    CodeExpired,
    DoorsOpening,
    KeypadLocked,
    MalformedCode,
    PhoneProblem,
    PhoneRejected,
    ResendAccepted,
    ResendTooSoon,
    UnreadableQr,
    WrongCabinet,
    WrongCode,
)
from cabinet.core.state import Cabinet
from protocol.hashing import code_hash

if TYPE_CHECKING:
    from cabinet.core.cabinet import Context

QR_TAG = "LKR1"
_QR = re.compile(r"LKR1:([A-Za-z0-9_-]{1,64}):([^:]{1,64})")
_SEPARATORS = re.compile(r"[\s-]+")  # "1234 5678" and "1234-5678" are the same code


def qr_payload(cabinet_id: str, code: str) -> str:
    """The QR text for a code (what the cloud encodes; here for tests and the demo)."""
    return f"{QR_TAG}:{cabinet_id}:{code}"


def parse_qr(payload: str) -> tuple[str, str] | None:
    """Return (cabinet id, code) from a pickup QR, or None if it is not one."""
    match = _QR.fullmatch(payload.strip())
    return (match[1], match[2]) if match else None


# --- commands -------------------------------------------------------------------------------


def codes_put(cabinet: Cabinet, inp: CodesPut) -> list[Effect]:
    """Attach (or replace) each parcel's code hash and deadline.

    An entry for a parcel the cabinet does not hold is skipped and logged (it was taken out
    while the command travelled); the others still apply. If the entry names another
    compartment than the one the cabinet saw the parcel go into, the cabinet's record wins.
    """
    effects: list[Effect] = []
    for entry in inp.entries:
        parcel = cabinet.parcels.get(entry.parcel_id)
        if parcel is None:
            effects.append(Log(f"codes.put: parcel {entry.parcel_id} is not in this cabinet"))
            continue
        if parcel.compartment != entry.compartment:
            effects.append(
                Log(
                    f"codes.put: parcel {entry.parcel_id} is in {parcel.compartment}, "
                    f"not {entry.compartment}"
                )
            )
        cabinet.parcels[entry.parcel_id] = replace(
            parcel, code_hash=entry.code_hash, expires_at=entry.expires_at
        )
    return effects


def codes_revoke(cabinet: Cabinet, inp: CodesRevoke) -> list[Effect]:
    """Drop these parcels' codes (the parcels stay; their deadline is kept for the reason)."""
    for parcel_id in inp.parcel_ids:
        parcel = cabinet.parcels.get(parcel_id)
        if parcel is not None:
            cabinet.parcels[parcel_id] = replace(parcel, code_hash=None)
    return []


# --- the keypad and the scanner -------------------------------------------------------------


def _no_courier(cabinet: Cabinet, action: str) -> None:
    if cabinet.session is not None:
        raise IllegalTransition(
            f"{action}: the screen belongs to a signed-in courier", state="courier", action=action
        )


def code_entered(cabinet: Cabinet, inp: CodeEntered, now: datetime, ctx: Context) -> list[Effect]:
    """A typed code."""
    _no_courier(cabinet, "CodeEntered")
    return _check_code(cabinet, inp.code, RemovalKind.CODE, now, ctx)


def qr_scanned(cabinet: Cabinet, inp: QrScanned, now: datetime, ctx: Context) -> list[Effect]:
    """A scanned QR: `LKR1:<cab>:<code>`."""
    _no_courier(cabinet, "QrScanned")
    parsed = parse_qr(inp.payload)
    if parsed is None:
        return [Show(UnreadableQr())]
    cabinet_id, code = parsed
    if cabinet_id != cabinet.cabinet_id:
        return [Show(WrongCabinet())]
    return _check_code(cabinet, code, RemovalKind.QR, now, ctx)


def _check_code(
    cabinet: Cabinet, typed: str, method: RemovalKind, now: datetime, ctx: Context
) -> list[Effect]:
    policy = cabinet.config.keypad
    if seconds := locked_for_s(cabinet.keypad, policy, now):
        return [Show(KeypadLocked(seconds))]  # nothing is compared while locked
    code = _SEPARATORS.sub("", typed)
    digits = cabinet.config.code_digits
    if len(code) != digits or not (code.isascii() and code.isdigit()):
        return [Show(MalformedCode(digits))]  # opens nothing, so it is not a guess
    wanted = code_hash(ctx.code_key, code).encode()
    matches = [
        p
        for p in cabinet.parcels.values()
        if p.code_hash is not None and hmac.compare_digest(p.code_hash.encode(), wanted)
    ]
    live = [p for p in matches if p.expires_at is None or p.expires_at > now]
    if not live:
        return _failure(cabinet, now, expired=bool(matches))
    cabinet.keypad = record_success(cabinet.keypad)
    # Another person's door holds the queue, or waits in it: theirs opens after, and the
    # screen says so at once rather than showing "open" over a shut door.
    after_others = bool(cabinet.open_queue) or holds_queue(cabinet, now)
    queued = False
    opening: list[str] = []
    unavailable: list[str] = []
    for parcel in sorted(live, key=lambda p: natural_key(p.compartment)):
        compartment = cabinet.compartments[parcel.compartment]
        if compartment.state is CompartmentState.OCCUPIED:
            queue(cabinet, compartment.id, Removal(method, after_others=after_others))
            opening.append(compartment.id)
            queued = True
        elif compartment.state is CompartmentState.OPENING:
            opening.append(compartment.id)  # already on its way (the code typed twice)
        else:
            unavailable.append(compartment.id)  # faulted: the operator has the alarm
    pickup = ""
    if opening:  # the pickup screen now shows these doors
        cabinet.pickups_shown += 1
        cabinet.screen_pickup = tuple(opening)
        pickup = str(cabinet.pickups_shown)
    screen = DoorsOpening(tuple(opening), tuple(unavailable), after_others and queued, pickup)
    return [Show(screen)]


def _failure(cabinet: Cabinet, now: datetime, *, expired: bool) -> list[Effect]:
    policy = cabinet.config.keypad
    cabinet.keypad, lockout = record_failure(cabinet.keypad, policy, now)
    effects: list[Effect] = [Show(CodeExpired())] if expired else []
    if lockout is None:
        if not expired:
            effects.append(Show(WrongCode(attempts_left(cabinet.keypad, policy, now))))
        return effects
    effects.append(Show(KeypadLocked(lockout.seconds)))  # says "wrong" and "wait" at once
    if lockout.by_window:  # a run at the screen is a person fumbling; a full window is not
        effects.append(fx.keypad_lockout(seconds=lockout.seconds))
    return effects


def resend_requested(cabinet: Cabinet, inp: ResendRequested, now: datetime) -> list[Effect]:
    """Ask the cloud to send the code again, if a parcel here waits for that mobile.

    The screen shows the same for any valid number, so it tells nobody who has a parcel; and
    a phone gets at most one request per `resend_interval_s`, so the screen cannot spam it.
    A second request within the interval says how long to wait, for any number alike (the
    wait is kept per number asked, parcel or not), so it too tells nobody who has a parcel.
    """
    _no_courier(cabinet, "ResendRequested")
    phone = parse_phone(inp.phone, cabinet.config.phone_region)
    if isinstance(phone, PhoneProblem):
        return [Show(PhoneRejected(phone))]
    interval = timedelta(seconds=cabinet.config.resend_interval_s)
    # Forget what no longer counts, so the table holds at most one interval's requests.
    cabinet.resend_asked = {p: at for p, at in cabinet.resend_asked.items() if now - at < interval}
    asked = cabinet.resend_asked.get(phone)
    if asked is not None:
        return [Show(ResendTooSoon(ceil((asked + interval - now).total_seconds())))]
    cabinet.resend_asked[phone] = now
    theirs = [p for p in cabinet.parcels.values() if p.phone == phone]
    recent = any(
        p.resend_requested_at is not None and now - p.resend_requested_at < interval for p in theirs
    )
    effects: list[Effect] = []
    if theirs and not recent:
        for parcel in theirs:
            cabinet.parcels[parcel.parcel_id] = replace(parcel, resend_requested_at=now)
        effects.append(fx.notice_resend_requested(phone=phone))
    return [*effects, Show(ResendAccepted())]


# --- remote open ----------------------------------------------------------------------------


def remote_open(cabinet: Cabinet, inp: CompartmentOpen, now: datetime) -> list[Effect]:
    """Open a door now for a manager (see the module docstring for what it means)."""
    compartment = cabinet.compartment(inp.compartment)
    if compartment.state in (CompartmentState.RESERVED, CompartmentState.OPENING):
        raise IllegalTransition(
            f"compartment.open: {compartment.id} is {compartment.state.value}",
            state=compartment.state.value,
            action="compartment.open",
        )
    if compartment.parcel_id is not None:
        compartment = transition(
            compartment, Trigger.OPEN_FOR_REMOVAL, removal=Removal(RemovalKind.REMOTE)
        )
    cabinet.compartments[compartment.id] = replace(compartment, unlocked_at=now)
    return [Unlock(compartment.id)]
