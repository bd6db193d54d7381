"""How long a typed code may keep status polls off a shared bus: a pure policy, times passed in.

The kiosk asks for a hold at a code's first digit so the unlock it earns never waits behind a
poll. A hold that anyone can renew would blind the cabinet: `POST /api/keypad-active` every 3 s
once kept polls off for good, and a forced door went unseen for 27 s. So:

- one hold (one code entry: from the first request until `release` or its lapse) lasts at most
  MAX_HOLD_S from its start, however often it is renewed;
- after a hold ends, the next starts no sooner than GAP_S later, so polls run in between
  (GAP_S is several poll intervals: BusTiming.poll_interval_s is 0.5 s);
- at most BUDGET_S of any WINDOW_S are held.

A door forced at any moment is therefore seen within MAX_HOLD_S plus one poll interval (and the
poll's own time on the bus). A person types an 8-digit code in well under MAX_HOLD_S.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_HOLD_S = 10.0
GAP_S = 2.0
BUDGET_S = 20.0
WINDOW_S = 60.0


@dataclass
class _Hold:
    start: float
    until: float
    cap: float  # the latest `until` this hold may reach


@dataclass
class PollHold:
    """Holds of status polls, capped per hold and in total; `now` is monotonic seconds."""

    max_hold_s: float = MAX_HOLD_S
    gap_s: float = GAP_S
    budget_s: float = BUDGET_S
    window_s: float = WINDOW_S
    _holds: list[_Hold] = field(default_factory=list)  # oldest first; the last may be live

    def hold(self, now: float, seconds: float) -> tuple[float, float]:
        """Hold polls for `seconds` from `now`, within the caps; the (start, end) granted."""
        current = self._holds[-1] if self._holds else None
        if current is not None and now < current.until:  # a renewal of the live hold
            current.until = min(current.cap, max(current.until, now + seconds))
            return current.start, current.until
        start = now if current is None else max(now, current.until + self.gap_s)
        spent = sum(
            max(0.0, min(h.until, start) - max(h.start, start - self.window_s)) for h in self._holds
        )
        # Any window of WINDOW_S that ends inside the new hold sees at most `spent` of the past,
        # so a hold of at most `budget_s - spent` keeps every window within the budget.
        allowed = max(0.0, min(self.max_hold_s, self.budget_s - spent))
        length = max(0.0, min(seconds, allowed))
        self._holds.append(_Hold(start, start + length, start + allowed))
        horizon = now - self.window_s - self.max_hold_s
        self._holds = [h for h in self._holds if h.until >= horizon]
        return start, start + length

    def release(self, now: float) -> None:
        """End the live hold now (the code was checked), or drop one not yet begun."""
        if self._holds and now < self._holds[-1].until:
            live = self._holds[-1]
            live.until = live.cap = max(live.start, now)

    def held(self, now: float) -> bool:
        """Whether polls are held at `now`."""
        last = self._holds[-1] if self._holds else None
        return last is not None and last.start <= now < last.until
