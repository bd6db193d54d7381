"""The simulator through pyserial over a real pty, as the cabinet daemon meets it."""

import os
import termios
import time

import pytest
import serial

from firmware_sim import BoardConfig, ConfigError, PtyServer, SimulatedBus
from protocol.lockboard.common import LOCK_CLOSED, LOCK_OPEN
from protocol.lockboard.family_8a import (
    AllStatus,
    LockStatus,
    Query,
    QueryAll,
    ReplyDecoder,
    StateReport,
    Unlock,
    encode,
)
from tests.firmware_sim.conftest import FAST, read_exactly, wait_for

QUERY_1 = encode(Query(1, 1))
CLOSED_1 = encode(LockStatus(1, 1, LOCK_CLOSED))


def test_the_golden_unlock_exchange(port):
    port.write(bytes.fromhex("8A 01 01 11 9B"))
    assert read_exactly(port, 5) == bytes.fromhex("8A 01 01 00 8A")


def test_query_all_after_a_door_opens(served, port):
    port.write(encode(Unlock(1, 1)))
    read_exactly(port, 5)
    port.write(encode(QueryAll(1)))
    assert read_exactly(port, 7) == bytes.fromhex("80 01 FF FF FE 33 4C")
    assert served.bus.board(1).saw("door_opened", 1)


def test_xon_and_xoff_bytes_pass_through_untouched(served, port):
    # 0x11 (XON) is in every unlock request and closed reply; a cooked tty would eat it.
    port.write(QUERY_1)
    assert read_exactly(port, 5) == CLOSED_1
    served.bus.faults.inject(b"\x11\x13\x11\x13\r\n")
    assert read_exactly(port, 6) == b"\x11\x13\x11\x13\r\n"
    port.write(b"\x13\x13\r" + QUERY_1)  # XOFF and CR on the way in, as garbage
    assert read_exactly(port, 5) == CLOSED_1
    wait_for(lambda: served.bus.decoder.stats.garbage_bytes == 3)


def test_both_ends_of_the_pty_are_raw(served):
    fd = os.open(served.path, os.O_RDWR | os.O_NOCTTY)
    try:
        iflag, oflag, _, lflag = termios.tcgetattr(fd)[:4]
    finally:
        os.close(fd)
    assert not iflag & (termios.IXON | termios.IXOFF | termios.ICRNL | termios.INLCR)
    assert not oflag & termios.OPOST
    assert not lflag & (termios.ECHO | termios.ICANON | termios.ISIG)


def test_a_client_may_close_and_reopen_the_port(served):
    for _ in range(3):
        with serial.Serial(served.path, 9600, timeout=0.5) as client:
            client.write(QUERY_1)
            assert read_exactly(client, 5) == CLOSED_1


def test_the_link_points_at_the_pty_and_goes_on_close(tmp_path):
    link = tmp_path / "ttyLOCK"
    bus = SimulatedBus([BoardConfig(address=1)], **FAST)
    with PtyServer(bus, link=link) as server:
        assert os.readlink(link) == server.path
        with serial.Serial(str(link), 9600, timeout=0.5) as client:
            client.write(QUERY_1)
            assert read_exactly(client, 5) == CLOSED_1
    assert not link.is_symlink()


def test_a_stale_link_is_replaced_but_a_real_file_is_not(tmp_path):
    link = tmp_path / "ttyLOCK"
    link.symlink_to("/dev/pts/nonexistent")
    bus = SimulatedBus([BoardConfig(address=1)], **FAST)
    with PtyServer(bus, link=link) as server:
        assert os.readlink(link) == server.path
    blocker = tmp_path / "ttyREAL"
    blocker.write_text("not a link")
    server = PtyServer(bus, link=blocker)
    with pytest.raises(ConfigError, match="not a symlink"):
        server.start()
    server.close()
    assert blocker.read_text() == "not a link"


# --- faults, as a client sees them ---------------------------------------------------------


