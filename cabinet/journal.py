"""The cabinet's write-ahead journal: outbound events, the core snapshot, commands run, boots.

One SQLite file in WAL mode with `synchronous=FULL`, so a transaction is on disk when `COMMIT`
returns and a kill -9 (or a power cut) at any instant leaves either all of it or none of it.

- `events`: every event the cabinet sent or will send, by `seq`. `seq` rises by exactly 1 per
  event forever: the last one handed out lives in `meta` (not in `MAX(seq)`), so pruning acked
  events never lets a seq be reused. An event stays until an `event-ack` covers it (a broker's
  PUBACK is not durability), then `ack_upto` deletes it.
- `snapshot_parts`: the core's latest `Cabinet.to_dict()`, written in the same transaction as
  the events and unlocks the step produced (`commit_step`), so the daemon writes ahead of acting.
  It is stored in parts (`SnapshotParts`): one row per entry of each top-level dict (a parcel, a
  compartment, a courier...) and one row, the head, for every other field. A step upserts only
  the rows whose text changed and deletes those gone, so a pickup writes a few small rows and
  not the ~50 KB whole: SD-card wear (`locker bench edge` counts the bytes: 1.2 MB per
  parcel before, 0.3 MB after). Rows load back by rowid, which keeps the dicts' order. `meta`
  holds the snapshot's `snapshot_last_seq` (the seq of the last event at the time) and
  `snapshot_saved_at`. A schema 1 journal's single-row `snapshot` is split on open.
- `pending_unlocks`: doors the daemon was told to unlock but has not reported done; after a
  restart they are what may or may not have been driven (the core's `reconcile` decides).
- `commands`: command ids seen, with their ack, so a redelivered command is re-acked with the
  same answer and never run twice. A row without a result means the cabinet died while running
  it; it is answered `ok: false` rather than run again (at most once beats at least once for a
  door). Rows are pruned after `COMMAND_RETENTION`, well past any command's `expires_at`.
- `door_health`, `board_health`: the health counters (`cabinet.health`), one JSON row per door
  and per board, written in the transaction of the step after they changed (no fsync of their
  own), so a restart keeps them.
- `meta`: `last_seq` and `boot` (raised at every connect, for the `state` birth and Will).

All methods are thread-safe (one lock around one connection), but the daemon calls them from
its event loop's thread only; each call is short (one small transaction).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError
from ulid import ULID

from cabinet.core.serial import SnapshotParts, join_parts
from protocol.errors import MessageError
from protocol.messages import EVENT_TYPES, Ack, EventBase
from protocol.private_files import make_private
from protocol.topics import validate_cabinet_id

# 2: the snapshot in parts (`snapshot_parts`); a version 1 file's single row is split on open.
SCHEMA_VERSION = 2
# The head of the snapshot (every field but the dicts' entries) is this row of `snapshot_parts`.
HEAD = ("", "")
# SQLite checkpoints the WAL into the main file inside whichever commit crosses
# `wal_autocheckpoint` pages (1,000 by default): that commit then writes megabytes and fsyncs
# twice more, and when it is an unlock's, the door waits for it (the p99 of `locker bench edge`).
# The daemon checkpoints from a worker thread instead (`checkpoint`, every tick that follows
# writes); this higher mark only bounds the WAL should nothing call it.
WAL_AUTOCHECKPOINT_PAGES = 10_000
# SQLite's page cache (2 MiB by default) fills as the `commands` table grows (about two rows
# a pickup, kept COMMAND_RETENTION): the daemon's RSS crept 0.27 MB per 1,000 pickups until
# the cap. The journal's hot pages (meta, the snapshot, the index leaves it touches) fit in
# far less, and the OS caches the file anyway.
PAGE_CACHE_KIB = 512
# Longer than any command lives (the cloud sets `expires_at` minutes to hours ahead): past it a
# redelivery is expired anyway, so forgetting its id cannot make it run twice.
COMMAND_RETENTION = timedelta(days=7)
INTERRUPTED = "interrupted: the cabinet restarted while running this command; not run again"

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    ts TEXT NOT NULL,
    acked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS snapshot_parts (
    section TEXT NOT NULL,
    key TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (section, key)
);
CREATE TABLE IF NOT EXISTS pending_unlocks (
    compartment TEXT PRIMARY KEY,
    requested_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS door_health (
    compartment TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS board_health (
    board TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    ok INTEGER,
    error TEXT
);
"""


