"""The worker's buffered paho socket: one recv per burst, every byte handed out in order."""

from __future__ import annotations

import socket

import paho.mqtt.client as mqtt
import pytest

from cloud.worker.mqtt_socket import BufferedClient, BufferedSocket

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


def test_gathered_sends_go_out_together_in_order_at_the_flush() -> None:
    ours, broker = socket.socketpair()
    with ours, broker:
        ours.setblocking(False)
        broker.setblocking(False)
        sock = BufferedSocket(ours)
        sock.gathering = True  # as during paho's loop_write
        for packet in (PUBACKS[:4], PUBACKS[4:8], PUBACKS[8:]):
            assert sock.send(packet) == 4  # paho counts each as sent
        with pytest.raises(BlockingIOError):  # nothing on the wire yet
            broker.recv(100)
        sock.flush()
        assert broker.recv(100) == PUBACKS and sock.unsent() == 0
        assert not sock.gathering
        sock.send(b"now")  # outside loop_write, nothing waiting: straight through
        assert broker.recv(100) == b"now"


def test_what_the_kernel_does_not_take_waits_in_order_and_a_close_sends_it() -> None:
    ours, broker = socket.socketpair()
    with broker:
        ours.setblocking(False)
        sock = BufferedSocket(ours)
        big = bytes(range(256)) * 16384  # 4 MiB: more than a socket pair buffers
        sock.gathering = True
        sock.send(big)
        sock.flush()
        assert 0 < sock.unsent() < len(big)  # the rest waits for writability
        sock.send(b"tail")  # behind what waits, never before it
        got = bytearray()
        while sock.unsent():
            got += broker.recv(1 << 20)
            sock.flush()
        sock.send(b"!")
        sock.close()  # flushes first, as paho closes right after a DISCONNECT
        while chunk := broker.recv(1 << 20):
            got += chunk
        assert bytes(got) == big + b"tail!"


def test_one_turn_of_paho_s_loop_reads_every_packet_one_recv_brought() -> None:
    """Their PUBACKs then go out together; paho alone reads one packet a turn (a `select` and a
    `send` each) while none of our publishes awaits a PUBACK."""
    client = BufferedClient(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311
    )
    ours, broker = socket.socketpair()
    with ours, broker:
        ours.setblocking(False)
        sock = BufferedSocket(ours)
        client._sock = sock
        broker.sendall(PUBACKS)  # three packets, read by one recv
        assert client.loop_read() == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        assert sock.pending() == 0
        with pytest.raises(BlockingIOError):  # all three were taken from the kernel too
            ours.recv(1)
        client._sock = None
