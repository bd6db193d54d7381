"""Clock steps: found against a monotonic clock; own timers move, the cloud's deadlines do not."""

from __future__ import annotations

from datetime import timedelta

from cabinet.core.clock_steps import STEP_TOLERANCE, clock_step, shift_timers
from cabinet.core.inputs import CourierSignOut
from cabinet.core.screens import DoorNotSeenOpen
from tests.cabinet.core.harness import T0, Harness, shown


def test_a_step_is_wall_time_minus_monotonic_time_beyond_the_tolerance() -> None:
    assert clock_step(None, T0, 5.0) is None  # the first read has nothing to compare with
    last = (T0, 100.0)
    # One second on both clocks, and NTP slewing half a millisecond: no step.
    assert clock_step(last, T0 + timedelta(seconds=1.0005), 101.0) is None
    # Ten minutes on the wall in one real second: a step of 599 s forward.
    assert clock_step(last, T0 + timedelta(seconds=600), 101.0) == timedelta(seconds=599)
    # An hour back while two seconds pass.
    assert clock_step(last, T0 - timedelta(hours=1), 102.0) == timedelta(seconds=-3602)
    # Just at the tolerance is not a step; just past it is.
    assert clock_step(last, T0 + STEP_TOLERANCE, 100.0) is None
    over = STEP_TOLERANCE + timedelta(milliseconds=1)
    assert clock_step(last, T0 + over, 100.0) == over


def test_shifted_timers_keep_their_durations_and_the_cloud_deadlines_stay() -> None:
    h = Harness()
    h.add_courier()
    h.sign_in()
    parcel_id = h.deposit("SF1001")
    step = timedelta(minutes=10)
    signed_in = shift_timers(h.cab, step).session
    assert signed_in is not None and h.cab.session is not None
    assert signed_in.last_activity_at == h.cab.session.last_activity_at + step  # idle sign-out
    assert signed_in.signed_in_at == h.cab.session.signed_in_at  # a record, not a timer
    h.do(CourierSignOut())
    h.grant(parcel_id, "12345678")
    h.enter("99999999")  # a wrong code: the keypad guard holds a failure time
    compartment = h.cab.parcels[parcel_id].compartment
    h.enter("12345678")  # the right one: the door is unlocked, not yet seen open
    before = h.cab

    after = shift_timers(before, step)

    assert (
        after.compartments[compartment].unlocked_at
        == before.compartments[compartment].unlocked_at + step
    )
    assert after.keypad.failures_at == tuple(t + step for t in before.keypad.failures_at)
    # What the cloud set, and what records a moment, do not move.
    assert after.parcels[parcel_id].expires_at == before.parcels[parcel_id].expires_at
    assert after.parcels[parcel_id].deposited_at == before.parcels[parcel_id].deposited_at
    # The original is untouched (the service swaps in the shifted copy).
    assert before.compartments[compartment].unlocked_at == h.now


def test_after_a_shift_the_unlock_lapses_on_real_time_only() -> None:
    h = Harness()
    h.add_courier()
    h.sign_in()
    parcel_id = h.deposit("SF1002")
    h.do(CourierSignOut())
    h.grant(parcel_id, "12345678")
    compartment = h.cab.parcels[parcel_id].compartment
    h.enter("12345678")
    window = h.cab.config.unlock_window_s
    h.cab = shift_timers(h.cab, timedelta(minutes=10))  # what the service does on the step
    assert shown(h.tick(600 + 1)) == []  # the wall moved 10 min + 1 s; 1 s really passed
    assert h.cab.compartments[compartment].unlocked_at is not None
    assert DoorNotSeenOpen(compartment) in shown(h.tick(window))
