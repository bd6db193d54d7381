"""The ERP keys' principals, kept a few seconds in each API process.

Without it every ERP request read its key by hash and then the key's sites (two statements,
each in a transaction of its own: about a third of the API's CPU per tracking read at a
million parcels, `locker bench queries`). A principal is served for `ttl_s` seconds of the
app's clock after the read that found it began, so a revoked key, or a change of its sites,
takes effect within that bound in every process (`LOCKER_CLOUD_ERP_KEY_CACHE_S`,
docs/who-may-do-what.md). Unknown and revoked keys are never kept: a wrong key is looked up
every time, as before.

Refresh-ahead: once an entry is `REFRESH_AFTER` of its bound old, the first request that finds
it is told to read the key again (`lookup` answers `refresh=True` to that one request only),
while every other request goes on with the entry, which is still within its bound. So a key in
steady use is never missed: before, every entry expired at once and all the requests in flight
read the key together (at 500 reads a second, a herd every `ttl_s` in each process). The bound
is unchanged: a refreshed entry is served `ttl_s` from when its own read began, and a read
that finds the key refused drops the entry at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cloud.core.access import Principal

# A key presented this many distinct ways at once is an attack or a bug, not a fleet of ERPs:
# past it the oldest entries go, so memory stays bounded.
MAX_KEYS = 1024
# An entry this share of its bound old is re-read by one request. Half leaves the refresh as
# long as the entry has already lived to finish, under any load that still answers in time,
# for one extra key read per key and process every ttl_s / 2.
REFRESH_AFTER = 0.5


@dataclass
class _Entry:
    read_at: datetime  # when the read that found the principal began
    principal: Principal
    refreshing: bool = False  # a request has been told to re-read it


class PrincipalCache:
    """Principals by key hash, each served `ttl_s` seconds of `clock` from when it was read."""

    def __init__(self, *, ttl_s: float, clock: Callable[[], datetime]) -> None:
        self.ttl_s, self.clock = ttl_s, clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()  # the event loop and the routes' worker threads share it

    def lookup(self, key_hash: str) -> tuple[Principal | None, bool]:
        """The principal read for `key_hash` less than ttl_s ago (None if none), and whether
        this caller is the one to read it again now (then it must call `put`, `drop` or
        `release` for `key_hash` once its read ends)."""
        with self._lock:
            entry = self._entries.get(key_hash)
            if entry is None:
                return None, False
            age = (self.clock() - entry.read_at).total_seconds()
            # A clock that went back counts as stale too: better one more read than a long keep.
            if not 0 <= age < self.ttl_s:
                return None, False
            if entry.refreshing or age < self.ttl_s * REFRESH_AFTER:
                return entry.principal, False
            entry.refreshing = True
            return entry.principal, True

    def put(self, key_hash: str, principal: Principal, *, read_at: datetime) -> None:
        """Keep `principal`, found by a read of the database that began at `read_at`."""
        with self._lock:
            entry = self._entries.get(key_hash)
            if entry is not None and entry.read_at > read_at:
                entry.refreshing = False  # a later read is kept already: this one is older news
                return
            if self.ttl_s <= 0:
                return
            if len(self._entries) >= MAX_KEYS and entry is None:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key_hash] = _Entry(read_at, principal)

    def drop(self, key_hash: str) -> None:
        """Forget `key_hash`: a read has just found it unknown, revoked or bound to nothing."""
        with self._lock:
            self._entries.pop(key_hash, None)

    def release(self, key_hash: str) -> None:
        """A re-read failed (the database, not the key): let the next request try again."""
        with self._lock:
            entry = self._entries.get(key_hash)
            if entry is not None:
                entry.refreshing = False
