"""Per-door and per-board health: what wears out, counted so a technician comes before it jams.

Per door: lock pulses, failed unlocks, pulse-to-open times and sensor flaps; per RS485 board:
requests and bus errors. The counters live in the journal (`Journal.load_health` at start, the
changed rows written in the transaction of the next step the service journals), so they survive a
restart. A pulse is counted in the very commit that journals its unlock, with the boards'
counters brought up to date, so a kill -9 just after a pulse does not lose it. The service
sends them as a `cabinet.health` event with each birth and every
`HEALTH_EVERY` (docs/mqtt.md).

- A **pulse-to-open time** is from the moment the service drives an unlock to the moment the
  driver reports that door open. A door not seen open within `OPEN_WAIT_S` of its pulse (the
  recipient walked away, the lock jammed) is no sample. The last `LONG` samples are kept: the
  median of the last `RECENT` against the median of all of them is what the cloud watches for a
  lock going stiff (`cloud.core.health`).
- A **flap** is a door sensor that reports open and shut again within `FLAP_S` with no pulse
  before it, or an occupancy sensor that flips back within `FLAP_S`: a loose reed switch, a
  dirty light barrier. People do not take a parcel out in under two seconds.
- **Bus errors** come from the driver's per-board counters (`cabinet.metrics.BUS_ERROR_KINDS`),
  which start from zero with the daemon: the ledger adds what they grew by since it last looked,
  so the journal's totals keep rising across restarts.

Times come from an injected monotonic clock (`ticks`), so tests drive them without sleeping.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

RECENT = 10  # the last opens whose median is "now"
LONG = 100  # the opens kept: their median is the door's usual
OPEN_WAIT_S = 30.0  # a door seen open later than this after its pulse is no sample
FLAP_S = 2.0
HEALTH_EVERY = timedelta(hours=1)

# The RS485 board counters that are errors (the driver's `BoardHealth`; the same list as the
# cabinet's Prometheus metrics count).
BUS_ERROR_KINDS = (
    "timeouts",
    "bad_checksum",
    "garbage_bytes",
    "malformed",
    "wrong_replies",
    "clashes",
    "unlock_faults",
    "failed_polls",
)


@dataclass
class DoorWear:
    """One door's counters and its last `LONG` pulse-to-open times (milliseconds)."""

    pulses: int = 0
    failed_unlocks: int = 0
    flaps: int = 0
    opens_timed: int = 0
    open_ms: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pulses": self.pulses,
            "failed_unlocks": self.failed_unlocks,
            "flaps": self.flaps,
            "opens_timed": self.opens_timed,
            "open_ms": self.open_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DoorWear:
        return cls(
            pulses=int(data.get("pulses", 0)),
            failed_unlocks=int(data.get("failed_unlocks", 0)),
            flaps=int(data.get("flaps", 0)),
            opens_timed=int(data.get("opens_timed", 0)),
            open_ms=[int(ms) for ms in data.get("open_ms", ())][-LONG:],
        )

    def medians(self) -> tuple[int | None, int | None]:
        """(median of the last RECENT opens, median of the last LONG), None before any."""
        if not self.open_ms:
            return None, None
        recent = statistics.median(self.open_ms[-RECENT:])
        return round(recent), round(statistics.median(self.open_ms))


@dataclass
class BoardWear:
    """One board's totals since installation."""

    requests: int = 0
    errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BoardWear:
        return cls(requests=int(data.get("requests", 0)), errors=int(data.get("errors", 0)))


@dataclass
class _Sensor:
    value: bool
    at: float
    pulsed: bool  # the change came within OPEN_WAIT_S of a pulse


