"""A paho client that reads the broker's bytes in one `recv` per burst, not one per header byte.

paho 2.x reads each packet's fixed header a byte at a time (`_sock_recv(1)` for the type, then
one per remaining-length byte) and the rest in a third call: three or four `recv` system calls
for a 4-byte PUBACK, about a dozen for the four packets a handled deposit costs the worker.
`BufferedClient` gives paho a socket that takes what the kernel holds in one `recv` and hands
it out as paho asks. paho's loop already asks a TLS socket for `pending()` bytes before it waits
in `select`, so bytes left in the buffer are read at once, never stranded behind a quiet socket;
the wrapper answers `pending()` the same way. TLS and WebSocket transports are left as paho
makes them (an SSL socket already reads whole records).
"""

from __future__ import annotations

import socket
from typing import Any

import paho.mqtt.client as mqtt

READ_SIZE = 64 * 1024


class BufferedSocket:
    """A non-blocking TCP socket whose `recv` is served from one read of up to READ_SIZE."""

    def __init__(self, raw: socket.socket) -> None:
        self.raw = raw
        self._data = b""
        self._at = 0

    def recv(self, bufsize: int) -> bytes:
        if self._at >= len(self._data):
            data = self.raw.recv(max(bufsize, READ_SIZE))  # BlockingIOError, b"": as paho expects
            if len(data) <= bufsize:
                return data
            self._data, self._at = data, 0
        start = self._at
        self._at = min(start + bufsize, len(self._data))
        return self._data[start : self._at]

    def pending(self) -> int:
        """Bytes read from the kernel that paho has not taken yet."""
        return len(self._data) - self._at

    def __getattr__(self, name: str) -> Any:  # send, fileno, close, setblocking, setsockopt...
        return getattr(self.raw, name)


class BufferedClient(mqtt.Client):
    """paho's client, with plain TCP sockets read through `BufferedSocket`."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if isinstance(sock, socket.socket) and not self._ssl:
            return BufferedSocket(sock)
        return sock
