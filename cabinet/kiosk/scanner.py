"""A serial QR scanner: each line it sends is one scanned payload, handed to the event loop.

Most cabinet scanners are USB devices that type like a keyboard (the page catches those
keystrokes itself); some speak serial (RS232 or a USB CDC port) and send the payload followed by
CR, LF or both. This reader runs pyserial on its own thread, splits lines, drops empty ones and
anything that is not printable text, and calls `on_payload` on the loop with each one, so the
cabinet's state is still only touched on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import serial

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.2  # how soon the thread notices `close`
MAX_LINE_BYTES = 512  # a scanner sending no line end must not grow the buffer forever
REOPEN_S = 2.0


class SerialScanner:
    """Read `port` (a device path or pyserial URL) line by line until `close`."""

    def __init__(
        self,
        port: str,
        on_payload: Callable[[str], None],
        *,
        baud: int = 9600,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._port_name = port
        self._baud = baud
        self._on_payload = on_payload
        self._loop = loop
        self._stop = threading.Event()
        self.opened = threading.Event()  # set while the port is open (pyserial flushes on open)
        self._thread: threading.Thread | None = None
        self.lines_read = 0
        self.lines_dropped = 0

    def start(self) -> SerialScanner:
        """Start reading (call on the loop that gets the payloads)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="kiosk-scanner", daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """Whether the reading thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                port = serial.serial_for_url(
                    self._port_name, baudrate=self._baud, timeout=READ_TIMEOUT_S
                )
            except (serial.SerialException, OSError) as err:
                log.warning("kiosk: cannot open the scanner at %s: %s", self._port_name, err)
                self._stop.wait(REOPEN_S)
                continue
            self.opened.set()
            try:
                self._read(port)
            except (serial.SerialException, OSError) as err:
                log.warning("kiosk: the scanner at %s failed: %s", self._port_name, err)
                self._stop.wait(REOPEN_S)
            finally:
                self.opened.clear()
                port.close()

    def _read(self, port: serial.SerialBase) -> None:
        buffer = bytearray()
        while not self._stop.is_set():
            chunk = port.read(max(1, port.in_waiting))
            if not chunk:
                continue
            buffer += chunk
            *lines, rest = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
            buffer = bytearray(rest)
            if len(buffer) > MAX_LINE_BYTES:
                self.lines_dropped += 1
                buffer.clear()
            for line in lines:
                self._hand_over(line)

    def _hand_over(self, line: bytes) -> None:
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            text = ""
        if not text or not text.isprintable():
            if line.strip():
                self.lines_dropped += 1
            return
        self.lines_read += 1
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._on_payload, text)
