"""The ERP keys' principals, kept a few seconds in each API process.

Without it every ERP request read its key by hash and then the key's sites (two statements,
each in a transaction of its own: about a third of the API's CPU per tracking read at a
million parcels, `locker bench queries`). A principal is kept for `ttl_s` seconds of the
app's clock after it was read, so a revoked key, or a change of its sites, takes effect within
that bound in every process (`LOCKER_CLOUD_ERP_KEY_CACHE_S`, docs/who-may-do-what.md).
Unknown and revoked keys are never kept: a wrong key is looked up every time, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from cloud.core.access import Principal

# A key presented this many distinct ways at once is an attack or a bug, not a fleet of ERPs:
# past it the oldest entries go, so memory stays bounded.
MAX_KEYS = 1024


class PrincipalCache:
    """Principals by key hash, each kept `ttl_s` seconds of `clock` after it was read."""

    def __init__(self, *, ttl_s: float, clock: Callable[[], datetime]) -> None:
        self.ttl_s, self.clock = ttl_s, clock
        self._entries: dict[str, tuple[datetime, Principal]] = {}
        self._lock = threading.Lock()  # the routes' worker threads share it

    def get(self, key_hash: str) -> Principal | None:
        """The principal read for `key_hash` less than ttl_s ago, if any."""
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        read_at, principal = entry
        age = (self.clock() - read_at).total_seconds()
        # A clock that went back counts as stale too: better one more read than a long keep.
        return principal if 0 <= age < self.ttl_s else None

    def put(self, key_hash: str, principal: Principal) -> None:
        """Keep `principal` (just read from the database) for `key_hash`."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) >= MAX_KEYS and key_hash not in self._entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key_hash] = (self.clock(), principal)