def test_a_silent_board_gives_a_read_timeout(served, port):
    served.bus.faults.silence(1)
    port.timeout = 0.2
    port.write(QUERY_1)
    assert port.read(5) == b""


def test_a_corrupted_reply_is_counted_as_a_bad_checksum(served, port):
    served.bus.faults.corrupt(1, mode="checksum", count=1)
    decoder = ReplyDecoder()
    decoder.expect(Query(1, 1))
    port.write(QUERY_1)
    assert decoder.feed(read_exactly(port, 5)) == []
    assert decoder.stats.bad_checksum == 1


def test_a_truncated_reply_leaves_a_partial_frame(served, port):
    served.bus.faults.corrupt(1, mode="truncate", count=1)
    port.timeout = 0.2
    port.write(QUERY_1)
    data = port.read(5)
    assert data == CLOSED_1[:3]
    decoder = ReplyDecoder()
    decoder.expect(Query(1, 1))
    assert decoder.feed(data) == []
    assert decoder.flush() == 3


def test_a_slow_reply_arrives_only_after_its_delay(served, port):
    served.bus.faults.slow(1, delay_s=0.3)
    port.timeout = 0.1
    started = time.monotonic()
    port.write(QUERY_1)
    assert port.read(5) == b""
    assert read_exactly(port, 5) == CLOSED_1
    assert time.monotonic() - started >= 0.3


def test_a_reply_one_byte_at_a_time(served, port):
    served.bus.faults.byte_at_a_time(1, gap_s=0.05)
    decoder = ReplyDecoder()
    decoder.expect(Query(1, 1))
    port.write(QUERY_1)
    reads, frames = [], []
    while len(reads) < 5:
        data = port.read(max(1, port.in_waiting))
        assert data, "a byte went missing"
        reads.append(data)
        frames += decoder.feed(data)
    assert [len(data) for data in reads] == [1, 1, 1, 1, 1]
    assert frames == [LockStatus(1, 1, LOCK_CLOSED)]


def test_garbage_on_the_line_is_skipped_by_the_decoder(served, port):
    served.bus.faults.garbage(b"\x00\xff\x55\x13", count=1)
    decoder = ReplyDecoder()
    decoder.expect(Query(1, 1))
    port.write(QUERY_1)
    assert decoder.feed(read_exactly(port, 9)) == [LockStatus(1, 1, LOCK_CLOSED)]
    assert decoder.stats.garbage_bytes == 4


def test_power_off_and_back_on(served, port):
    served.bus.faults.power_off(1)
    port.timeout = 0.2
    port.write(encode(Unlock(1, 2)))
    assert port.read(5) == b""
    served.bus.faults.power_on(1)
    port.write(encode(Query(1, 2)))
    assert read_exactly(port, 5) == encode(LockStatus(1, 2, LOCK_CLOSED))


def test_a_reporting_board_tells_the_client_unasked():
    bus = SimulatedBus([BoardConfig(address=2, sends_reports=True)], **FAST)
    with PtyServer(bus) as server, serial.Serial(server.path, 9600, timeout=0.5) as client:
        bus.person.force_door(2, 5)
        decoder = ReplyDecoder()
        decoder.expect(None)
        assert decoder.feed(read_exactly(client, 5)) == [StateReport(2, 5, LOCK_OPEN)]


def test_wire_time_makes_a_query_all_take_its_bytes_on_the_wire():
    bus = SimulatedBus(
        [BoardConfig(address=1, channels=48, baud=1200)], pulse_s=0.0, query_reply_s=0.0
    )
    with (
        PtyServer(bus, baud=1200, wire_time=True) as server,  # 8.3 ms per byte
        serial.Serial(server.path, 1200, timeout=1) as client,
    ):
        started = time.monotonic()
        client.write(encode(QueryAll(1)))
        reply = read_exactly(client, 10)
        elapsed_s = time.monotonic() - started
    assert reply == encode(AllStatus(1, b"\xff" * 6))
    assert elapsed_s >= 15 * 10 / 1200  # 5 bytes in, 10 bytes out
