"""Door driver for RS485 lock-control boards (docs/lockboard.md) over pyserial.

One bus speaks one board family ("8A/80" or Kerong KR-CU16): what differs between families
(frames, which request reads a door, sensors) is in board_family.py; everything here holds for
both. Where a family's boards carry occupancy sensors, every status reply's sensor bits are
published as `OccupancyChange`s, before the same reply's door changes, so the owner knows what
is inside a compartment when it learns its door shut.

One `Rs485Driver` owns one bus (one serial port) with any number of boards on it. A single worker
thread owns the port and runs one transaction at a time from a priority queue (unlocks first,
then single reads, then status polls); asyncio callers wait on futures, and door changes reach
the loop through `loop.call_soon_threadsafe`.

A transaction, in order (`_transact`): wait out the inter-request gap; drain and flush whatever
arrived late; tell the decoder what is in flight; write; read until the line has been quiet for
`quiet_gap_s` (or the timeout passes); then check what came. Queries are retried a bounded number
of times, and a board whose poll fails after its retries is marked faulted (its doors read as
unknown) until it answers again. An unlock is never resent blindly (`_unlock`): after a timeout
or a garbled reply the board may have fired, so the driver waits for quiet, queries the lock and
acts on what it says; only a clear "still closed" earns the one retry.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import serial

from cabinet.drivers.board_family import DEFAULT_FAMILY, BoardFamily, family
from cabinet.drivers.poll_hold import MAX_HOLD_S, PollHold
from cabinet.errors import DriverClosed, DriverError, UnknownCompartment
from cabinet.ports import (
    Change,
    ChangeFeed,
    DoorChange,
    OccupancyChange,
    UnlockOutcome,
    UnlockResult,
)
from protocol.lockboard.common import DecoderStats, Polarity
from protocol.lockboard.family_8a import (
    HEAD_QUERY,
    HEAD_UNLOCK,
    MAX_CHANNELS,
    StateReport,
)

Frame = Any  # a reply of the bus's family
Request = Any  # a request of the bus's family

log = logging.getLogger(__name__)

# Job priorities: lower runs first (docs/lockboard.md#the-drivers-rules: unlocks before polls).
_STOP, _UNLOCK, _READ, _POLL = 0, 1, 2, 3


# The longest a typed code may keep status polls off the bus, however often it is renewed, and
# the longest any board goes unpolled whatever the holds: a door opened by hand (forced) is seen
# within MAX_UNPOLLED_S plus a poll interval (poll_hold.py).
MAX_POLL_HOLD_S = MAX_HOLD_S


@dataclass(frozen=True)
class BoardSpec:
    """One board on the bus: its DIP address and the variant quirks it has."""

    address: int
    channels: int = 24
    polarity: Polarity = Polarity.NORMAL
    unlock_reply_heads: frozenset[int] = frozenset({HEAD_UNLOCK, HEAD_QUERY})
    # KR-CU boards: what a set sensor bit means (uncertain in the spec), and whether the
    # compartments have sensors fitted at all (a board may be bought with them left off).
    sensor_polarity: Polarity = Polarity.NORMAL
    sensors: bool = True
    # KR-CU: whether the board answers an unlock at all. One that does not is asked for its
    # status after the unlock timeout as usual; its silence is then no timeout in its counters.
    answers_unlock: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise ValueError(f"a board has 1-{MAX_CHANNELS} channels, not {self.channels}")


@dataclass(frozen=True)
class BusTiming:
    """The bus's clocks (docs/lockboard.md#line-and-timing; tests shorten them)."""

    query_timeout_s: float = 0.1
    unlock_timeout_s: float = 1.5
    quiet_gap_s: float = 0.025  # a reply is complete once the line was this quiet
    inter_request_gap_s: float = 0.005
    poll_interval_s: float = 0.5
    query_retries: int = 2  # extra attempts of a failed query (never of an unlock)
    # How often an idle bus listens for unasked `82` reports. Jobs never wait for it (the queue
    # wakes the thread at once); 0.1 s took `locker bench edge` idle CPU from 1.5 % to 0.8 %.
    idle_read_s: float = 0.1


