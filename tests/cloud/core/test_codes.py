"""Pickup codes from an injected random source, the `LKR1:` QR payload, one-time SMS codes."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from cloud.core import codes
from cloud.core.codes import OtpCheck, issue_code
from cloud.core.errors import CodeSpaceExhausted, QrPayloadError
from protocol.hashing import code_hash
from tests.cloud.core.factories import CODE_KEY, PHONE, T0, Scripted


@pytest.mark.parametrize("length", range(6, 11))
def test_codes_have_the_sites_length_and_only_digits(length: int) -> None:
    rng = random.Random(length)
    for _ in range(200):
        issued = issue_code(
            length=length, live_hashes=set(), randbelow=rng.randrange, code_key=CODE_KEY
        )
        assert len(issued.code) == length and issued.code.isdigit()
        assert issued.code_hash == code_hash(CODE_KEY, issued.code)


def test_one_draw_over_the_whole_space_keeps_leading_zeros() -> None:
    randbelow = Scripted([42])
    issued = issue_code(length=8, live_hashes=set(), randbelow=randbelow, code_key=CODE_KEY)
    assert issued.code == "00000042"
    assert randbelow.calls == [10**8]


def test_a_colliding_code_is_drawn_again() -> None:
    live = {code_hash(CODE_KEY, "11111111"), code_hash(CODE_KEY, "22222222")}
    randbelow = Scripted([11111111, 22222222, 33333333])
    issued = issue_code(length=8, live_hashes=live, randbelow=randbelow, code_key=CODE_KEY)
    assert issued.code == "33333333"
    assert len(randbelow.calls) == 3


def test_codes_are_unique_among_live_parcels_under_forced_collisions() -> None:
    # A tiny random source (values 0..4) collides constantly; every issued code is still fresh.
    rng = random.Random(7)
    live: set[str] = set()
    issued_codes = set()
    for _ in range(5):
        issued = issue_code(
            length=6, live_hashes=live, randbelow=lambda n: rng.randrange(5), code_key=CODE_KEY
        )
        assert issued.code_hash not in live
        live.add(issued.code_hash)
        issued_codes.add(issued.code)
    assert len(issued_codes) == 5


def test_a_random_source_that_repeats_itself_gives_a_clear_error() -> None:
    live = {code_hash(CODE_KEY, "000007")}
    with pytest.raises(CodeSpaceExhausted, match="random source"):
        issue_code(length=6, live_hashes=live, randbelow=lambda n: 7, code_key=CODE_KEY)


def test_a_nearly_full_code_space_gives_a_clear_error_before_drawing() -> None:
    live = {f"hash-{i}" for i in range(1000)}  # 1,000 live codes: the safe limit for 6 digits
    randbelow = Scripted([])
    with pytest.raises(CodeSpaceExhausted, match="use longer codes"):
        issue_code(length=6, live_hashes=live, randbelow=randbelow, code_key=CODE_KEY)
    assert randbelow.calls == []
    # The same cabinet is fine with 8-digit codes.
    issued = issue_code(length=8, live_hashes=live, randbelow=Scripted([5]), code_key=CODE_KEY)
    assert issued.code == "00000005"


@pytest.mark.parametrize("length", [5, 11])
def test_lengths_outside_6_to_10_are_refused(length: int) -> None:
    with pytest.raises(ValueError):
        issue_code(length=length, live_hashes=set(), randbelow=Scripted([1]), code_key=CODE_KEY)


def test_a_broken_random_source_is_refused() -> None:
    with pytest.raises(ValueError, match="out of range"):
        issue_code(length=6, live_hashes=set(), randbelow=Scripted([10**6]), code_key=CODE_KEY)


def test_the_clear_code_is_not_in_the_repr() -> None:
    issued = issue_code(
        length=8, live_hashes=set(), randbelow=Scripted([40718253]), code_key=CODE_KEY
    )
    assert "40718253" not in repr(issued)
    code, hashed = issued  # unpacks like the (code, code_hash) pair it is
    assert code == "40718253" and hashed.startswith("hmac-sha256:")
    assert "40718253" not in hashed


# --- QR payload -----------------------------------------------------------------------------------


def test_qr_payload_round_trip() -> None:
    text = codes.qr_payload("CAB-1", "00012345")
    assert text == "LKR1:CAB-1:00012345"
    assert codes.parse_qr_payload(text) == ("CAB-1", "00012345")
    assert codes.parse_qr_payload(f"  {text}\r\n") == ("CAB-1", "00012345")


@pytest.mark.parametrize(
    "text",
    [
        "LKR2:CAB-1:12345678",
        "LKR1:CAB 1:12345678",
        "LKR1:CAB-1:1234",
        "LKR1:CAB-1:12345678901",
        "LKR1:CAB-1:1234567a",
        "https://example.com/",
        "",
    ],
)
def test_anything_else_is_not_a_pickup_qr(text: str) -> None:
    with pytest.raises(QrPayloadError) as raised:
        codes.parse_qr_payload(text)
    assert "12345678" not in str(raised.value)  # never echo what might be a code
    assert isinstance(raised.value, ValueError)


def test_qr_payload_refuses_a_bad_cabinet_or_code() -> None:
    with pytest.raises(QrPayloadError):
        codes.qr_payload("CAB 1", "12345678")
    with pytest.raises(QrPayloadError):
        codes.qr_payload("CAB-1", "12ab")


def test_pickup_link_carries_the_payload_in_the_fragment() -> None:
    link = codes.pickup_link("https://lockers.example/", "CAB-1", "12345678")
    assert link == "https://lockers.example/pickup/CAB-1#LKR1:CAB-1:12345678"
    assert "12345678" not in link.split("#")[0]


# --- one-time codes for scan-to-open --------------------------------------------------------------

OTP_KEY = b"otp-key"


def issue_otp(value: int = 123456):
    return codes.issue_one_time_code(phone=PHONE, randbelow=Scripted([value]), key=OTP_KEY, now=T0)


def test_one_time_code_opens_once() -> None:
    code, record = issue_otp()
    assert code == "123456" and "123456" not in repr(record) and PHONE not in repr(record)
    result, record = codes.check_one_time_code(record, "123456", key=OTP_KEY, now=T0)
    assert result is OtpCheck.OK
    result, _ = codes.check_one_time_code(record, "123456", key=OTP_KEY, now=T0)
    assert result is OtpCheck.USED


def test_one_time_code_expires() -> None:
    _, record = issue_otp()
    later = T0 + timedelta(seconds=codes.OTP_TTL_S)
    assert codes.check_one_time_code(record, "123456", key=OTP_KEY, now=later)[0] is (
        OtpCheck.EXPIRED
    )


def test_one_time_code_locks_after_too_many_wrong_tries() -> None:
    _, record = issue_otp()
    results = []
    for _ in range(codes.OTP_MAX_ATTEMPTS):
        result, record = codes.check_one_time_code(record, "000000", key=OTP_KEY, now=T0)
        results.append(result)
    assert results == [OtpCheck.WRONG] * (codes.OTP_MAX_ATTEMPTS - 1) + [OtpCheck.LOCKED]
    # Even the right code is refused now.
    assert codes.check_one_time_code(record, "123456", key=OTP_KEY, now=T0)[0] is OtpCheck.LOCKED


def test_one_time_code_is_bound_to_its_phone() -> None:
    _, record = issue_otp()
    other = codes.OneTimeCode(
        phone="+8613900000000", code_hash=record.code_hash, expires_at=record.expires_at
    )
    assert codes.check_one_time_code(other, "123456", key=OTP_KEY, now=T0)[0] is OtpCheck.WRONG