# ({door: counters}, {board: counters}), as `cabinet.health.HealthLedger.take_dirty` gives them.
HealthRows = tuple[Mapping[str, Mapping[str, Any]], Mapping[str, Mapping[str, Any]]]


class JournalError(Exception):
    """The journal file is not one of ours, or belongs to another cabinet."""


class EventLike(Protocol):
    """What `commit_step` journals: the core's `Emit` fits (type and JSON-ready data)."""

    type: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """The latest core snapshot and the seq of the last event journalled with it."""

    data: dict[str, Any]
    last_seq: int
    saved_at: datetime


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _now() -> datetime:
    return datetime.now(UTC)


class Journal:
    """One cabinet's journal file; build it with `Journal.open(path, cab=...)`."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        cab: str,
        new_id: Callable[[], str],
        path: str | None = None,
    ) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.cab = cab
        self._new_id = new_id
        self._path = path  # None: in memory, nothing to checkpoint
        self._checkpointer: sqlite3.Connection | None = None  # its own connection, lazily
        self._checkpoint_lock = threading.Lock()
        self.commits_since_checkpoint = 0
        # The snapshot's parts as committed, in `snapshot_parts`' rowid order (None: not read yet):
        # what a step compares its parts with to write only those that changed.
        self._parts: dict[tuple[str, str], str] | None = None

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        cab: str,
        new_id: Callable[[], str] = lambda: str(ULID()),
    ) -> Journal:
        """Open (or create) the journal at `path` for cabinet `cab`."""
        validate_cabinet_id(cab)
        if str(path) not in ("", ":memory:"):
            make_private(Path(path))  # it holds the codes' hashes and the outbound events
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a step is one transaction.
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise JournalError(f"{path}: SQLite refused WAL mode (got {mode!r})")
            # FULL: fsync the WAL at every commit, so a committed step survives a power cut too.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(_SCHEMA)
            on_disk = str(path) not in ("", ":memory:")
            journal = cls(conn, cab, new_id, str(path) if on_disk else None)
            journal._init_meta()
        except BaseException:
            conn.close()
            raise
        return journal

    def close(self) -> None:
        """Close the file; committed data is already on disk."""
        with self._checkpoint_lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        with self._lock:
            self._conn.close()

    def checkpoint(self) -> int:
        """Copy the WAL's committed pages into the main file; return how many were.

        Blocking (it writes and fsyncs): call it from a worker thread. It runs on a connection
        of its own and is PASSIVE, so the daemon's commits go on meanwhile and never wait for it.
        """
        if self._path is None:
            return 0
        with self._checkpoint_lock:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False
                )
            self.commits_since_checkpoint = 0
            _busy, _log, copied = self._checkpointer.execute(
                "PRAGMA wal_checkpoint(PASSIVE)"
            ).fetchone()
        return max(copied, 0)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- plumbing -----------------------------------------------------------------------------

    def _tx(self) -> _Transaction:
        return _Transaction(self._conn, self._lock, self)

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: object) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, str(value)),
        )

    def _init_meta(self) -> None:
        with self._tx():
            version = self._meta("schema")
            if version is not None and int(version) not in (1, SCHEMA_VERSION):
                raise JournalError(f"journal schema {version}, this code reads {SCHEMA_VERSION}")
            owner = self._meta("cab")
            if owner is not None and owner != self.cab:
                raise JournalError(f"this journal belongs to cabinet {owner!r}, not {self.cab!r}")
            self._split_single_row_snapshot()
            for key, default in (("schema", SCHEMA_VERSION), ("cab", self.cab)):
                self._set_meta(key, default)
            for key in ("last_seq", "boot"):
                if self._meta(key) is None:
                    self._set_meta(key, 0)

    def _split_single_row_snapshot(self) -> None:
        """Schema 1 kept the snapshot in one row (`snapshot`): store it in parts, drop the row.

        Inside `_init_meta`'s transaction, so a cabinet upgraded in the field keeps its parcels
        whatever instant it dies at: either the old row is still there or the parts are.
        """
        old_table = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'snapshot'"
        ).fetchone()
        if old_table is None:
            return
        row = self._conn.execute(
            "SELECT data, last_seq, saved_at FROM snapshot WHERE one = 1"
        ).fetchone()
        if row is not None:
            data, last_seq, saved_at = row
            self._write_parts(SnapshotParts.split(json.loads(data)))
            self._set_meta("snapshot_last_seq", last_seq)
            self._set_meta("snapshot_saved_at", saved_at)
        self._conn.execute("DROP TABLE snapshot")
        self._parts = None  # read again once this transaction is committed
        log.info("journal: the single-row snapshot is now stored in parts")

    # --- the snapshot's parts -----------------------------------------------------------------

    def _stored_parts(self) -> dict[tuple[str, str], str]:
        if self._parts is None:
            rows = self._conn.execute(
                "SELECT section, key, data FROM snapshot_parts ORDER BY rowid"
            ).fetchall()
            self._parts = {(section, key): data for section, key, data in rows}
        return self._parts

    def _write_parts(self, parts: SnapshotParts) -> dict[tuple[str, str], str]:
        """Upsert the parts whose text changed, delete those gone; return the new parts.

        Inside the caller's transaction, which keeps the returned parts as `_parts` (a rollback
        drops them, so the next step reads what is on disk). Rows come back by rowid, which an
        upsert keeps and a new row takes past every other: Python's dict order (an update stays
        in place, a new key goes last). A field whose order differs anyway is rewritten whole,
        in its new order.
        """
        new = {HEAD: parts.head, **parts.entries}
        old = self._stored_parts()
        expected = [key for key in old if key in new] + [key for key in new if key not in old]
        reordered = _sections_out_of_order(expected, list(new))
        gone = [key for key in old if key not in new or key[0] in reordered]
        changed = [
            (section, key, text)
            for (section, key), text in new.items()
            if section in reordered or old.get((section, key)) != text
        ]
        if gone:
            self._conn.executemany("DELETE FROM snapshot_parts WHERE section = ? AND key = ?", gone)
        if changed:
            self._conn.executemany(
                "INSERT INTO snapshot_parts (section, key, data) VALUES (?, ?, ?) "
                "ON CONFLICT (section, key) DO UPDATE SET data = excluded.data",
                changed,
            )
        return new

    # --- counters -----------------------------------------------------------------------------

    def next_boot(self) -> int:
        """Raise the boot counter and return it (call before every connect)."""
        with self._tx():
            boot = int(self._meta("boot") or 0) + 1
            self._set_meta("boot", boot)
        return boot

    @property
    def boot(self) -> int:
        """The last boot handed out (0 before the first connect)."""
        with self._lock:
            return int(self._meta("boot") or 0)

    @property
    def last_seq(self) -> int:
        """The seq of the last event ever journalled (0 if none)."""
        with self._lock:
            return int(self._meta("last_seq") or 0)

    # --- events -------------------------------------------------------------------------------

    def _envelope(self, seq: int, event_id: str, type_: str, data: Any, ts: str) -> EventBase:
        model = EVENT_TYPES.get(type_)
        if model is None:
            raise MessageError("type", f"unknown event type {type_!r}")
        fields = {"v": 1, "id": event_id, "cab": self.cab, "seq": seq, "ts": ts, "type": type_}
        # Through JSON so the model applies wire strictness (enums and timestamps as strings).
        raw = json.dumps({**fields, "data": data}, separators=(",", ":"))
        try:
            return model.model_validate_json(raw)
        except ValidationError as err:
            # The message, never the input: event data may hold a phone.
            first = err.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or None
            raise MessageError(where, f"event {type_}: {first['msg']}") from None

    def _append(self, events: Iterable[EventLike], now: datetime) -> list[EventBase]:
        """Validate and insert `events` inside the caller's transaction."""
        ts = _iso(now)
        seq = int(self._meta("last_seq") or 0)
        built: list[EventBase] = []
        for event in events:
            seq += 1
            data = dict(event.data)
            envelope = self._envelope(seq, self._new_id(), event.type, data, ts)
            built.append(envelope)
            self._conn.execute(
                "INSERT INTO events (seq, id, type, data, ts) VALUES (?, ?, ?, ?, ?)",
                (seq, envelope.id, event.type, json.dumps(data, separators=(",", ":")), ts),
            )
        self._set_meta("last_seq", seq)
        return built

    def append_events(
        self, events: Iterable[EventLike], *, now: datetime | None = None
    ) -> list[EventBase]:
        """Journal `events` with the next seqs in one transaction; return their envelopes.

        Every event is validated against the contract first: one bad event raises MessageError
        and none of them is journalled.
        """
        with self._tx():
            return self._append(events, now or _now())

    def commit_step(
        self,
        snapshot: SnapshotParts | Mapping[str, Any] | str | None,
        events: Iterable[EventLike] = (),
        pending_unlocks: Sequence[str] = (),
        *,
        command: Ack | None = None,
        now: datetime | None = None,
        health: HealthRows | None = None,
    ) -> list[EventBase]:
        """Journal what one core step produced, all or nothing; return the event envelopes.

        In one transaction: the events (next seqs), the new snapshot (None keeps the old one),
        the unlocks about to be driven, and, for a step that ran a command, its ack (so a kill
        between the step and the ack cannot make the command look unrun). Act only after this
        returns: that is writing ahead. A snapshot given as text is stored as it is (the
        service encodes it incrementally, `Cabinet.to_json`).
        """
        now = now or _now()
        saved_at = _iso(now)
        if snapshot is None or isinstance(snapshot, SnapshotParts):
            parts = snapshot
        elif isinstance(snapshot, str):
            parts = SnapshotParts.split(json.loads(snapshot))
        else:
            parts = SnapshotParts.split(snapshot)
        with self._tx():
            built = self._append(events, now)
            if parts is not None:
                # What the next step compares with; a rollback forgets it (`_Transaction`).
                self._parts = self._write_parts(parts)
                self._set_meta("snapshot_last_seq", self._meta("last_seq") or 0)
                self._set_meta("snapshot_saved_at", saved_at)
            for compartment in pending_unlocks:
                self._conn.execute(
                    "INSERT OR REPLACE INTO pending_unlocks (compartment, requested_at) "
                    "VALUES (?, ?)",
                    (compartment, saved_at),
                )
            if command is not None:
                self._record_command(command, now)
            if health is not None:
                self._write_health(health)
        return built

    # --- health counters ----------------------------------------------------------------------

    def _write_health(self, health: HealthRows) -> None:
        doors, boards = health
        for table, key, rows in (
            ("door_health", "compartment", doors),
            ("board_health", "board", boards),
        ):
            for name, data in rows.items():
                self._conn.execute(
                    f"INSERT INTO {table} ({key}, data) VALUES (?, ?) "
                    f"ON CONFLICT ({key}) DO UPDATE SET data = excluded.data",
                    (name, json.dumps(data, separators=(",", ":"))),
                )

    def save_health(self, health: HealthRows) -> None:
        """Write health rows on their own (at a clean stop: no step left to carry them)."""
        with self._tx():
            self._write_health(health)

    def load_health(self) -> HealthRows:
        """Return the health rows kept: ({door: data}, {board: data})."""
        with self._lock:
            doors = self._conn.execute("SELECT compartment, data FROM door_health").fetchall()
            boards = self._conn.execute("SELECT board, data FROM board_health").fetchall()
        return (
            {name: json.loads(data) for name, data in doors},
            {name: json.loads(data) for name, data in boards},
        )

    def unacked(self, after_seq: int | None = None) -> list[EventBase]:
        """Return the events no event-ack covers yet (after `after_seq`, if given), by seq."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, id, type, data, ts FROM events WHERE acked = 0 AND seq > ? "
                "ORDER BY seq",
                (after_seq or 0,),
            ).fetchall()
        return [self._envelope(seq, id_, t, json.loads(d), ts) for seq, id_, t, d, ts in rows]

    def backlog(self) -> tuple[int, datetime | None]:
        """Return how many events wait for an event-ack, and the oldest one's timestamp."""
        with self._lock:
            count, oldest = self._conn.execute(
                "SELECT count(*), min(ts) FROM events WHERE acked = 0"
            ).fetchone()
        return count, None if oldest is None else _parse(oldest)

    def ack_upto(self, upto: int) -> int:
        """Mark every event with seq ≤ `upto` acked and prune them; return how many were.

        An `upto` past the last seq journalled is clamped to it: the cloud cannot have stored
        events this cabinet has not made yet, and seqs to come must not be forgotten in advance.
        """
        with self._tx():
            upto = min(upto, int(self._meta("last_seq") or 0))
            cursor = self._conn.execute(
                "UPDATE events SET acked = 1 WHERE seq <= ? AND acked = 0", (upto,)
            )
            # Acked events are the cloud's now: nothing here reads them again.
            self._conn.execute("DELETE FROM events WHERE acked = 1")
            return cursor.rowcount

    # --- snapshot and unlocks -----------------------------------------------------------------

    def load_snapshot(self) -> Snapshot | None:
        """Return the latest core snapshot, or None before the first step."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT section, key, data FROM snapshot_parts ORDER BY rowid"
            ).fetchall()
            last_seq, saved_at = self._meta("snapshot_last_seq"), self._meta("snapshot_saved_at")
        entries = [((section, key), data) for section, key, data in rows]
        head = dict(entries).pop(HEAD, None)
        if head is None or last_seq is None or saved_at is None:
            return None
        data = join_parts(head, (entry for entry in entries if entry[0] != HEAD))
        return Snapshot(data, int(last_seq), _parse(saved_at))

    def pending_unlocks(self) -> list[str]:
        """Return the compartments whose unlock was journalled but not reported done."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT compartment FROM pending_unlocks ORDER BY requested_at, compartment"
            ).fetchall()
        return [row[0] for row in rows]

    def unlock_done(self, compartment: str) -> None:
        """Forget a pending unlock once the driver released the latch (or gave up)."""
        with self._tx():
            self._conn.execute("DELETE FROM pending_unlocks WHERE compartment = ?", (compartment,))

    # --- commands -----------------------------------------------------------------------------

    def begin_command(self, command_id: str, *, now: datetime | None = None) -> None:
        """Note that command `command_id` is about to run (before running it)."""
        with self._tx():
            self._conn.execute(
                "INSERT OR IGNORE INTO commands (id, received_at) VALUES (?, ?)",
                (command_id, _iso(now or _now())),
            )

    def _record_command(self, ack: Ack, now: datetime) -> None:
        self._conn.execute(
            "INSERT INTO commands (id, received_at, ok, error) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET ok = excluded.ok, error = excluded.error "
            "WHERE commands.ok IS NULL",  # the first answer stands
            (ack.cmd, _iso(now), int(ack.ok), ack.error),
        )
        cutoff = _iso(now - COMMAND_RETENTION)
        self._conn.execute("DELETE FROM commands WHERE received_at < ?", (cutoff,))

    def record_command(self, command_id: str, ack: Ack, *, now: datetime | None = None) -> Ack:
        """Record the answer to `command_id` (the first one recorded stands); return it."""
        if ack.cmd != command_id:
            raise ValueError(f"ack is for command {ack.cmd!r}, not {command_id!r}")
        with self._tx():
            self._record_command(ack, now or _now())
        return self.command_result(command_id) or ack

    def command_result(self, command_id: str) -> Ack | None:
        """Return the recorded ack of `command_id`, or None if it was never seen.

        A command begun but never answered (the cabinet died running it) answers `ok: false`.
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT ok, error FROM commands WHERE id = ?", (command_id,)
            ).fetchone()
        if row is None:
            return None
        ok, error = row
        if ok is None:
            return Ack.failure(command_id, INTERRUPTED)
        return Ack(cmd=command_id, ok=True) if ok else Ack.failure(command_id, error or "failed")


def _sections_out_of_order(
    expected: Sequence[tuple[str, str]], actual: Sequence[tuple[str, str]]
) -> set[str]:
    """The sections whose keys' order in `actual` differs from their order in `expected`."""

    def by_section(keys: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for section, key in keys:
            grouped.setdefault(section, []).append(key)
        return grouped

    wanted = by_section(expected)
    return {section for section, keys in by_section(actual).items() if wanted[section] != keys}


class _Transaction:
    """`BEGIN IMMEDIATE` … `COMMIT`, or `ROLLBACK` on any exception, under the journal's lock."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock, journal: Journal) -> None:
        self._conn = conn
        self._lock = lock
        self._journal = journal

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, exc_type: object, *_rest: object) -> None:
        committed = False
        try:
            if exc_type:
                self._conn.execute("ROLLBACK")
            else:
                self._conn.execute("COMMIT")
                committed = True
                self._journal.commits_since_checkpoint += 1
        finally:
            if not committed:
                # The snapshot's parts this transaction wrote are not on disk: read them again.
                self._journal._parts = None
            self._lock.release()
