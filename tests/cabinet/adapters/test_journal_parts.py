"""The journal's snapshot in parts: what it loads is the cabinet, byte for byte; a step writes
only the parts that changed; a schema 1 journal (one snapshot row) is split on open."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

from cabinet.core.inputs import CourierSignOut, Input
from cabinet.core.serial import JsonSnapshotCache
from cabinet.journal import Journal
from tests.cabinet.core.harness import Harness, unlocks

CAB = "cab1"


def text(snapshot: dict) -> str:
    return json.dumps(snapshot, separators=(",", ":"))


class JournalledHarness(Harness):
    """Every input's new cabinet is committed in parts, and what loads back must be it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.journal = Journal.open(path, cab=CAB)
        self.cache = JsonSnapshotCache()
        self.commits = 0

    def do(self, inp: Input) -> list:
        effects = super().do(inp)
        self.journal.commit_step(self.cab.to_parts(self.cache))
        self.commits += 1
        self.check()
        return effects

    def check(self) -> None:
        snapshot = self.journal.load_snapshot()
        assert snapshot is not None
        assert text(snapshot.data) == text(self.cab.to_dict())  # same content, same order

    def reopen(self) -> None:
        self.journal.close()
        self.journal = Journal.open(self.path, cab=CAB)
        self.check()


def test_random_steps_load_back_byte_identical(tmp_path: Path) -> None:
    rng = random.Random(16)
    h = JournalledHarness(tmp_path / "j.db")
    codes: dict[str, str] = {}  # parcel id -> its code
    for number in range(60):
        free = [c for c in h.cab.compartments.values() if c.parcel_id is None]
        choice = rng.random()
        if free and choice < 0.45:
            h.sign_in(rng.choice(["C1", "C2"]))
            parcel_id = h.deposit(f"SF{number:04d}", rng.choice(free).size)
            h.do(CourierSignOut())
            codes[parcel_id] = f"{rng.randrange(10**8):08d}"
            h.grant(parcel_id, codes[parcel_id])
        elif codes and choice < 0.85:
            parcel_id = rng.choice(sorted(codes))
            opened = unlocks(h.enter(codes[parcel_id]))
            if not opened:  # the keypad locked out after wrong codes: wait it out
                h.tick(3600)
                continue
            for compartment in opened:
                h.cycle(compartment)  # taken out, door shut
            codes = {p: code for p, code in codes.items() if p in h.cab.parcels}
            assert parcel_id not in h.cab.parcels
        elif choice < 0.95:
            h.enter("00000000")  # a wrong code: the keypad guard changes
        else:
            h.reopen()  # the next step compares with what is on disk
        h.tick(rng.choice([0, 1, 30]))
    assert h.commits > 200
    h.journal.close()


def test_a_step_writes_only_the_parts_that_changed(tmp_path: Path) -> None:
    """A pickup in a full cabinet touches a few pages of the WAL, not the whole snapshot."""
    h = JournalledHarness(tmp_path / "j.db")
    h.sign_in()
    parcel_ids = [h.deposit(f"SF{n:04d}") for n in range(4)]
    h.do(CourierSignOut())
    for n, parcel_id in enumerate(parcel_ids):
        h.grant(parcel_id, f"1234567{n}")
    # Fatten every parcel's part so a whole rewrite would show: 4 x 20 KB.
    for parcel_id, parcel in list(h.cab.parcels.items()):
        h.cab.parcels[parcel_id] = type(parcel)(
            **{**parcel.__dict__, "tracking_no": f"SF{parcel_id}" + "x" * 20_000}
        )
    h.journal.commit_step(h.cab.to_parts(h.cache))
    h.journal.checkpoint()
    wal = tmp_path / "j.db-wal"
    before = wal.stat().st_size
    (compartment,) = unlocks(h.enter("12345670"))
    h.cycle(compartment)
    grown = wal.stat().st_size - before
    whole = len(text(h.cab.to_dict()))
    assert whole > 60_000
    assert grown < 30_000  # ~one fat parcel's pages plus the head and meta, three commits
    h.journal.close()


def test_a_dict_reordered_by_the_core_loads_in_its_new_order(tmp_path: Path) -> None:
    h = JournalledHarness(tmp_path / "j.db")
    h.sign_in()
    for n in range(3):
        h.deposit(f"SF{n:04d}")
    h.cab.parcels = dict(reversed(h.cab.parcels.items()))
    h.cab.compartments = dict(sorted(h.cab.compartments.items(), reverse=True))
    h.journal.commit_step(h.cab.to_parts(h.cache))
    h.reopen()
    assert list(h.journal.load_snapshot().data["parcels"]) == list(h.cab.parcels)
    h.journal.close()


SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE snapshot (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    data TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    saved_at TEXT NOT NULL
);
"""


def test_a_schema_1_journal_keeps_its_parcels_after_the_upgrade(tmp_path: Path) -> None:
    """A cabinet upgraded in the field: its single-row snapshot is split on open, once."""
    h = Harness()
    h.sign_in()
    parcel_ids = [h.deposit(f"SF{n:04d}") for n in range(3)]
    whole = text(h.cab.to_dict())
    path = tmp_path / "j.db"
    with sqlite3.connect(path) as old:  # as schema 1 code left it
        old.executescript(SCHEMA_1)
        old.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [("schema", "1"), ("cab", CAB), ("last_seq", "7"), ("boot", "3")],
        )
        old.execute("INSERT INTO snapshot VALUES (1, ?, 7, '2026-12-04T22:00:00Z')", (whole,))
    old.close()
    with Journal.open(path, cab=CAB) as journal:
        snapshot = journal.load_snapshot()
        assert snapshot is not None and text(snapshot.data) == whole
        assert list(snapshot.data["parcels"]) == parcel_ids
        assert snapshot.last_seq == journal.last_seq == 7 and journal.boot == 3
        assert snapshot.saved_at.isoformat() == "2026-12-04T22:00:00+00:00"
    with sqlite3.connect(path) as upgraded:
        tables = {row[0] for row in upgraded.execute("SELECT name FROM sqlite_master")}
        schema = upgraded.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    upgraded.close()
    assert "snapshot" not in tables and schema == ("2",)
    with Journal.open(path, cab=CAB) as journal:  # and again: nothing left to split
        snapshot = journal.load_snapshot()
        assert snapshot is not None and text(snapshot.data) == whole


def test_a_step_that_rolled_back_leaves_its_parts_to_be_written_again(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.db", cab=CAB) as journal:
        journal.commit_step({"v": 1, "parcels": {"P1": {"code": "a"}}})
        changed = {"v": 1, "parcels": {"P1": {"code": "b"}}}
        # It fails after the parts were written, within the transaction: health rows no JSON has.
        with pytest.raises(TypeError):
            journal.commit_step({**changed}, health=({"A01": {"pulses": object()}}, {}))
        journal.commit_step(changed)  # the same parts as the step that was rolled back
        snapshot = journal.load_snapshot()
        assert snapshot is not None and snapshot.data == changed
