"""Keep the daemon's resident memory flat on glibc, for 512 MB cabinet computers."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES = 128 * 1024


def pin_mmap_threshold() -> bool:
    """Make large allocations always use mmap, so they go back to the system when freed.

    A courier sign-in checks the PIN with scrypt, which takes 16 MiB. glibc serves the first such
    block with mmap and returns it, but then raises its mmap threshold to that size, so every
    later one comes from the heap and stays resident: +16 MiB for the daemon's lifetime
    (measured with `locker bench edge`). Pinning the threshold keeps the default 128 KiB.
    Returns False (and changes nothing) where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; the heap may keep freed PIN-hash blocks")
    return ok
