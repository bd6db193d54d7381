"""Golden bytes of every frame in docs/lockboard.md#golden-frames, held to the byte both ways.

These come from the spec, not from our encoder, so a codec bug shared by the cabinet's driver
and the simulator still fails here.
"""

import pytest

from protocol.errors import FrameError
from protocol.lockboard.common import LOCK_CLOSED, LOCK_OPEN, Polarity
from protocol.lockboard.family_8a import (
    HEAD_UNLOCK,
    AddressReply,
    AllStatus,
    Hold,
    LockStatus,
    Query,
    QueryAll,
    ReadAddress,
    ReplyDecoder,
    RequestDecoder,
    StateReport,
    Unlock,
    UnlockAll,
    UnlockMany,
    encode,
    is_reply_to,
)

# (what, frame, the bytes docs/lockboard.md gives, what the host has in flight when a reply arrives)
REQUESTS = [
    ("unlock board 1 lock 1", Unlock(1, 1), "8A 01 01 11 9B"),
    ("unlock all on board 1", UnlockAll(1), "8A 01 00 11 9A"),
    ("query board 1 lock 1", Query(1, 1), "80 01 01 33 B3"),
    ("query all on board 1", QueryAll(1), "80 01 00 33 B2"),
    ("read address", ReadAddress(), "80 01 00 99 18"),
    (
        "unlock locks 2, 10 and 18 of board 1",
        UnlockMany(1, frozenset({2, 10, 18})),
        "90 01 02 02 02 93",
    ),
    ("hold lock 1 of board 1 open", Hold(1, 1, on=True), "9A 01 01 11 8B"),
    ("stop holding lock 1 of board 1", Hold(1, 1, on=False), "9B 01 01 11 8A"),
]

REPLIES = [
    ("unlock reply, released", LockStatus(1, 1, LOCK_OPEN, head=HEAD_UNLOCK), "8A 01 01 00 8A", Unlock(1, 1)),
    ("unlock reply, released, head-80 variant", LockStatus(1, 1, LOCK_OPEN), "80 01 01 00 80", Unlock(1, 1)),
    ("query one reply, closed", LockStatus(1, 1, LOCK_CLOSED), "80 01 01 11 91", Query(1, 1)),
    ("query all reply, 24 channels, locks 2 and 10 open", AllStatus(1, bytes.fromhex("FFFDFD")), "80 01 FF FD FD 33 4D", QueryAll(1)),
    ("query all reply, 24 channels, lock 1 open", AllStatus(1, bytes.fromhex("FFFFFE")), "80 01 FF FF FE 33 4C", QueryAll(1)),
    ("query all reply, 32 channels, all closed", AllStatus(1, bytes.fromhex("FFFFFFFF")), "80 01 FF FF FF FF 33 B2", QueryAll(1)),
    ("read address reply, address 5", AddressReply(5), "80 01 05 99 1D", ReadAddress()),
    ("state report: board 2 lock 5 opened", StateReport(2, 5, LOCK_OPEN), "82 02 05 00 85", None),
]  # fmt: skip


@pytest.mark.parametrize(("what", "frame", "wire"), REQUESTS, ids=[r[0] for r in REQUESTS])
def test_request_encodes_and_decodes_to_the_golden_bytes(what, frame, wire):
    assert encode(frame) == bytes.fromhex(wire)
    assert RequestDecoder().feed(bytes.fromhex(wire)) == [frame]


@pytest.mark.parametrize(
    ("what", "frame", "wire", "in_flight"), REPLIES, ids=[r[0] for r in REPLIES]
)
def test_reply_encodes_and_decodes_to_the_golden_bytes(what, frame, wire, in_flight):
    assert encode(frame) == bytes.fromhex(wire)
    decoder = ReplyDecoder()
    decoder.expect(in_flight)
    assert decoder.feed(bytes.fromhex(wire)) == [frame]
    if in_flight is not None:
        assert is_reply_to(in_flight, frame)


def test_query_all_reply_reads_locks_2_and_10_as_open():
    reply = AllStatus(1, bytes.fromhex("FFFDFD"))
    assert reply.channel_count == 24
    opened = [ch for ch, latched in reply.latched_map().items() if not latched]
    assert opened == [2, 10]


def test_query_all_reply_is_built_from_lock_states():
    latched = [True] * 24
    latched[0] = False  # lock 1 open
    assert encode(AllStatus.from_latched(1, latched)) == bytes.fromhex("80 01 FF FF FE 33 4C")


def test_inverted_polarity_reads_the_same_bytes_the_other_way():
    assert LockStatus(1, 1, LOCK_CLOSED).latched(Polarity.NORMAL)
    assert not LockStatus(1, 1, LOCK_CLOSED).latched(Polarity.INVERTED)
    reply = AllStatus.from_latched(1, [False] * 8, Polarity.INVERTED)
    assert reply.status == b"\xff"
    assert not any(reply.latched_map(Polarity.INVERTED).values())


def test_replies_to_another_lock_or_board_do_not_match():
    assert not is_reply_to(Unlock(1, 1), LockStatus(1, 2, LOCK_OPEN))
    assert not is_reply_to(Unlock(1, 1), LockStatus(2, 1, LOCK_OPEN))
    assert not is_reply_to(QueryAll(1), AllStatus(2, b"\xff\xff\xff"))
    # A head-8A reply cannot answer a query: it is a late unlock reply.
    assert not is_reply_to(Query(1, 1), LockStatus(1, 1, LOCK_OPEN, head=HEAD_UNLOCK))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Unlock(0, 1),
        lambda: Unlock(0x41, 1),
        lambda: Unlock(1, 0),
        lambda: Query(1, 256),  # the channel byte tops out at 0xFF
        lambda: UnlockMany(1, frozenset({25})),
        lambda: UnlockMany(1, frozenset()),
        lambda: LockStatus(1, 1, 0x33),
        lambda: AllStatus(1, b""),
        lambda: AllStatus(1, b"\xff" * 33),  # MAX_STATUS_BYTES = 32
    ],
)
def test_frames_that_cannot_exist_are_refused_with_a_clear_error(build):
    with pytest.raises(FrameError, match=r"out of range|neither|status bytes|at least one"):
        build()
