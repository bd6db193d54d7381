"""A paho client that reads the broker's bytes in one `recv` per burst, not one per header byte.

paho 2.x reads each packet's fixed header a byte at a time (`_sock_recv(1)` for the type, then
one per remaining-length byte) and the rest in a third call: three or four `recv` system calls
for a 4-byte PUBACK, about a dozen for the four packets a handled deposit costs the worker.
`BufferedClient` gives paho a socket that takes what the kernel holds in one `recv` and hands
it out as paho asks. paho's loop already asks a TLS socket for `pending()` bytes before it waits
in `select`, so bytes left in the buffer are read at once, never stranded behind a quiet socket;
the wrapper answers `pending()` the same way. TLS and WebSocket transports are left as paho
makes them (an SSL socket already reads whole records).

It also wakes paho's network thread less. paho 2.x writes a byte to a socket pair for every
packet it queues, so that the thread, waiting in `select`, sends it: a system call per packet,
and one more (and a turn of the loop) to read it back. Packets paho queues on its own thread
(the PUBACK of each message received, pings) need no wake-up, since the loop checks for queued
packets before it waits again; and publishes made inside `burst()` (what the worker publishes
after one commit) wake it once, at the end.

And it writes what one turn of paho's loop has to send in one `send`: paho sends each packet
with a call of its own, so a burst of a few dozen `codes.put` and `event-ack` publishes (and the
PUBACKs of what arrived) was as many system calls. During `loop_write` the socket gathers what
paho sends, then sends it together; bytes the kernel did not take yet are kept, in order, and
`want_write()` says so, so paho's loop comes back to send them when the socket is writable.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt

READ_SIZE = 64 * 1024


class BufferedSocket:
    """A non-blocking TCP socket whose `recv` is served from one read of up to READ_SIZE, and
    whose `send`s, while gathering (or behind bytes still unsent), go out in one `flush`."""

    def __init__(self, raw: socket.socket) -> None:
        self.raw = raw
        self._data = b""
        self._at = 0
        self.gathering = False
        self._unsent = bytearray()

    def send(self, data: bytes | bytearray | memoryview) -> int:
        if self.gathering or self._unsent:  # behind what waits: after it, never before
            self._unsent += data
            return len(data)
        return self.raw.send(data)

    def unsent(self) -> int:
        """Bytes paho counts as sent that the kernel has not taken yet."""
        return len(self._unsent)

    def flush(self) -> None:
        """Send what was gathered, as much as the kernel takes now; raise OSError if the
        connection is lost (BlockingIOError is not raised: the rest waits for writability)."""
        self.gathering = False
        while self._unsent:
            try:
                sent = self.raw.send(self._unsent)
            except BlockingIOError:
                return
            del self._unsent[:sent]

    def close(self) -> None:
        # paho closes the socket right after writing a DISCONNECT: that one must go out first.
        with contextlib.suppress(OSError):
            self.flush()
        self.raw.close()

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

    def __getattr__(self, name: str) -> Any:  # fileno, setblocking, setsockopt...
        return getattr(self.raw, name)


class BufferedClient(mqtt.Client):
    """paho's client, with plain TCP sockets read through `BufferedSocket`, and its network
    thread woken once per burst of publishes, not once per packet."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bursts = threading.local()  # per publishing thread: held, and whether any queued

    @contextmanager
    def burst(self) -> Iterator[None]:
        """Publishes made in this thread inside the block wake paho's loop once, as it ends;
        they go out then, in the order they were made."""
        state = self._bursts
        if getattr(state, "held", False):  # nested: the outer burst wakes the loop
            yield
            return
        state.held, state.queued = True, False
        try:
            yield
        finally:
            state.held = False
            if state.queued:
                self._wake_loop()

    def _wake_loop(self) -> None:
        wake = self._sockpairW
        if wake is not None:
            # Full: the loop has wake-ups enough waiting.
            with contextlib.suppress(BlockingIOError):
                wake.send(b"\0")

    def _packet_queue(
        self,
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: mqtt.MQTTMessageInfo | None = None,
    ) -> mqtt.MQTTErrorCode:
        network = self._thread  # None: no loop thread, paho writes at once itself
        held = getattr(self._bursts, "held", False)
        if network is None or not (held or network.ident == threading.get_ident()):
            return super()._packet_queue(command, packet, mid, qos, info)
        # As paho queues it, less the wake-up byte: paho's own thread finds the packet through
        # `want_write()` before it waits again; a burst wakes it when it ends.
        self._out_packet.append(
            {
                "command": command,
                "mid": mid,
                "qos": qos,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": info,
            }
        )
        if held:
            self._bursts.queued = True
        self._call_socket_register_write()
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        # paho reads one packet a call while none of our publishes awaits its PUBACK (a turn of
        # its loop, a `select`, and a `send` of that one packet's PUBACK, per message received):
        # read on while the last `recv` left whole bytes here, so their PUBACKs go out together.
        sock = self._sock
        rc = super().loop_read(max_packets)
        while (
            rc == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
            and isinstance(sock, BufferedSocket)
            and self._sock is sock
            and sock.pending() > 0
        ):
            rc = super().loop_read(max_packets)
        return rc

    def loop_write(self) -> mqtt.MQTTErrorCode:
        sock = self._sock
        if not isinstance(sock, BufferedSocket):
            return super().loop_write()
        sock.gathering = True
        try:
            rc = super().loop_write()
        finally:
            sock.gathering = False
        if self._sock is sock:  # not closed meanwhile (a DISCONNECT closes it, flushed)
            try:
                sock.flush()
            except OSError:  # as paho's own send would have found it
                return self._loop_rc_handle(mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST)
        return rc

    def want_write(self) -> bool:
        sock = self._sock
        return super().want_write() or (isinstance(sock, BufferedSocket) and sock.unsent() > 0)

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if isinstance(sock, socket.socket) and not self._ssl:
            return BufferedSocket(sock)
        return sock
