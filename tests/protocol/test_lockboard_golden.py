"""Golden bytes of every frame in docs/lockboard.md#golden-frames, held to the byte both ways.

These come from the spec, not from our encoder, so a codec bug shared by the cabinet's driver
and the simulator still fails here.
"""

from pathlib import Path

import pytest

from protocol.errors import FrameError
from protocol.lockboard.common import LOCK_CLOSED, LOCK_OPEN, Polarity
from protocol.lockboard.family_8a import (
    HEAD_UNLOCK,
    MAX_CHANNELS,
    MAX_STATUS_BYTES,
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
    status_bytes_for,
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


# --- query-all replies as boards really send them (docs/lockboard.md#query-all-replies-as-boards-send-them)
# Boards answer with ceil(channels / 8) status bytes or more; the reply ends at its `33 CHK` tail
# and the quiet gap after it, and only the board's own channels are read (S1 is the last byte).
# (what, the board's channels, the bytes, the locks reported closed in the default polarity)
BOARD_REPLIES = [
    ("captured: 8 channels, 3 status bytes, every lock open", 8, "80 01 00 00 00 33 B2", []),
    ("50 channels, locks 1 and 50 open", 50, "80 01 01 FF FF FF FF FF FE 33 B2", list(range(2, 50))),
    ("24 channels, 4 status bytes, lock 1 open", 24, "80 01 00 FF FF FE 33 4C", list(range(2, 25))),
    ("16 channels, 3 status bytes, one of them 33", 16, "80 01 00 81 33 33 00", [1, 2, 5, 6, 9, 16]),
]  # fmt: skip


def test_the_board_replies_table_in_the_docs_is_this_test():
    from tests.test_docs import table, ticked  # here: tests.test_docs imports this module

    text = (Path(__file__).parents[2] / "docs/lockboard.md").read_text(encoding="utf-8")
    rows = table(text, "Query-all replies as boards send them")
    documented = [(row[0], int(row[1]), ticked(row[2])[0]) for row in rows]
    assert documented == [(what, channels, wire) for what, channels, wire, _ in BOARD_REPLIES]


@pytest.mark.parametrize(
    ("what", "channels", "wire", "closed"), BOARD_REPLIES, ids=[r[0] for r in BOARD_REPLIES]
)
def test_a_query_all_reply_as_boards_send_it_is_framed_by_the_quiet_gap(
    what, channels, wire, closed
):
    data = bytes.fromhex(wire)
    decoder = ReplyDecoder()
    # What the driver does before it has heard the board: any length from ceil(n / 8) up.
    decoder.expect(QueryAll(1), channels=channels, status_bytes=MAX_STATUS_BYTES)
    assert decoder.feed(data) == []  # a longer reply may still be coming
    [reply] = decoder.feed(b"", line_quiet=True)
    assert encode(reply) == data and decoder.pending == 0
    assert len(reply.status) >= status_bytes_for(channels)
    states = reply.latched_map(channels=channels)
    assert sorted(states) == list(range(1, channels + 1))  # the board's own channels, no more
    assert [ch for ch, latched in states.items() if latched] == closed


@pytest.mark.parametrize(("what", "channels", "wire", "_"), BOARD_REPLIES[:3])
def test_once_the_boards_reply_length_is_known_its_reply_is_complete_at_once(
    what, channels, wire, _
):
    data = bytes.fromhex(wire)
    decoder = ReplyDecoder()
    decoder.expect(QueryAll(1), channels=channels, status_bytes=len(data) - 4)
    assert [encode(f) for f in decoder.feed(data)] == [data]  # no wait for the quiet gap


def test_the_ambiguous_reply_is_read_as_the_quiet_gap_delimits_it():
    # `80 01 00 81 33 33 00`: a 16-channel board sending 3 status bytes, S1 = 0x33. Its first six
    # bytes are also a well-formed 2-byte reply (`00 81`, then `33`, then CHK 0x33).
    whole = bytes.fromhex("80 01 00 81 33 33 00")
    short = whole[:6]
    assert short[-1] == short[0] ^ short[1] ^ short[2] ^ short[3] ^ short[4]  # it does parse

    decoder = ReplyDecoder()
    decoder.expect(QueryAll(1), channels=16, status_bytes=MAX_STATUS_BYTES)
    assert decoder.feed(short) == []  # not taken while the line is still talking
    [reply] = decoder.feed(whole[6:], line_quiet=True)
    assert reply.status == bytes.fromhex("00 81 33")
    assert decoder.stats.garbage_bytes == 0

    # Had the line gone quiet after six bytes, those six were the reply.
    decoder = ReplyDecoder()
    decoder.expect(QueryAll(1), channels=16, status_bytes=MAX_STATUS_BYTES)
    [reply] = decoder.feed(short, line_quiet=True)
    assert reply.status == bytes.fromhex("00 81")

    # A board known to send 3 bytes: the 2-byte reading is passed over even before the quiet.
    decoder = ReplyDecoder()
    decoder.expect(QueryAll(1), channels=16, status_bytes=3)
    assert [r.status for r in decoder.feed(whole)] == [bytes.fromhex("00 81 33")]


def test_a_reply_shorter_than_the_board_needs_is_refused():
    decoder = ReplyDecoder()
    decoder.expect(QueryAll(1), channels=50)  # ceil(50 / 8) = 7 status bytes at least
    assert decoder.feed(bytes.fromhex("80 01 FF FF FE 33 4C"), line_quiet=True) == []
    assert decoder.stats.malformed == 1


def test_the_wire_sets_the_channel_cap():
    # The channel byte names 1-255; 32 status bytes hold 8 * 32 = 256 bits: the lesser wins.
    assert MAX_STATUS_BYTES == 32
    assert MAX_CHANNELS == min(0xFF, 8 * MAX_STATUS_BYTES) == 255
    assert status_bytes_for(1) == 1 and status_bytes_for(50) == 7 and status_bytes_for(255) == 32
    assert encode(Query(1, 255)) == bytes.fromhex("80 01 FF 33") + bytes(
        [0x80 ^ 0x01 ^ 0xFF ^ 0x33]
    )


def test_two_replies_back_to_back_are_two_replies_not_one_long_one():
    # `80 01 FF FD FD 33 4D` twice (a board answering twice, or two boards on one address) also
    # checks as one 10-status-byte reply: the second frame's CHK cancels its own bytes.
    one = bytes.fromhex("80 01 FF FD FD 33 4D")
    decoder = ReplyDecoder()
    decoder.expect(QueryAll(1), channels=24, status_bytes=MAX_STATUS_BYTES)
    frames = decoder.feed(one + one, line_quiet=True)
    assert [encode(frame) for frame in frames] == [one, one]
