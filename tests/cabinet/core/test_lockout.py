"""Keypad lockout: the guessing bound, checked against a perfect attacker, and mistypes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cabinet.core.compartments import Size
from cabinet.core.effects import Show
from cabinet.core.inputs import CourierSignOut
from cabinet.core.lockout import (
    KEYPAD_POLICY,
    Guard,
    LockoutPolicy,
    Window,
    chance_per_day,
    locked_for_s,
    max_failures_per_day,
    record_failure,
)
from cabinet.core.screens import DoorsOpening, KeypadLocked, WrongCode
from tests.cabinet.core.harness import Harness, emitted, shown, unlocks

DAY_S = 24 * 3600


def test_the_docstring_arithmetic() -> None:
    assert max_failures_per_day(KEYPAD_POLICY) == 50
    # 51 guesses (50 failures, then one that opens) at 100 live codes in 10^8.
    assert chance_per_day(KEYPAD_POLICY, live_codes=100, code_digits=8) == pytest.approx(5.1e-5)
    assert chance_per_day(KEYPAD_POLICY) <= 1e-4
    # The hour window alone would not do: 240 a day.
    assert max_failures_per_day(LockoutPolicy(windows=(Window(3600, 10),))) == 240
    assert chance_per_day(LockoutPolicy(windows=())) == 1.0


def attack(h: Harness, seconds: float) -> list[float]:
    """A perfect attacker: a wrong code whenever the keypad takes one, never a wasted second.

    Return the time of every code the cabinet actually compared, in seconds from the start.
    """
    start = h.now
    checked: list[float] = []
    guess = 10_000_000
    while (h.now - start).total_seconds() < seconds:
        left = locked_for_s(h.cab.keypad, h.cab.config.keypad, h.now)
        if left:
            h.advance(left)  # wait out the lockout to the second
            continue
        guess += 1
        screens = shown(h.enter(str(guess)))
        assert not any(isinstance(s, DoorsOpening) for s in screens)
        checked.append((h.now - start).total_seconds())
        h.advance(0.5)  # typing eight digits takes at least this
    return checked


def test_a_perfect_attacker_gets_at_most_100_guesses_in_any_24_hours() -> None:
    h = Harness()
    checked = attack(h, 3 * DAY_S)
    most = max(sum(1 for t in checked if start <= t < start + DAY_S) for start in checked)
    assert most <= max_failures_per_day(KEYPAD_POLICY) == 50
    chance = (most + 1) * 100 / 10**8
    assert chance <= 1e-4, f"{most} guesses a day: chance {chance}"
    # The first day: 10 in the first hour, then 10 an hour as the hour window frees up.
    first_day = [t for t in checked if t < DAY_S]
    assert len(first_day) == 50
    assert sum(1 for t in first_day if t < 3600) == 10


def test_a_full_window_emits_keypad_lockout_once() -> None:
    h = Harness()
    events = []
    for n in range(10):
        h.advance(40)  # slow enough to dodge the session breather... but not the hour window
        events += emitted(h.enter(f"1000000{n}"), "keypad.lockout")
    assert len(events) == 1
    assert 3200 <= events[0]["seconds"] <= 3600
    assert isinstance(shown(h.enter("12345678"))[0], KeypadLocked)


def test_a_few_mistakes_lock_nobody_out_for_long() -> None:
    h = Harness()
    h.sign_in()
    (parcel_id,) = [h.deposit("SF1", Size.S)]
    h.do(CourierSignOut())
    h.grant(parcel_id, "24682468")
    # Three slips in a row: a 30 s breather, no alarm.
    assert shown(h.enter("24682467")) == [WrongCode(attempts_left=2)]
    assert shown(h.enter("24682466")) == [WrongCode(attempts_left=1)]
    effects = h.enter("24682465")
    assert shown(effects) == [KeypadLocked(30)]
    assert emitted(effects) == []
    assert shown(h.enter("24682468")) == [KeypadLocked(30)]
    h.advance(30)
    assert unlocks(h.enter("24682468")) == ["A01"]
    # Five more slips spread over the day do not lock anything either.
    for n in range(5):
        h.advance(3 * 3600)
        screens = shown(h.enter(f"1111111{n}"))
        assert len(screens) == 1 and isinstance(screens[0], WrongCode)


def test_wrong_codes_count_even_without_any_parcel() -> None:
    h = Harness()
    for n in range(3):
        h.enter(f"9999999{n}")
    assert locked_for_s(h.cab.keypad, KEYPAD_POLICY, h.now) == 30


def test_a_clock_stepping_back_does_not_reopen_the_window() -> None:
    policy = LockoutPolicy(session_max_failures=100, windows=(Window(3600, 3),))
    guard = Guard()
    now = Harness().now
    for _ in range(3):
        guard, _lock = record_failure(guard, policy, now)
    assert locked_for_s(guard, policy, now) == 3600
    assert locked_for_s(guard, policy, now - timedelta(hours=5)) > 0


def test_keypad_locked_screen_is_a_typed_result() -> None:
    h = Harness()
    for n in range(3):
        effects = h.enter(f"1234567{n}")
    assert [e for e in effects if isinstance(e, Show)][-1].screen == KeypadLocked(30)