class HealthLedger:
    """The counters of one cabinet; the service feeds it, the journal keeps it."""

    def __init__(
        self,
        door_boards: Mapping[str, str | None],
        *,
        ticks: Callable[[], float] = time.monotonic,
    ) -> None:
        self._door_boards = dict(door_boards)
        self._ticks = ticks
        self.doors: dict[str, DoorWear] = {door: DoorWear() for door in door_boards}
        self.boards: dict[str, BoardWear] = {}
        self._driver_seen: dict[str, tuple[int, int]] = {}  # the driver's counters last read
        self._pulsed_at: dict[str, float] = {}
        self._counted_ahead: set[str] = set()  # pulses `pulse_counted` already counted
        self._door: dict[str, _Sensor] = {}
        self._occupancy: dict[str, _Sensor] = {}
        self._dirty_doors: set[str] = set()
        self._dirty_boards: set[str] = set()

    # --- the journal --------------------------------------------------------------------------

    def load(
        self, doors: Mapping[str, Mapping[str, Any]], boards: Mapping[str, Mapping[str, Any]]
    ) -> None:
        """Take the totals the journal kept (doors no longer in the layout are dropped)."""
        for door, data in doors.items():
            if door in self.doors:
                self.doors[door] = DoorWear.from_dict(data)
        for board, data in boards.items():
            self.boards[board] = BoardWear.from_dict(data)

    @property
    def dirty(self) -> bool:
        return bool(self._dirty_doors or self._dirty_boards)

    def take_dirty(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """The rows changed since the last call, to write in the journal's next transaction."""
        doors = {door: self.doors[door].to_dict() for door in sorted(self._dirty_doors)}
        boards = {board: self.boards[board].to_dict() for board in sorted(self._dirty_boards)}
        self._dirty_doors.clear()
        self._dirty_boards.clear()
        return doors, boards

    def restore_dirty(self, doors: Mapping[str, Any], boards: Mapping[str, Any]) -> None:
        """The journal write failed: keep the rows for the next one."""
        self._dirty_doors.update(doors)
        self._dirty_boards.update(boards)

    # --- what the service sees ----------------------------------------------------------------

    def pulse_counted(self, door: str) -> None:
        """Count a pulse ahead of driving it, so the unlock's own journal commit carries it.

        The `pulsed` that follows starts the open timer without counting it again.
        """
        wear = self._wear(door)
        if wear is None:
            return
        wear.pulses += 1
        self._counted_ahead.add(door)
        self._dirty_doors.add(door)

    def pulsed(self, door: str) -> None:
        """The service is about to drive `door`'s lock: count it (unless counted ahead)."""
        wear = self._wear(door)
        if wear is None:
            return
        if door in self._counted_ahead:
            self._counted_ahead.discard(door)
        else:
            wear.pulses += 1
            self._dirty_doors.add(door)
        self._pulsed_at[door] = self._ticks()

    def unlock_failed(self, door: str) -> None:
        wear = self._wear(door)
        if wear is None:
            return
        wear.failed_unlocks += 1
        self._pulsed_at.pop(door, None)  # whatever opens it next was not this pulse
        self._dirty_doors.add(door)

    def door_seen(self, door: str, is_open: bool) -> None:
        """The driver reported `door` open or shut (an edge, as it comes off the feed)."""
        wear = self._wear(door)
        if wear is None:
            return
        now = self._ticks()
        pulsed_at = self._pulsed_at.pop(door, None) if is_open else None
        pulsed = pulsed_at is not None and now - pulsed_at <= OPEN_WAIT_S
        if pulsed:
            wear.opens_timed += 1
            wear.open_ms = [*wear.open_ms, round((now - pulsed_at) * 1000)][-LONG:]  # type: ignore[operator]
            self._dirty_doors.add(door)
        last = self._door.get(door)
        if (
            last is not None
            and not is_open
            and last.value
            and not last.pulsed
            and now - last.at < FLAP_S
        ):
            wear.flaps += 1
            self._dirty_doors.add(door)
        self._door[door] = _Sensor(is_open, now, pulsed)

    def occupancy_seen(self, door: str, occupied: bool) -> None:
        """The occupancy sensor of `door` changed."""
        wear = self._wear(door)
        if wear is None:
            return
        now = self._ticks()
        last = self._occupancy.get(door)
        if last is not None and last.value != occupied and now - last.at < FLAP_S:
            wear.flaps += 1
            self._dirty_doors.add(door)
        self._occupancy[door] = _Sensor(occupied, now, False)

    def boards_seen(self, driver_health: Mapping[str, Any]) -> None:
        """Add what each board's driver counters grew by since the last look."""
        for board, requests, errors in _board_counters(driver_health):
            seen = self._driver_seen.get(board, (0, 0))
            # A counter below what we saw: the driver started again from zero.
            grew_requests = requests - seen[0] if requests >= seen[0] else requests
            grew_errors = errors - seen[1] if errors >= seen[1] else errors
            self._driver_seen[board] = (requests, errors)
            if grew_requests or grew_errors or board not in self.boards:
                wear = self.boards.setdefault(board, BoardWear())
                wear.requests += grew_requests
                wear.errors += grew_errors
                self._dirty_boards.add(board)

    # --- what the cloud is told ---------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The data of a `cabinet.health` event."""
        doors = []
        for door in sorted(self.doors):
            wear = self.doors[door]
            recent, long = wear.medians()
            entry: dict[str, Any] = {
                "compartment": door,
                "pulses": wear.pulses,
                "failed_unlocks": wear.failed_unlocks,
                "flaps": wear.flaps,
                "opens_timed": wear.opens_timed,
            }
            if self._door_boards.get(door):
                entry["board"] = self._door_boards[door]
            if recent is not None:
                entry["open_ms_recent"] = recent
                entry["open_ms_long"] = long
            doors.append(entry)
        boards = [{"board": board, **self.boards[board].to_dict()} for board in sorted(self.boards)]
        return {"doors": doors, "boards": boards}

    def _wear(self, door: str) -> DoorWear | None:
        return self.doors.get(door)


def _board_counters(health: Mapping[str, Any]) -> Iterator[tuple[str, int, int]]:
    """("bus:address", requests, errors) of every RS485 board, through a mixed driver too."""
    if health.get("driver") == "mixed":
        for part in health.get("drivers", ()):
            yield from _board_counters(part)
    elif health.get("driver") == "rs485":
        bus = str(health.get("name", "")).removeprefix("rs485:")
        for address, counters in health.get("boards", {}).items():
            errors = sum(int(counters.get(kind, 0)) for kind in BUS_ERROR_KINDS)
            yield f"{bus}:{address}", int(counters.get("requests", 0)), errors
