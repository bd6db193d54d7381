"""The worker's buffered paho socket: one recv per burst, every byte handed out in order."""

from __future__ import annotations

import socket

import pytest

from cloud.worker.mqtt_socket import BufferedSocket

PUBACKS = b"".join(bytes([0x40, 0x02, 0x00, n]) for n in range(1, 4))  # three 4-byte PUBACKs


def test_paho_s_byte_by_byte_reads_are_served_from_one_recv_in_order() -> None:
    ours, broker = socket.socketpair()
    with ours, broker:
        ours.setblocking(False)
        sock = BufferedSocket(ours)
        broker.sendall(PUBACKS)
        got = b""
        for _ in range(3):  # as paho reads a packet: type byte, length byte, then the rest
            header = sock.recv(1) + sock.recv(1)
            got += header + sock.recv(header[1])
        assert got == PUBACKS
        assert sock.pending() == 0
        with pytest.raises(BlockingIOError):  # nothing left: paho waits in select again
            sock.recv(1)


def test_pending_bytes_tell_paho_to_read_again_and_a_closed_peer_reads_empty() -> None:
    ours, broker = socket.socketpair()
    with ours:
        ours.setblocking(False)
        sock = BufferedSocket(ours)
        broker.sendall(PUBACKS)
        assert sock.recv(4) == PUBACKS[:4]
        assert sock.pending() == 8  # paho's loop skips select's wait while this is > 0
        assert sock.fileno() == ours.fileno()  # select watches the real socket
        broker.close()
        assert sock.recv(8) == PUBACKS[4:]
        assert sock.recv(1) == b""  # the connection is lost, as paho expects to see it


def test_a_read_larger_than_the_buffer_passes_straight_through() -> None:
    ours, broker = socket.socketpair()
    with ours, broker:
        ours.setblocking(False)
        sock = BufferedSocket(ours)
        broker.sendall(b"x" * 100)
        assert sock.recv(200_000) == b"x" * 100 and sock.pending() == 0
