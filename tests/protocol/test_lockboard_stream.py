"""The streaming decoders survive what a real RS485 line delivers: split reads, garbage, bad CHK."""

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.lockboard.common import LOCK_CLOSED, LOCK_OPEN
from protocol.lockboard.family_8a import (
    HEAD_UNLOCK,
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
)

STATUS_24 = AllStatus(1, bytes.fromhex("FFFDFD"))


def feed_one_byte_at_a_time(decoder, data: bytes):
    frames = []
    for byte in data:
        frames += decoder.feed(bytes([byte]))
    return frames


def test_a_reply_arriving_one_byte_at_a_time_is_decoded_once_complete():
    decoder = ReplyDecoder()
    decoder.expect(QueryAll(1))
    wire = encode(STATUS_24)
    for byte in wire[:-1]:
        assert decoder.feed(bytes([byte])) == []
    assert decoder.feed(wire[-1:]) == [STATUS_24]
    assert decoder.pending == 0


def test_garbage_before_between_and_after_frames_is_skipped_and_counted():
    decoder = RequestDecoder()
    wire = b"\x00\xff" + encode(Unlock(1, 3)) + b"\x13\x37" + encode(Query(2, 4)) + b"\x42"
    assert decoder.feed(wire) == [Unlock(1, 3), Query(2, 4)]
    assert decoder.stats.garbage_bytes == 5
    assert decoder.stats.frames == 2


def test_a_bad_checksum_is_discarded_counted_and_the_next_frame_still_decoded():
    decoder = ReplyDecoder()
    decoder.expect(Query(1, 1))
    corrupt = bytearray(encode(LockStatus(1, 1, LOCK_CLOSED)))
    corrupt[-1] ^= 0x01
    good = encode(LockStatus(1, 1, LOCK_OPEN))
    assert decoder.feed(bytes(corrupt) + good) == [LockStatus(1, 1, LOCK_OPEN)]
    assert decoder.stats.bad_checksum == 1


def test_a_head_byte_inside_garbage_does_not_swallow_the_real_frame():
    decoder = ReplyDecoder()
    decoder.expect(Unlock(1, 2))
    reply = encode(LockStatus(1, 2, LOCK_OPEN, head=HEAD_UNLOCK))
    # A stray 0x80 right before the real reply looks like the start of a frame.
    assert decoder.feed(b"\x80" + reply) == [LockStatus(1, 2, LOCK_OPEN, head=HEAD_UNLOCK)]


def test_an_unasked_state_report_between_replies_is_delivered():
    decoder = ReplyDecoder()
    decoder.expect(QueryAll(1))
    report = StateReport(2, 5, LOCK_OPEN)
    assert decoder.feed(encode(report) + encode(STATUS_24)) == [report, STATUS_24]


def test_a_partial_frame_left_when_the_line_goes_quiet_is_flushed_and_counted():
    decoder = ReplyDecoder()
    decoder.expect(Query(1, 1))
    decoder.feed(encode(LockStatus(1, 1, LOCK_OPEN))[:3])
    assert decoder.flush() == 3
    assert decoder.stats.garbage_bytes == 3
    decoder.expect(Query(1, 2))
    assert decoder.feed(encode(LockStatus(1, 2, LOCK_OPEN))) == [LockStatus(1, 2, LOCK_OPEN)]


def test_known_channel_count_pins_the_query_all_length():
    # 0x33 is a legal status byte (locks 1, 2, 5, 6 latched): a 16-channel reply whose low
    # status byte is 0x33 must not be cut short when the board is known to have 16 channels.
    reply = AllStatus(1, bytes([0x33, 0x33]))
    decoder = ReplyDecoder()
    decoder.expect(QueryAll(1), channels=16)
    assert feed_one_byte_at_a_time(decoder, encode(reply)) == [reply]


