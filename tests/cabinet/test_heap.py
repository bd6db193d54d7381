"""The daemon's heap setting: freed PIN-hash blocks go back to the system."""

import hashlib
import os
from pathlib import Path

from cabinet.heap import pin_mmap_threshold


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_repeated_pin_checks_do_not_leave_16_mib_resident():
    # Cabinets run Debian (glibc, /proc), as this machine and CI do: no skip where it matters.
    assert pin_mmap_threshold(), "mallopt(M_MMAP_THRESHOLD) was refused or glibc not found"
    salt = os.urandom(16)
    hashlib.scrypt(b"1234", salt=salt, n=2**14, r=8, p=1, dklen=32)
    before = rss_kib()
    for _ in range(5):
        hashlib.scrypt(b"1234", salt=salt, n=2**14, r=8, p=1, dklen=32)
    # Without the pinned threshold the second scrypt's 16 MiB stays on the heap for good.
    assert rss_kib() - before < 8 * 1024
