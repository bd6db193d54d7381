"""Code and PIN hashes: what the cloud makes, the cabinet can check, and nothing else can."""

import os

import pytest

from protocol.hashing import CODE_HASH_PREFIX, code_hash, pin_hash, verify_pin


def test_a_code_hash_is_keyed_so_another_cabinet_key_gives_another_hash():
    first = code_hash(b"key-of-cabinet-A", "12345678")
    assert first.startswith(CODE_HASH_PREFIX)
    assert first == code_hash(b"key-of-cabinet-A", "12345678")
    assert first != code_hash(b"key-of-cabinet-B", "12345678")
    assert first != code_hash(b"key-of-cabinet-A", "12345679")
    assert "12345678" not in first


def test_a_code_hash_needs_a_key():
    with pytest.raises(ValueError, match="code_key"):
        code_hash(b"", "12345678")


def test_a_pin_verifies_only_against_its_own_hash():
    stored = pin_hash("4321", os.urandom(16))
    assert verify_pin("4321", stored)
    assert not verify_pin("4322", stored)
    assert "4321" not in stored
    # Same PIN, new salt: a different string, so equal PINs can't be spotted in a table.
    assert pin_hash("4321", os.urandom(16)) != stored


@pytest.mark.parametrize("garbage", ["", "plain", "md5$1$2$3$4$5", "scrypt$x$8$1$AA$BB"])
def test_a_malformed_pin_hash_never_verifies_and_never_raises(garbage):
    assert not verify_pin("4321", garbage)
