"""The campaign's TCP proxy: what passes, what a cut does to live and new connections."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from locker.chaos.proxy import Proxy, split_mqtt


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(1024):
            self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = Proxy("echo", server.server_address[1]).start()
    yield proxy
    proxy.stop()
    server.shutdown()
    server.server_close()


def _connect(proxy: Proxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=2)


def _echo(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return sock.recv(1024)


def test_bytes_pass_both_ways_and_a_delay_only_slows_them(proxy: Proxy) -> None:
    with _connect(proxy) as sock:
        assert _echo(sock, b"ping") == b"ping"
        proxy.set_mode("delay", 0.05)
        assert _echo(sock, b"slow") == b"slow"


def test_refuse_resets_live_connections_and_turns_new_ones_away_until_healed(
    proxy: Proxy,
) -> None:
    live = _connect(proxy)
    assert _echo(live, b"a") == b"a"
    proxy.set_mode("refuse")
    with pytest.raises(OSError):  # reset, or closed: either way the client sees it go
        if not _echo(live, b"b"):
            raise ConnectionResetError("closed")
    live.close()
    with _connect(proxy) as sock, pytest.raises(OSError):
        if not _echo(sock, b"c"):
            raise ConnectionResetError("closed")
    proxy.heal()
    with _connect(proxy) as sock:
        assert _echo(sock, b"d") == b"d"


def test_a_stall_holds_the_bytes_and_healing_lets_them_through(proxy: Proxy) -> None:
    with _connect(proxy) as sock:
        proxy.set_mode("stall")
        sock.sendall(b"held")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1024)
        proxy.heal()
        sock.settimeout(2)
        assert sock.recv(1024) == b"held"


def test_an_unknown_mode_is_refused_with_the_modes_named(proxy: Proxy) -> None:
    with pytest.raises(ValueError, match="pass, delay, stall, refuse"):
        proxy.set_mode("drop")


def _publish(topic: bytes, payload: bytes, qos: int, packet_id: int = 7) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += packet_id.to_bytes(2, "big")
    body += payload
    length, size = b"", len(body)
    while True:  # the remaining length: 7 bits a byte, the high bit saying more follow
        size, digit = divmod(size, 128)
        length += bytes([digit | (0x80 if size else 0)])
        if not size:
            return bytes([0x30 | qos << 1]) + length + body


def test_mqtt_packets_are_cut_whole_from_a_stream_that_splits_them() -> None:
    big = _publish(b"t", b"x" * 300, qos=1)  # a two-byte remaining length
    stream = bytearray(_publish(b"a", b"1", qos=0) + big[:5])
    assert split_mqtt(stream) == [_publish(b"a", b"1", qos=0)]
    stream += big[5:] + bytes([0xC0, 0x00])  # the rest, then a PINGREQ
    assert split_mqtt(stream) == [big, bytes([0xC0, 0x00])]
    assert stream == bytearray()


def test_duplicate_resends_each_publish_with_its_dup_flag_and_nothing_else(
    proxy: Proxy,
) -> None:
    proxy.mqtt = True
    proxy.set_mode("duplicate")
    qos1, qos0, ping = _publish(b"e", b"ev", qos=1), _publish(b"c", b"x", qos=0), b"\xc0\x00"
    with _connect(proxy) as sock:
        sock.sendall(qos1 + ping + qos0)
        resent = bytes([qos1[0] | 0x08]) + qos1[1:]
        # The echo server hears each PUBLISH twice and echoes both, which come back twice each.
        want = qos1 + resent + resent + resent + ping + qos0 * 4
        got = b""
        while len(got) < len(want):
            got += sock.recv(1024)
    assert got == want
    assert proxy.duplicated == 6


def test_a_plain_proxy_refuses_to_duplicate(proxy: Proxy) -> None:
    with pytest.raises(ValueError, match="does not speak MQTT"):
        proxy.set_mode("duplicate")