@dataclass
class BoardHealth:
    """Per-board error counters and state, for the maintenance screen."""

    requests: int = 0
    timeouts: int = 0
    bad_checksum: int = 0
    garbage_bytes: int = 0
    malformed: int = 0
    wrong_replies: int = 0  # well-formed replies for another address, channel or request
    retries: int = 0
    unlock_faults: int = 0  # locks still latched after their retry
    unlock_unknown: int = 0
    clashes: int = 0  # garbled replies longer than one reply: two boards on one address?
    consecutive_clashes: int = 0
    failed_polls: int = 0
    faulted: bool = False

    def as_dict(self) -> dict[str, Any]:
        data = dict(vars(self))
        data["address_clash_suspected"] = self.consecutive_clashes >= 2
        del data["consecutive_clashes"]
        return data


@dataclass
class _Heard:
    """What one transaction heard: the reply it waited for (if any) and how it went."""

    reply: Frame | None = None
    heard_bytes: int = 0
    garbled: bool = False  # bytes came, but no acceptable reply among them


class _NotSent(Exception):
    """The request could not be written: nothing left the host."""


@dataclass(order=True)
class _Job:
    priority: int
    order: int
    run: Callable[[], Any] = field(compare=False)
    future: concurrent.futures.Future[Any] = field(compare=False)


