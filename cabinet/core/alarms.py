"""Alarms and lock timers: a door forced, a door left open, an unlock unseen, a lock fault.

- Forced: a door seen opening while no unlock was pending (`DoorChange.FORCED`) sends
  `door.forced` once for that opening. It does not change the compartment's state: the cabinet
  cannot tell a thief from a weak latch, and faulting it could strand a parcel or a courier
  mid-deposit; a compartment whose door stands open is never offered to a deposit, and the
  manager decides (remote open, out of service).
- Left open: a door open for `left_open_after_s` sends `door.left_open` with the seconds it has
  been open, once per opening (measured from `now`, so a tick late reports the true time).
- Unlock lapse (a stuck door, or nobody pulled it): an unlock not followed by a seen opening
  within `unlock_window_s` stops being expected, so a later opening is forced; a removal falls
  back to OCCUPIED with its code still valid. Never a pickup.
- Lock fault: the driver reports no release after its retries. The compartment is FAULTED
  (keeping any parcel), `lock.fault` is sent, and the flow that wanted the door moves on.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from cabinet.core import effects as fx
from cabinet.core.compartments import CompartmentState, Door, RemovalKind, Trigger, transition
from cabinet.core.effects import Effect, Log, Show
from cabinet.core.screens import CloseDoor, DoorNotSeenOpen
from cabinet.core.state import Cabinet


def left_open(cabinet: Cabinet, now: datetime) -> list[Effect]:
    """Report each door open past `left_open_after_s`, once per opening."""
    effects: list[Effect] = []
    limit = timedelta(seconds=cabinet.config.left_open_after_s)
    for compartment in list(cabinet.compartments.values()):
        opened_at = compartment.opened_at
        if compartment.door is not Door.OPEN or opened_at is None:
            continue
        if compartment.left_open_reported or now - opened_at < limit:
            continue
        cabinet.compartments[compartment.id] = replace(compartment, left_open_reported=True)
        seconds = int((now - opened_at).total_seconds())
        effects.append(fx.door_left_open(compartment=compartment.id, seconds=seconds))
        effects.append(Show(CloseDoor(compartment.id)))
    return effects


def unlock_lapses(cabinet: Cabinet, now: datetime) -> list[Effect]:
    """Stop expecting openings whose unlock is older than `unlock_window_s`."""
    effects: list[Effect] = []
    for compartment_id in list(cabinet.compartments):
        effects += lapse_if_due(cabinet, compartment_id, now)
    return effects


def lapse_if_due(cabinet: Cabinet, compartment_id: str, now: datetime) -> list[Effect]:
    """Lapse one compartment's unlock if its window has passed (also run before a reading, so
    what a reading means never depends on how often the adapter ticks)."""
    compartment = cabinet.compartments[compartment_id]
    window = timedelta(seconds=cabinet.config.unlock_window_s)
    if compartment.unlocked_at is None or now - compartment.unlocked_at < window:
        return []
    lapsed = replace(compartment, unlocked_at=None)
    effects: list[Effect] = [Log(f"door {compartment_id} was unlocked but not seen open in time")]
    if lapsed.state is CompartmentState.OPENING:
        removal = lapsed.removal
        lapsed = transition(lapsed, Trigger.UNLOCK_LAPSED)
        if removal is not None and removal.kind in (RemovalKind.CODE, RemovalKind.QR):
            # The recipient may still be at the screen: the parcel is theirs, the code works.
            effects.append(Show(DoorNotSeenOpen(compartment_id)))
    cabinet.compartments[compartment_id] = lapsed
    return effects


def lock_fault(cabinet: Cabinet, compartment_id: str, detail: str) -> list[Effect]:
    """Fault the compartment (it keeps its parcel) and drop it from the removal queue."""
    compartment = cabinet.compartment(compartment_id)
    cabinet.compartments[compartment_id] = transition(
        compartment, Trigger.LOCK_FAULT, unlocked_at=None, removal=None
    )
    cabinet.open_queue = tuple(c for c in cabinet.open_queue if c != compartment_id)
    return [fx.lock_fault(compartment=compartment_id, detail=detail)]


def forced(compartment_id: str) -> list[Effect]:
    """A door opened with no unlock pending (called once per such opening)."""
    return [fx.door_forced(compartment=compartment_id)]
