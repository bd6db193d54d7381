"""Serve a simulated bus on a pseudo-terminal, so a client opens it like /dev/ttyUSB0.

The client (the cabinet daemon, pyserial, miniterm) opens `server.path`, or the `link` symlink
beside it, at any baud. One background thread waits in `select` on the pty's master end, feeds
what the client writes to the bus and writes the bus's answers back when they fall due, from a
small time-ordered queue, so a slow reply never stops it hearing the next request.

Two things make a pty behave like a serial port rather than a terminal:

- Both ends are raw. A cooked tty eats 0x11 and 0x13 as XON/XOFF flow control (0x11 is the
  lock-closed byte!), maps CR to NL and echoes input back: any of these would corrupt frames.
- The server keeps its own slave fd open, so a client may close and reopen the path (a daemon
  restarting) without the pty hanging up.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import os
import select
import termios
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from firmware_sim.bus import Chunk, SimulatedBus
from firmware_sim.errors import ConfigError

log = logging.getLogger(__name__)

# termios speed constants -> baud (B9600 -> 9600, ...).
_SPEEDS = {
    getattr(termios, name): int(name[1:])
    for name in dir(termios)
    if name.startswith("B") and name[1:].isdigit()
}
BITS_PER_BYTE = 10  # 8N1: a start bit, 8 data bits, a stop bit
HANGUP_RETRY_S = 0.05  # how long to stop reading after EIO (no client end open)


def make_raw(fd: int) -> None:
    """Make a tty end pass every byte through untouched (no flow control, echo or mapping)."""
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    iflag, oflag, cflag, lflag = 0, 1, 2, 3
    # tty.setraw leaves IXOFF, IXANY and the CR/NL mappings alone; clear them too.
    attrs[iflag] &= ~(
        termios.IXON
        | termios.IXOFF
        | termios.IXANY
        | termios.ICRNL
        | termios.INLCR
        | termios.IGNCR
        | termios.ISTRIP
        | termios.INPCK
        | termios.PARMRK
        | termios.BRKINT
    )
    attrs[oflag] &= ~(termios.OPOST | termios.ONLCR | termios.OCRNL)
    attrs[cflag] = (attrs[cflag] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    attrs[cflag] |= termios.CREAD | termios.CLOCAL
    attrs[lflag] &= ~(
        termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN
    )
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class PtyServer:
    """A simulated lock-board bus on a pty: `path` (and `link`) is the serial port to open."""

    def __init__(
        self,
        bus: SimulatedBus,
        *,
        link: str | os.PathLike[str] | None = None,
        baud: int = 9600,
        wire_time: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if baud <= 0:
            raise ConfigError(f"baud must be positive, not {baud}")
        self.bus = bus
        self.link = Path(link) if link is not None else None
        self.baud = baud
        # At 9600 8N1 a byte takes 1.04 ms; emulate it only when asked (tests want speed).
        self.byte_s = BITS_PER_BYTE / baud if wire_time else 0.0
        self.clock = clock
        self.bytes_in = 0
        self.bytes_out = 0
        self.bytes_dropped = 0  # written while the slave's buffer was full (nobody reading)

        self._master, self._slave = os.openpty()
        for fd in (self._master, self._slave):
            make_raw(fd)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

        self._queue: list[tuple[float, int, bytes]] = []  # (due_at, tie-break, data)
        self._order = itertools.count()
        self._rx_done_at = float("-inf")  # when the client's last byte finished "arriving"
        self._tx_free_at = float("-inf")  # when the line is free for our next byte
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="firmware-sim-pty", daemon=True)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> PtyServer:
        """Start serving; the `link` appears once the server is ready."""
        self.bus.on_unsolicited = self._wake
        self._thread.start()
        if self.link is not None:
            self._make_link(self.link)
        return self

    def close(self) -> None:
        """Stop the thread, remove the link and release the pty (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self.bus.on_unsolicited == self._wake:
            self.bus.on_unsolicited = None
        if self.link is not None:
            self._remove_link(self.link)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> PtyServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _make_link(self, link: Path) -> None:
        if link.exists() and not link.is_symlink():
            raise ConfigError(f"{link} exists and is not a symlink: refusing to replace it")
        # A temporary link renamed over the old one: a client never sees the path missing.
        temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(self.path)
        os.replace(temporary, link)

    def _remove_link(self, link: Path) -> None:
        # Only our own link: another simulator may have taken the name over since.
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link) == self.path:
                link.unlink()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    # --- the serving thread --------------------------------------------------------------------

    def _run(self) -> None:
        hung_up_until = float("-inf")
        while not self._stopping:
            now = self.clock()
            waits = [self._queue[0][0]] if self._queue else []
            readers = [self._wake_r]
            if now >= hung_up_until:
                readers.append(self._master)
            else:
                waits.append(hung_up_until)
            timeout_s = max(0.0, min(waits) - now) if waits else None
            readable, _, _ = select.select(readers, [], [], timeout_s)
            if self._stopping:
                break
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
                now = self.clock()
                for chunk in self.bus.take_unsolicited():
                    self._schedule(now, chunk)
            if self._master in readable and not self._read_client():
                hung_up_until = self.clock() + HANGUP_RETRY_S
            self._write_due()

    def _read_client(self) -> bool:
        """Take what the client wrote to the bus; False when no client end is open (EIO)."""
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return True
        except OSError as err:
            if err.errno == errno.EIO:
                return False
            raise
        if not data:
            return False
        self.bytes_in += len(data)
        now = self.clock()
        # With wire time on, the request is complete only once its last byte has crossed.
        arrived_at = max(now, self._rx_done_at) + len(data) * self.byte_s
        self._rx_done_at = arrived_at
        try:
            self.bus.host_baud = self._client_baud()
            chunks = self.bus.feed(data, arrived_at)
        except Exception:  # a bug in the model must not kill the port under a running daemon
            log.exception("the simulated bus failed on %s", data.hex(" "))
            return True
        for chunk in chunks:
            self._schedule(arrived_at, chunk)
        return True

    def _client_baud(self) -> int | None:
        """The line rate the client set on its end (the tty's termios), so boards of another
        rate stay deaf, as a real UART at the wrong baud does; None if it cannot be read."""
        try:
            speed = termios.tcgetattr(self._slave)[5]  # ospeed
        except termios.error:
            return None
        return _SPEEDS.get(speed)

    def _schedule(self, base: float, chunk: Chunk) -> None:
        due_at = base + chunk.delay_s
        if not self.byte_s:
            heapq.heappush(self._queue, (due_at, next(self._order), chunk.data))
            return
        # Each byte is written when it has finished crossing the wire, one after another.
        at = max(due_at, self._tx_free_at)
        for byte in chunk.data:
            at += self.byte_s
            heapq.heappush(self._queue, (at, next(self._order), bytes([byte])))
        self._tx_free_at = at

    def _write_due(self) -> None:
        now = self.clock()
        while self._queue and self._queue[0][0] <= now:
            _, _, data = heapq.heappop(self._queue)
            try:
                written = os.write(self._master, data)
            except BlockingIOError:
                written = 0
            except OSError as err:
                log.warning("pty write failed: %s", err)
                written = 0
            self.bytes_out += written
            self.bytes_dropped += len(data) - written
