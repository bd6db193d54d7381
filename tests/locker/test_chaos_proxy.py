"""The campaign's TCP proxy: what passes, what a cut does to live and new connections."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from locker.chaos.proxy import Proxy


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
