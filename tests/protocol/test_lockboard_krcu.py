"""The Kerong KR-CU16 codec against the spec's frames, held to the byte.

The page: docs/lockboard.md#the-second-family-kerong-kr-cu16.

The request vectors are the spec's own table. No KR-CU capture exists here: the status-reply
vectors are built by hand from the spec's field layout (D1/D2 locks, D3/D4 sensors, SUM), and
say so.
"""

import pytest

from protocol.errors import FrameError
from protocol.lockboard.common import Polarity
from protocol.lockboard.family_krcu import (
    PulseQuery,
    ReplyDecoder,
    RequestDecoder,
    Status,
    StatusAll,
    StatusReply,
    Unlock,
    UnlockAll,
    encode,
    is_reply_to,
)

SPEC_REQUESTS = [
    ("status, board 1", Status(1), "02 00 30 03 35"),
    ("unlock board 1, lock 1", Unlock(1, 1), "02 00 31 03 36"),
    ("unlock board 2, lock 5", Unlock(2, 5), "02 14 31 03 4A"),
    ("status of every board", StatusAll(), "02 F0 32 03 27"),
    ("unlock every lock of board 1", UnlockAll(1), "02 00 33 03 38"),
    ("query the unlock pulse, board 1", PulseQuery(1), "02 00 37 03 3C"),
]

# Built from the spec's layout by hand (sum worked out on paper), not captured from a board.
HAND_REPLIES = [
    # board 1: lock 1 open (bit clear), locks 2-16 latched; sensor 3 sees a parcel
    ("status board 1, lock 1 open, parcel in 3", "02 00 35 FE FF 04 00 03 3B"),
    # board 2: every lock latched, every compartment empty
    ("status board 2, all shut and empty", "02 10 35 FF FF 00 00 03 48"),
]


@pytest.mark.parametrize(
    ("what", "frame", "wire"), SPEC_REQUESTS, ids=[r[0] for r in SPEC_REQUESTS]
)
def test_requests_encode_and_decode_to_the_byte(what: str, frame: object, wire: str) -> None:
    data = bytes.fromhex(wire)
    assert encode(frame) == data, what  # type: ignore[arg-type]
    assert RequestDecoder().feed(data) == [frame]


def test_a_status_reply_reads_locks_and_sensors() -> None:
    data = bytes.fromhex(HAND_REPLIES[0][1])
    [reply] = ReplyDecoder().feed(data)
    assert reply == StatusReply(1, locks=0xFFFE, sensors=0x0004)
    assert not reply.latched(1) and reply.latched(2) and reply.latched(16)
    assert reply.occupied(3) and not reply.occupied(1)
    # the sensors' polarity is uncertain: a board that clears the bit for an object reads inverted
    assert not reply.occupied(3, Polarity.INVERTED) and reply.occupied(1, Polarity.INVERTED)
    built = StatusReply.from_state(1, [False] + [True] * 15, [False, False, True] + [False] * 13)
    assert encode(built) == data


def test_replies_survive_garbage_split_reads_and_bad_sums() -> None:
    good = [bytes.fromhex(w) for _, w in HAND_REPLIES]
    bad = bytearray(good[0])
    bad[-1] ^= 0xFF
    stream = b"\x00\xff" + bytes(bad) + good[0] + b"\x02\x10" + good[1]
    decoder = ReplyDecoder()
    frames = []
    for byte in stream:
        frames += decoder.feed(bytes([byte]))
    assert [encode(f) for f in frames] == good
    assert decoder.stats.bad_checksum == 1
    assert decoder.stats.garbage_bytes + decoder.stats.malformed >= 3


def test_echo_of_the_request_is_dropped() -> None:
    decoder = ReplyDecoder(echo=True)
    decoder.expect(Status(2))
    reply = bytes.fromhex(HAND_REPLIES[1][1])
    assert decoder.feed(encode(Status(2)) + reply) == [StatusReply(2, 0xFFFF, 0)]


def test_which_reply_answers_which_request() -> None:
    reply = StatusReply(2, 0xFFFF, 0)
    assert is_reply_to(Status(2), reply)
    assert is_reply_to(Unlock(2, 5), reply)  # boards that answer an unlock send their status
    assert not is_reply_to(Status(1), reply)
    assert is_reply_to(StatusAll(), reply)


@pytest.mark.parametrize(
    "wire",
    [
        "02 F0 30 03 25",  # status addressed to the bus
        "02 01 30 03 36",  # status with a lock nibble
        "02 00 34 03 39",  # no such command
        "02 00 30 04 36",  # no ETX
    ],
)
def test_malformed_requests_are_refused(wire: str) -> None:
    decoder = RequestDecoder()
    assert decoder.feed(bytes.fromhex(wire)) == []
    assert decoder.stats.malformed + decoder.stats.bad_checksum >= 1


def test_out_of_range_frames_raise() -> None:
    with pytest.raises(FrameError):
        Status(16)  # its ADDR would be F0, the whole bus
    with pytest.raises(FrameError):
        Unlock(1, 17)
