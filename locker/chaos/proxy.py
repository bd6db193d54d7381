"""A TCP proxy whose link can be cut: what a flaky network does to one client's connections.

Each process the nemesis may cut off (a cabinet daemon, a cloud worker, every cloud process's
PostgreSQL connections) reaches its server through a proxy of its own on a loopback port. The
proxy runs an asyncio loop in a thread and has four modes:

- `pass`:   bytes flow both ways;
- `delay`:  each chunk is held `delay_s` before it is forwarded (a congested link);
- `stall`:  connections stay open but nothing flows (a half-dead link: only keepalives notice);
- `refuse`: every live connection is reset and new ones are closed at once (a cut cable, a
            server that refuses connections);
- `duplicate` (MQTT proxies only): every PUBLISH packet is forwarded twice, the copy with its
            DUP flag set when its QoS is above 0 (what a client or broker that resends after a
            lost ack does): the cloud sees duplicate events, a cabinet duplicate commands.

An MQTT proxy (`mqtt=True`) forwards whole MQTT control packets, cut from the byte stream by
their fixed header (type and flags, then the remaining length's variable-length integer), so a
PUBLISH can be told from the rest; a plain one forwards chunks as they come.

Healing (`pass`) lets new connections through; the stalled ones flow again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future

from locker.harness.ports import HOST

MODES = ("pass", "delay", "stall", "refuse", "duplicate")
CHUNK = 65536
PUBLISH = 3  # the MQTT control packet type of a PUBLISH
DUP_FLAG = 0x08


def split_mqtt(buffer: bytearray) -> list[bytes]:
    """Cut the complete MQTT control packets off the front of `buffer` (left with the rest)."""
    packets = []
    while len(buffer) >= 2:
        length, multiplier, at = 0, 1, 1
        while True:
            if at >= len(buffer):
                return packets  # the remaining length is not all here yet
            byte = buffer[at]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            at += 1
            if not byte & 0x80:
                break
            if at > 4:
                raise ValueError("malformed MQTT remaining length")
        end = at + length
        if len(buffer) < end:
            return packets
        packets.append(bytes(buffer[:end]))
        del buffer[:end]
    return packets


def duplicate_of(packet: bytes) -> bytes | None:
    """The copy a resend would put on the wire, for a PUBLISH; None for any other packet."""
    if packet[0] >> 4 != PUBLISH:
        return None
    qos = (packet[0] >> 1) & 0x03
    first = packet[0] | DUP_FLAG if qos > 0 else packet[0]
    return bytes([first]) + packet[1:]


class Proxy:
    """Listens on `HOST:port` and forwards to `target_host:target_port` in the current mode."""

    def __init__(
        self, name: str, target_port: int, *, target_host: str = HOST, mqtt: bool = False
    ) -> None:
        self.name = name
        self.mqtt = mqtt
        self.duplicated = 0  # PUBLISH packets sent twice, for the report
        self.target = (target_host, target_port)
        self.port = 0
        self.mode = "pass"
        self.delay_s = 0.0
        self.connections = 0  # accepted so far, for the report
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing: asyncio.Event | None = None

    @property
    def url_host_port(self) -> tuple[str, int]:
        return HOST, self.port

    def start(self) -> Proxy:
        started: Future[None] = Future()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name=f"proxy-{self.name}", daemon=True
        )
        self._thread.start()
        started.result(timeout=10)
        return self

    def _run(self, started: Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            self._flowing = asyncio.Event()
            self._flowing.set()
            self._server = await asyncio.start_server(self._accept, HOST, 0)
            self.port = self._server.sockets[0].getsockname()[1]

        try:
            loop.run_until_complete(boot())
        except Exception as err:
            started.set_exception(err)
            return
        started.set_result(None)
        loop.run_forever()
        loop.close()

    def set_mode(self, mode: str, delay_s: float = 0.0) -> None:
        """Switch modes; from any thread. `refuse` resets every live connection now."""
        if mode not in MODES:
            raise ValueError(f"a proxy mode is one of {', '.join(MODES)}, not {mode!r}")
        if mode == "duplicate" and not self.mqtt:
            raise ValueError(f"proxy {self.name} does not speak MQTT: it cannot duplicate")
        loop = self._loop
        assert loop is not None
        done: Future[None] = Future()

        def switch() -> None:
            self.mode, self.delay_s = mode, delay_s
            assert self._flowing is not None
            if mode == "stall":
                self._flowing.clear()
            else:
                self._flowing.set()
            if mode == "refuse":
                for writer in list(self._writers):
                    _reset(writer)
            done.set_result(None)

        loop.call_soon_threadsafe(switch)
        done.result(timeout=10)

    def heal(self) -> None:
        self.set_mode("pass")

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter):
        self.connections += 1
        if self.mode == "refuse":
            _reset(client_w)
            return
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(client_w)
            return
        self._writers |= {client_w, server_w}
        try:
            await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))
        finally:
            for writer in (client_w, server_w):
                self._writers.discard(writer)
                with contextlib.suppress(Exception):
                    writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        pending = bytearray()
        try:
            while chunk := await reader.read(CHUNK):
                await self._flowing.wait()
                if self.mode == "delay" and self.delay_s > 0:
                    await asyncio.sleep(self.delay_s)
                if self.mode == "refuse":
                    break
                if not self.mqtt:
                    writer.write(chunk)
                else:
                    pending += chunk
                    for packet in split_mqtt(pending):
                        writer.write(packet)
                        if self.mode == "duplicate" and (copy := duplicate_of(packet)):
                            self.duplicated += 1
                            writer.write(copy)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            # One side ended: end the other, as a TCP connection through a NAT would.
            _reset(writer)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                _reset(writer)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._loop = self._thread = None


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close a connection at once, with a RST rather than a FIN where the socket allows it."""
    transport = writer.transport
    with contextlib.suppress(Exception):
        transport.abort()
