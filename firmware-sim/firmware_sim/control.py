"""The hands on the simulated cabinet: a person at the doors and a saboteur injecting faults.

Tests and the demo use these in process as `bus.person` and `bus.faults`; the HTTP control
server (http_control.py) maps its endpoints onto the same methods. Every method takes the bus
lock, checks its arguments before changing anything (UnknownBoardError, UnknownChannelError,
ConfigError, RefusedError: see errors.py) and notes what it did in the board's log.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from firmware_sim.board import CORRUPT_MODES
from firmware_sim.errors import ConfigError

if TYPE_CHECKING:
    from firmware_sim.bus import SimulatedBus


class Person:
    """Someone at the cabinet: opens, closes and forces doors, puts parcels in and takes them."""

    def __init__(self, bus: SimulatedBus) -> None:
        self._bus = bus

    def open_door(self, board: int, channel: int) -> None:
        """Pull a released door open; a latched one does not move (RefusedError)."""
        with self._bus.lock:
            target = self._bus.board(board)
            self._bus.emit_reports(target, target.open_door(channel, self._bus.clock()))

    def close_door(self, board: int, channel: int) -> None:
        """Push a door shut: it latches, unless a hold keeps the lock released."""
        with self._bus.lock:
            target = self._bus.board(board)
            self._bus.emit_reports(target, target.close_door(channel, self._bus.clock()))

    def force_door(self, board: int, channel: int) -> None:
        """Wrench a door open, latched or not: the sensor reads open with no unlock."""
        with self._bus.lock:
            target = self._bus.board(board)
            self._bus.emit_reports(target, target.force_door(channel, self._bus.clock()))

    def put_parcel(self, board: int, channel: int) -> None:
        """Put a parcel into an open, empty compartment."""
        with self._bus.lock:
            self._bus.board(board).put_parcel(channel, self._bus.clock())

    def take_parcel(self, board: int, channel: int) -> None:
        """Take the parcel out of an open compartment."""
        with self._bus.lock:
            self._bus.board(board).take_parcel(channel, self._bus.clock())


class Faults:
    """Break things on purpose: a lock, a sensor, a board's transmitter or power, the line."""

    def __init__(self, bus: SimulatedBus) -> None:
        self._bus = bus

    # --- one lock ------------------------------------------------------------------------------

    def jam(self, board: int, channel: int, jammed: bool = True) -> None:
        """Jam a lock: its pulses release nothing, so its unlock reply says 0x11 (closed)."""
        with self._bus.lock:
            self._bus.board(board).set_jammed(channel, jammed, self._bus.clock())

    def stick_sensor(self, board: int, channel: int, latched: bool | None) -> None:
        """Stick a lock's feedback switch at "latched" (True) or "open" (False); None frees it."""
        with self._bus.lock:
            target = self._bus.board(board)
            reports = target.set_stuck_sensor(channel, latched, self._bus.clock())
            self._bus.emit_reports(target, reports)

    def stick_occupancy(self, board: int, channel: int, occupied: bool | None) -> None:
        """Stick a compartment's occupancy sensor (KR-CU) at "something inside" (True) or
        "empty" (False), whatever is really in it; None frees it."""
        with self._bus.lock:
            self._bus.board(board).set_stuck_occupancy(channel, occupied, self._bus.clock())

    def sticky_door(self, board: int, channel: int, sticky: bool = True) -> None:
        """Make a door stay shut once released (its spring does not push it open)."""
        with self._bus.lock:
            self._bus.board(board).set_sticky(channel, sticky, self._bus.clock())

    # --- one board -----------------------------------------------------------------------------

    def silence(self, board: int, silent: bool = True) -> None:
        """Kill a board's transmitter: it still hears and acts (pulses fire!), never answers."""
        with self._bus.lock:
            target = self._bus.board(board)
            target.tx.silent = silent
            target.note(self._bus.clock(), f"silent={silent}")

    def corrupt(self, board: int, mode: str = "checksum", count: int | None = None) -> None:
        """Damage a board's next `count` replies (None: all of them).

        Modes: "checksum" inverts CHK; "flip" flips the low bit of the middle byte (the decoder
        may call it a bad checksum or malformed); "truncate" sends only the first half and a byte.
        """
        with self._bus.lock:
            target = self._bus.board(board)
            if mode not in CORRUPT_MODES:
                raise ConfigError(
                    f"corrupt mode is one of {', '.join(CORRUPT_MODES)}, not {mode!r}"
                )
            _check_count(count)
            target.tx.corrupt_mode, target.tx.corrupt_count = mode, count
            target.note(self._bus.clock(), f"corrupt={mode} count={count}")

    def slow(self, board: int, delay_s: float) -> None:
        """Delay each of a board's replies by `delay_s` more (0 restores its normal pace)."""
        with self._bus.lock:
            target = self._bus.board(board)
            target.tx.extra_delay_s = _check_seconds("delay_s", delay_s)
            target.note(self._bus.clock(), f"slow={delay_s}s")

    def byte_at_a_time(self, board: int, gap_s: float | None) -> None:
        """Send a board's replies one byte at a time, `gap_s` apart (None: whole again)."""
        with self._bus.lock:
            target = self._bus.board(board)
            target.tx.byte_gap_s = None if gap_s is None else _check_seconds("gap_s", gap_s)
            target.note(self._bus.clock(), f"byte_gap={gap_s}s")

    def power_off(self, board: int) -> None:
        """Cut a board's power: deaf and silent, holds let go, doors stay as they are."""
        with self._bus.lock:
            self._bus.board(board).power_off(self._bus.clock())

    def power_on(self, board: int) -> None:
        """Give a board its power back; it finds its locks as the mechanics left them."""
        with self._bus.lock:
            self._bus.board(board).power_on(self._bus.clock())

    def clear(self, board: int) -> None:
        """Undo every fault of a board and its locks, power included."""
        with self._bus.lock:
            target = self._bus.board(board)
            self._bus.emit_reports(target, target.clear_faults(self._bus.clock()))

    # --- the line ------------------------------------------------------------------------------

    def garbage(self, data: bytes = b"\x00\xff\x55\x13", count: int | None = 1) -> None:
        """Put noise on the line just before each of the next `count` replies (None: all)."""
        _check_count(count)
        if not data:
            raise ConfigError("garbage needs at least one byte")
        with self._bus.lock:
            self._bus.line.garbage, self._bus.line.garbage_count = bytes(data), count

    def inject(self, data: bytes) -> None:
        """Put bytes on the line right now, as a noise burst or a rogue device would."""
        if not data:
            raise ConfigError("inject needs at least one byte")
        self._bus.inject(bytes(data))

    def clear_line(self) -> None:
        """Stop the line's noise."""
        with self._bus.lock:
            self._bus.line.garbage, self._bus.line.garbage_count = b"", 0


def _check_count(count: int | None) -> None:
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ConfigError(f"count is a whole number ≥ 1, or None for always; not {count!r}")


def _check_seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} is a number of seconds, not {value!r}")
    if not 0 <= value <= 60:
        raise ConfigError(f"{name} is 0–60 seconds, not {value}")
    return float(value)