def test_an_echoing_adapter_has_its_own_request_removed():
    # Some USB-RS485 adapters hear what they send. A still-latched unlock reply is byte-for-byte
    # the unlock request, so only the decoder's knowledge of the echo keeps them apart.
    decoder = ReplyDecoder(echo=True)
    decoder.expect(Unlock(1, 1))
    still_closed = LockStatus(1, 1, LOCK_CLOSED, head=HEAD_UNLOCK)
    wire = encode(Unlock(1, 1)) + encode(still_closed)
    assert feed_one_byte_at_a_time(decoder, wire) == [still_closed]


def test_a_known_channel_count_keeps_an_unexpected_echo_from_passing_as_a_reply():
    # `80 01 00 33 B2` (query all) is also a well-formed 8-channel reply saying "all open".
    # A driver that knows its board has 24 channels never reads it so. Since boards may send
    # more status bytes than they need, echo and reply together also parse as one 8-byte reply;
    # S1 is the last byte, so the board's own 24 channels still read as the real reply says.
    decoder = ReplyDecoder()
    decoder.expect(QueryAll(1), channels=24)
    [reply] = decoder.feed(encode(QueryAll(1)) + encode(STATUS_24), line_quiet=True)
    assert isinstance(reply, AllStatus)
    assert reply.latched_map(channels=24) == STATUS_24.latched_map()
    assert not all(not latched for latched in reply.latched_map(channels=24).values())


# --- property tests -------------------------------------------------------------------------

boards = st.integers(1, 0x40)
channels = st.integers(1, 48)
requests = st.one_of(
    st.builds(Unlock, boards, channels),
    st.builds(UnlockAll, boards),
    st.builds(Query, boards, channels),
    st.builds(QueryAll, boards),
    st.just(ReadAddress()),
    st.builds(UnlockMany, boards, st.frozensets(st.integers(1, 24), min_size=1)),
    st.builds(Hold, boards, channels, st.booleans()),
)
state_bytes = st.sampled_from([LOCK_OPEN, LOCK_CLOSED])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(1, 20), max_size=20))
def test_random_bytes_never_crash_either_decoder(data, cuts):
    for decoder in (RequestDecoder(), ReplyDecoder()):
        position = 0
        for size in [*cuts, len(data)]:
            decoder.feed(data[position : position + size])
            position += size
        decoder.flush()
        stats = decoder.stats
        assert stats.garbage_bytes + stats.bad_checksum + stats.malformed <= len(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(requests, min_size=1, max_size=8), st.binary(max_size=8), st.data())
def test_requests_survive_any_split_and_leading_garbage(frames, garbage, data):
    wire = b"".join(encode(f) for f in frames)
    decoder = RequestDecoder()
    decoder.feed(garbage)
    decoder.flush()  # the line went quiet: whatever the garbage started is dropped
    out, position = [], 0
    while position < len(wire):
        size = data.draw(st.integers(1, 7))
        out += decoder.feed(wire[position : position + size])
        position += size
    assert out == frames


@settings(max_examples=200, deadline=None)
@given(boards, st.integers(1, 6), st.data())
def test_query_all_replies_of_every_size_decode_when_the_size_is_unknown(board, groups, data):
    latched = data.draw(st.lists(st.booleans(), min_size=8 * groups, max_size=8 * groups))
    reply = AllStatus.from_latched(board, latched)
    decoder = ReplyDecoder()
    decoder.expect(QueryAll(board), channels=8 * groups)
    assert feed_one_byte_at_a_time(decoder, encode(reply)) == [reply]
    assert [reply.latched(ch) for ch in range(1, 8 * groups + 1)] == latched


@settings(max_examples=200, deadline=None)
@given(boards, st.integers(0, 48), state_bytes, st.sampled_from([0x8A, 0x80]))
def test_lock_status_replies_round_trip(board, channel, state_byte, head):
    reply = LockStatus(board, channel, state_byte, head=head)
    decoder = ReplyDecoder()
    decoder.expect(Unlock(board, channel) if channel else UnlockAll(board))
    assert decoder.feed(encode(reply)) == [reply]