class Rs485Driver:
    """Every compartment on one RS485 bus of lock boards."""

    def __init__(
        self,
        port: str | serial.SerialBase,
        boards: Sequence[BoardSpec],
        compartments: Mapping[str, tuple[int, int]],
        *,
        timing: BusTiming | None = None,
        baud: int | None = None,
        echo: bool = False,
        board_family: str = DEFAULT_FAMILY,
        name: str = "rs485",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        # The bus's time, injected: every deadline (reply timeouts, the quiet after a doubtful
        # unlock, poll holds) is read from `clock` and the inter-request gap is waited out with
        # `sleep`. A test hands both in with a virtual serial port, and a 1.5 s unlock timeout
        # then costs no real time (tests/cabinet/drivers/virtual_line.py).
        self._clock = clock
        self._sleep = sleep
        self.timing = timing or BusTiming()
        self._family: BoardFamily = family(board_family)
        self._port_spec = port
        self._baud = baud or self._family.baud
        self._echo = echo
        self._boards = {spec.address: spec for spec in boards}
        for spec in boards:
            if spec.channels > self._family.max_channels:
                raise DriverError(
                    f"board {spec.address}: a {self._family.name} board has at most "
                    f"{self._family.max_channels} channels, not {spec.channels}"
                )
        for compartment, (address, channel) in compartments.items():
            spec = self._boards.get(address)
            if spec is None or not 1 <= channel <= spec.channels:
                raise DriverError(
                    f"compartment {compartment!r}: no board {address} channel {channel}"
                )
        self._routes = dict(compartments)
        self._by_lock = {lock: compartment for compartment, lock in compartments.items()}
        self._health = {address: BoardHealth() for address in self._boards}
        # Status bytes each board was heard sending in a query-all reply (some send more than
        # their channels need): once known, a reply of that length is complete as soon as it
        # parses; until then the driver waits for the quiet gap to frame it.
        self._status_bytes: dict[int, int] = {}
        self._bus_stats = DecoderStats()  # bytes heard with no transaction to blame
        self._late_frames = 0  # whole replies that came after their transaction had ended
        self._known: dict[tuple[int, int], bool] = {}  # (board, channel) -> door open
        self._sensed: dict[tuple[int, int], bool] = {}  # (board, channel) -> something inside
        # Locks an unasked `82` report spoke for during the current transaction: fresher news
        # than a query-all reply the board may have sampled before the change.
        self._reported: set[tuple[int, int]] = set()
        self._decoder = self._family.decoder(echo=echo)
        self._jobs: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self._order = itertools.count()
        self._queued_polls: dict[int, concurrent.futures.Future[Any]] = {}
        self._poll_hold = PollHold()  # polls are skipped while it holds (under _hold_lock)
        self._last_polled: dict[int, float] = {}  # board -> self._clock() of its last poll
        self._hold_lock = threading.Lock()
        self._queued_lock = threading.Lock()
        self._health_lock = threading.Lock()
        self._line_free_at = 0.0
        self._feed: ChangeFeed | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._port: serial.SerialBase | None = None
        self._thread: threading.Thread | None = None
        self._poller: asyncio.Task[None] | None = None
        self._closed = False

    # --- the DoorDriver interface -----------------------------------------------------------------

    @property
    def compartments(self) -> frozenset[str]:
        return frozenset(self._routes)

    async def start(self) -> None:
        """Open the port, start the bus thread and the periodic polls."""
        self._loop = asyncio.get_running_loop()
        self._feed = self._feed or ChangeFeed()
        self._port = self._open_port()
        self._thread = threading.Thread(target=self._work, name=f"{self.name}-bus", daemon=True)
        self._thread.start()
        if self.timing.poll_interval_s > 0:
            self._poller = asyncio.create_task(self._poll_forever(), name=f"{self.name}-poll")

    async def unlock(self, compartment: str) -> UnlockResult:
        address, channel = self._route(compartment)
        outcome, detail = await self._submit(_UNLOCK, lambda: self._unlock(address, channel))
        return UnlockResult(compartment, outcome, detail)

    async def read(self, compartment: str) -> bool | None:
        address, channel = self._route(compartment)
        return await self._submit(_READ, lambda: self._read_one(address, channel))

    def hold_polls(self, seconds: float) -> None:
        """Skip status polls for `seconds`, within PollHold's caps: doors must not go unseen."""
        with self._hold_lock:
            self._poll_hold.hold(self._clock(), seconds)

    def release_polls(self) -> None:
        with self._hold_lock:
            self._poll_hold.release(self._clock())

    def polls_held(self, address: int | None = None) -> bool:
        """Whether status polls (of board `address`; default: of every board) are skipped now."""
        with self._hold_lock:
            now = self._clock()
            boards = self._boards if address is None else (address,)
            return all(self._poll_hold.held(now, self._last_polled.get(a)) for a in boards)

    async def settled(self) -> None:
        """Return once the transaction on the bus now (if any) and the gap after it have ended.

        Sends nothing: a job at unlock priority (so it goes ahead of queued polls and reads)
        that only waits out the inter-request gap. With polls held (`hold_polls`), the bus is
        then free for the next unlock, as it is after a person has typed for a few seconds
        (`locker bench edge` waits on it instead of sleeping out a poll's reply timeout).
        """
        await self._submit(_UNLOCK, self._wait_for_line)

    async def poll(self) -> dict[str, bool]:
        futures = [self._queue_poll(address) for address in self._boards]
        await asyncio.gather(*(asyncio.wrap_future(future) for future in futures))
        return self._readable_doors()

    def changes(self) -> AsyncIterator[Change]:
        return self._change_feed().take()

    def health(self) -> dict[str, Any]:
        with self._health_lock:
            boards = {str(address): h.as_dict() for address, h in self._health.items()}
        out_of_service = sorted(
            compartment
            for compartment, (address, _) in self._routes.items()
            if self._health[address].faulted
        )
        return {
            "driver": "rs485",
            "family": self._family.name,
            "name": self.name,
            "port": str(getattr(self._port, "port", self._port_spec)),
            "boards": boards,
            "line": {**self._bus_stats.as_dict(), "late_frames": self._late_frames},
            "out_of_service": out_of_service,
        }

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._thread is not None:
            self._jobs.put(
                _Job(_STOP, next(self._order), lambda: None, concurrent.futures.Future())
            )
            await asyncio.to_thread(self._thread.join, 5)
        if self._port is not None:
            self._port.close()
        if self._feed is not None:
            self._feed.close()

    # --- loop side --------------------------------------------------------------------------------

    def _change_feed(self) -> ChangeFeed:
        if self._feed is None:
            self._feed = ChangeFeed()
        return self._feed

    def _route(self, compartment: str) -> tuple[int, int]:
        try:
            return self._routes[compartment]
        except KeyError:
            raise UnknownCompartment(compartment) from None

    def _open_port(self) -> serial.SerialBase:
        spec = self._port_spec
        if isinstance(spec, serial.SerialBase):
            port = spec
        else:
            try:
                port = serial.serial_for_url(spec, baudrate=self._baud, do_not_open=True)
                port.bytesize, port.parity, port.stopbits = 8, "N", 1
                port.open()
            except (serial.SerialException, OSError, ValueError) as err:
                raise DriverError(f"{self.name}: cannot open serial port {spec}: {err}") from err
        # A read returns as soon as a byte is there, or after a quiet gap with none.
        port.timeout = self.timing.quiet_gap_s
        return port

    def _submit(self, priority: int, run: Callable[[], Any]) -> asyncio.Future[Any]:
        if self._closed or self._thread is None:
            raise DriverClosed(f"{self.name} is not running")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put(_Job(priority, next(self._order), run, future))
        return asyncio.wrap_future(future)

    def _queue_poll(self, address: int) -> concurrent.futures.Future[Any]:
        """Queue a query-all for a board, or join the one already waiting in the queue."""
        if self._closed or self._thread is None:
            raise DriverClosed(f"{self.name} is not running")
        with self._queued_lock:
            waiting = self._queued_polls.get(address)
            if waiting is not None:
                return waiting
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            self._queued_polls[address] = future

        def run() -> None:
            with self._queued_lock:
                self._queued_polls.pop(address, None)
            if self.polls_held(address):
                return  # someone is typing a code: keep the bus free for its unlock
            with self._hold_lock:
                self._last_polled[address] = self._clock()
            self._poll_board(address)

        self._jobs.put(_Job(_POLL, next(self._order), run, future))
        return future

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self.poll()
            except DriverClosed:
                return
            except Exception:  # one bad poll must not end the polling for good
                log.exception("%s: poll failed", self.name)
            await asyncio.sleep(self.timing.poll_interval_s)

    def _readable_doors(self) -> dict[str, bool]:
        doors = {}
        for compartment, (address, channel) in self._routes.items():
            known = self._known.get((address, channel))
            if known is not None and not self._health[address].faulted:
                doors[compartment] = known
        return doors

    # --- the bus thread ---------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.timing.idle_read_s)
            except queue.Empty:
                self._listen_idle()
                continue
            if job.priority == _STOP:
                break
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                job.future.set_result(job.run())
            except BaseException as err:  # the caller gets it; the thread goes on
                job.future.set_exception(err)
        # Fail whatever was still queued, so no caller waits forever.
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(DriverClosed(f"{self.name} closed"))

    def _listen_idle(self) -> None:
        """Take unasked `82` reports (and count noise) while no request is in flight."""
        port = self._port
        try:
            waiting = port.in_waiting if port is not None else 0
            data = port.read(waiting) if waiting else b""
        except (serial.SerialException, OSError) as err:
            log.warning("%s: read failed while idle: %s", self.name, err)
            return
        if data:
            self._decoder.expect(None)
            before = _copy(self._decoder.stats)
            frames = self._decoder.feed(data)
            self._late_frames += sum(not isinstance(frame, StateReport) for frame in frames)
            self._take_reports(frames)
            self._add_stats(None, before)

    # One transaction: the sequence of docs/lockboard.md#the-drivers-rules.
    def _transact(self, request: Request, address: int, timeout_s: float) -> _Heard:
        """Send `request` and return what came back; `_NotSent` if the write failed."""
        spec = self._boards[address]
        self._wait_for_line()
        with self._health_lock:
            self._health[address].requests += 1
        try:
            self._drain_late_bytes()
            self._family.expect(self._decoder, request, spec, self._status_bytes.get(address))
            before = _copy(self._decoder.stats)
            self._reported.clear()
            self._port.write(self._family.encode(request))
            self._port.flush()
        except (serial.SerialException, OSError) as err:
            raise _NotSent(str(err)) from err
        frames, heard_bytes = self._read_until_quiet(timeout_s, request)
        heard = self._check(request, spec, frames, heard_bytes)
        self._decoder.flush()  # leftovers of a truncated or garbled reply, counted as garbage
        self._add_stats(address, before)
        self._line_free_at = self._clock() + self.timing.inter_request_gap_s
        return heard

    def _wait_for_line(self) -> None:
        delay_s = self._line_free_at - self._clock()
        if delay_s > 0:
            self._sleep(delay_s)

    def _drain_late_bytes(self) -> None:
        """Bytes that came after the last transaction ended: reports are kept, the rest counted."""
        waiting = self._port.in_waiting
        if not waiting and not self._decoder.pending:
            return
        self._decoder.expect(None)
        before = _copy(self._decoder.stats)
        frames = self._decoder.feed(self._port.read(waiting)) if waiting else []
        self._late_frames += sum(not isinstance(frame, StateReport) for frame in frames)
        self._take_reports(frames)
        self._decoder.flush()  # half a frame now would garble the reply we are about to read
        self._add_stats(None, before)

    def _read_until_quiet(self, timeout_s: float, request: Request) -> tuple[list[Frame], int]:
        """Read until the reply to `request` is complete, or the line went quiet, or timeout.

        docs/lockboard.md frames a reply by 25 ms of quiet because replies carry no length. Our
        decoder already knows the shape `request` is answered with and checks its CHK, so a
        decoded reply is complete: waiting out the gap as well would add 25 ms to every
        transaction, and an unlock queued behind a status poll would wait for it. Bytes that
        still trail (a clash, noise) are drained and counted before the next request. The one
        exception is a query-all reply of a board whose reply length is not yet known (boards
        send ceil(channels / 8) status bytes or more): the quiet gap is what ends it, so the
        decoder is told when the line went quiet.
        """
        deadline = self._clock() + timeout_s
        echo_left = 5 if self._echo else 0  # our own request, heard back first: not a reply
        frames: list[Frame] = []
        heard_bytes = 0
        while self._clock() < deadline:
            try:
                data = self._port.read(max(1, self._port.in_waiting))
            except (serial.SerialException, OSError) as err:
                # The request did leave: what it did is for the caller's follow-up to find out.
                log.warning("%s: read failed: %s", self.name, err)
                break
            if not data:
                if heard_bytes:
                    break  # quiet for a whole gap after the reply began: it is complete
                continue
            frames += self._decoder.feed(data)
            skip = min(echo_left, len(data))
            echo_left -= skip
            heard_bytes += len(data) - skip
            if any(self._family.is_reply_to(request, frame) for frame in frames):
                break
        if self._decoder.pending and not any(self._family.is_reply_to(request, f) for f in frames):
            frames += self._decoder.feed(b"", line_quiet=True)
        return frames, heard_bytes

    def _check(
        self, request: Request, spec: BoardSpec, frames: list[Frame], heard_bytes: int
    ) -> _Heard:
        """Pick the reply to `request` out of what was heard; count everything else."""
        health = self._health[spec.address]
        reply: Frame | None = None
        for frame in frames:
            if isinstance(frame, StateReport):
                self._take_reports([frame])
            elif self._family.is_reply_to(request, frame) and self._family.acceptable(
                request, frame, spec
            ):
                reply = frame
                learned = self._family.learned_length(frame)
                if learned is not None:
                    self._status_bytes[spec.address] = learned
            else:
                with self._health_lock:
                    health.wrong_replies += 1
        heard = _Heard(reply, heard_bytes, garbled=reply is None and heard_bytes > 0)
        silent_by_design = not spec.answers_unlock and self._family.is_unlock(request)
        with self._health_lock:
            if reply is None and not heard_bytes and not silent_by_design:
                health.timeouts += 1
            if heard.garbled and heard_bytes > self._reply_length(request, spec):
                # A collision smears two replies into one longer burst (see firmware_sim.bus).
                health.clashes += 1
                health.consecutive_clashes += 1
            elif reply is not None:
                health.consecutive_clashes = 0
        return heard

    def _reply_length(self, request: Request, spec: BoardSpec) -> int:
        """Bytes in one clean reply to `request` (as long as the board was heard answering)."""
        return self._family.reply_length(request, spec, self._status_bytes.get(spec.address))

    def _wait_for_quiet(self) -> None:
        """After a doubtful unlock: let the board finish talking, then forget what it said."""
        deadline = self._clock() + self.timing.unlock_timeout_s
        self._decoder.expect(None)
        before = _copy(self._decoder.stats)
        while self._clock() < deadline:
            try:
                data = self._port.read(max(1, self._port.in_waiting))
            except (serial.SerialException, OSError) as err:
                log.warning("%s: read failed: %s", self.name, err)
                break
            if not data:
                break
            frames = self._decoder.feed(data)
            self._late_frames += sum(not isinstance(frame, StateReport) for frame in frames)
            self._take_reports(frames)
        self._decoder.flush()
        self._add_stats(None, before)

    # --- what the jobs do (bus thread) ------------------------------------------------------------

    def _query(self, request: Request, address: int) -> Frame | None:
        """A query with bounded retries (none while the board is faulted); None if all failed."""
        attempts = 1 if self._health[address].faulted else 1 + self.timing.query_retries
        for attempt in range(attempts):
            if attempt:
                with self._health_lock:
                    self._health[address].retries += 1
            try:
                heard = self._transact(request, address, self.timing.query_timeout_s)
            except _NotSent as err:
                log.warning("%s: query to board %d never left: %s", self.name, address, err)
                return None
            if heard.reply is not None:
                self._board_answered(address)
                return heard.reply
        return None

    def _poll_board(self, address: int) -> None:
        spec = self._boards[address]
        reply = self._query(self._family.poll_request(address), address)
        if reply is None:
            self._board_failed(address)
            return
        self._saw_sensors(address, reply)
        for channel, latched in self._family.locks(reply, spec).items():
            if (address, channel) in self._reported:
                continue  # a report during this poll is the fresher news; the next poll confirms
            self._saw_door(address, channel, door_open=not latched)

    def _read_one(self, address: int, channel: int) -> bool | None:
        reply = self._query(self._family.read_request(address, channel), address)
        if reply is None:
            return None
        self._saw_sensors(address, reply)
        door_open = not self._family.lock(reply, self._boards[address], channel)
        self._saw_door(address, channel, door_open)
        return door_open

    def _unlock(self, address: int, channel: int) -> tuple[UnlockOutcome, str]:
        """Pulse a lock; never resend blindly; at most one retry, after a clear "still closed"."""
        spec = self._boards[address]
        for attempt in (1, 2):
            try:
                heard = self._transact(
                    self._family.unlock_request(address, channel),
                    address,
                    self.timing.unlock_timeout_s,
                )
            except _NotSent as err:
                if attempt == 1:
                    return UnlockOutcome.NOT_SENT, f"the unlock never left the host: {err}"
                return UnlockOutcome.UNKNOWN, f"lock still latched; the retry never left: {err}"
            if heard.reply is not None:
                self._saw_sensors(address, heard.reply)
                latched = self._family.lock(heard.reply, spec, channel)
            else:
                # No reply, or a garbled one: the board may have fired. Ask the lock itself.
                why = "garbled" if heard.garbled else "no"
                self._wait_for_quiet()
                confirmed = self._read_one(address, channel)
                if confirmed is None:
                    with self._health_lock:
                        self._health[address].unlock_unknown += 1
                    return UnlockOutcome.UNKNOWN, (
                        f"unlock sent, {why} reply, and the lock did not answer a query: "
                        "outcome unknown"
                    )
                latched = not confirmed
            if not latched:
                self._saw_door(address, channel, door_open=True)
                return UnlockOutcome.RELEASED, f"released on attempt {attempt}"
        with self._health_lock:
            self._health[address].unlock_faults += 1
        return UnlockOutcome.STILL_LATCHED, "lock still latched after two pulses: lock fault"

    # --- door state and board health (bus thread) -------------------------------------------------

    def _saw_door(self, address: int, channel: int, door_open: bool) -> None:
        lock = (address, channel)
        if self._known.get(lock) == door_open:
            return
        self._known[lock] = door_open
        compartment = self._by_lock.get(lock)
        if compartment is not None:
            self._publish(DoorChange(compartment, door_open))

    def _saw_sensors(self, address: int, reply: Frame) -> None:
        """Publish what a status reply's occupancy sensors say, where the board has them."""
        spec = self._boards[address]
        if not spec.sensors:
            return
        sensed = self._family.sensors(reply, spec)
        for channel, occupied in (sensed or {}).items():
            lock = (address, channel)
            if self._sensed.get(lock) == occupied:
                continue
            self._sensed[lock] = occupied
            compartment = self._by_lock.get(lock)
            if compartment is not None:
                self._publish(OccupancyChange(compartment, occupied))

    def sensed(self) -> dict[str, bool]:
        """Compartment -> something inside, as last read, for compartments with a sensor."""
        return {
            compartment: self._sensed[lock]
            for compartment, lock in self._routes.items()
            if lock in self._sensed and not self._health[lock[0]].faulted
        }

    def _take_reports(self, frames: list[Frame]) -> None:
        for frame in frames:
            if isinstance(frame, StateReport) and frame.board in self._boards:
                self._reported.add((frame.board, frame.channel))
                polarity = self._boards[frame.board].polarity
                self._saw_door(frame.board, frame.channel, door_open=not frame.latched(polarity))

    def _board_answered(self, address: int) -> None:
        health = self._health[address]
        if health.faulted:
            log.warning("%s: board %d answers again", self.name, address)
            with self._health_lock:
                health.faulted = False
            # Its doors were unknown while it was faulted: report them afresh.
            for lock in [lock for lock in self._known if lock[0] == address]:
                del self._known[lock]
            for lock in [lock for lock in self._sensed if lock[0] == address]:
                del self._sensed[lock]

    def _board_failed(self, address: int) -> None:
        health = self._health[address]
        with self._health_lock:
            health.failed_polls += 1
            newly = not health.faulted
            health.faulted = True
        if newly:
            log.error("%s: board %d faulted: its doors are out of service", self.name, address)

    def _publish(self, change: DoorChange | OccupancyChange) -> None:
        loop, feed = self._loop, self._feed
        if loop is not None and feed is not None and not loop.is_closed():
            loop.call_soon_threadsafe(feed.publish, change)

    def _add_stats(self, address: int | None, before: DecoderStats) -> None:
        """Charge what the decoder counted since `before` to a board (None: to the line)."""
        after = self._decoder.stats
        target: Any = self._bus_stats if address is None else self._health[address]
        with self._health_lock:
            target.garbage_bytes += after.garbage_bytes - before.garbage_bytes
            target.bad_checksum += after.bad_checksum - before.bad_checksum
            target.malformed += after.malformed - before.malformed


def _copy(stats: DecoderStats) -> DecoderStats:
    return DecoderStats(**stats.as_dict())
