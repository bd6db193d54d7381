"""How long a typed code may keep status polls off a shared bus: a pure policy, times passed in.

The kiosk asks for a hold at a code's first digit so the unlock it earns never waits behind a
poll. A hold that anyone can renew would blind the cabinet: `POST /api/keypad-active` every 3 s
once kept polls off for good, and a forced door went unseen for 27 s. So two caps:

- per entry: one hold (a code entry: from its first request until `release` or its lapse) ends
  at most MAX_HOLD_S after it began, however often it is renewed;
- in total: however holds follow one another (renewed, released and taken again at once), no
  board goes unpolled for MAX_UNPOLLED_S: once its last poll is that old, it is polled through
  any hold.

So a door forced at any moment is seen within MAX_UNPOLLED_S plus one poll interval (and the
poll's own time on the bus). A person types an 8-digit code in well under MAX_HOLD_S, and a
released hold costs nothing: polls go on between codes as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_HOLD_S = 10.0
MAX_UNPOLLED_S = 10.0


@dataclass
class PollHold:
    """The current hold of status polls; `now` is monotonic seconds."""

    max_hold_s: float = MAX_HOLD_S
    max_unpolled_s: float = MAX_UNPOLLED_S
    _start: float = -math.inf
    _until: float = -math.inf

    def hold(self, now: float, seconds: float) -> float:
        """Hold polls for `seconds` from `now` within the entry's cap; when the hold ends."""
        if now < self._until:  # a renewal: the entry keeps its start
            self._until = min(self._start + self.max_hold_s, max(self._until, now + seconds))
        else:
            self._start, self._until = now, now + min(seconds, self.max_hold_s)
        return self._until

    def release(self, now: float) -> None:
        """End the hold now (the code was checked)."""
        self._until = min(self._until, now)

    def held(self, now: float, last_polled: float | None) -> bool:
        """Whether a board last polled at `last_polled` (None: never) is to be skipped now."""
        if not now < self._until or last_polled is None:
            return False
        return now - last_polled < self.max_unpolled_s
