"""The journal: seqs contiguous forever, acks prune, commands at most once, kill -9 safe."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from cabinet.core import effects as fx
from cabinet.journal import INTERRUPTED, Journal, JournalError
from protocol.errors import MessageError
from protocol.messages import Ack
from tests.services import wait_for

CAB = "cab1"
WRITER = Path(__file__).with_name("journal_writer.py")


def forced(count: int) -> list[fx.Emit]:
    return [fx.door_forced(compartment="A01") for _ in range(count)]


def test_seq_rises_by_one_across_reopen_and_pruning(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal.open(path, cab=CAB) as journal:
        first = journal.append_events(forced(3))
        assert [e.seq for e in first] == [1, 2, 3]
        assert journal.ack_upto(3) == 3
        assert journal.unacked() == []
    with Journal.open(path, cab=CAB) as journal:
        # Every event was acked and pruned, yet the counter remembers: seq 1 is never reused.
        again = journal.append_events(forced(2))
        assert [e.seq for e in again] == [4, 5]
        assert [e.seq for e in journal.unacked()] == [4, 5]
        assert [e.seq for e in journal.unacked(after_seq=4)] == [5]
        assert journal.unacked()[0] == again[0]  # same id, ts and data as first handed out


def test_ack_prunes_only_what_it_covers_and_clamps_to_last_seq(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.db", cab=CAB) as journal:
        journal.append_events(forced(5))
        assert journal.ack_upto(2) == 2
        assert [e.seq for e in journal.unacked()] == [3, 4, 5]
        assert journal.ack_upto(2) == 0  # a repeated ack is harmless
        assert journal.ack_upto(99) == 3  # past the last seq: clamped
        journal.append_events(forced(1))
        assert [e.seq for e in journal.unacked()] == [6]  # not forgotten in advance


def test_commit_step_is_all_or_nothing(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.db", cab=CAB) as journal:
        envelopes = journal.commit_step({"v": 1, "n": 1}, forced(2), ["A01"])
        assert [e.seq for e in envelopes] == [1, 2]
        assert envelopes[0].cab == CAB and envelopes[0].type == "door.forced"
        bad = SimpleNamespace(type="door.forced", data={"compartment": "not a label!"})
        with pytest.raises(MessageError, match=r"data\.compartment: event door\.forced"):
            journal.commit_step({"v": 1, "n": 2}, [*forced(1), bad], ["B02"])
        snapshot = journal.load_snapshot()
        assert snapshot is not None and snapshot.data == {"v": 1, "n": 1}
        assert snapshot.last_seq == journal.last_seq == 2
        assert journal.pending_unlocks() == ["A01"]
        journal.unlock_done("A01")
        assert journal.pending_unlocks() == []


def test_commits_never_checkpoint_the_wal_the_daemons_worker_thread_does(tmp_path: Path) -> None:
    """A commit that copies the WAL into the main file would make its unlock wait for it."""
    path = tmp_path / "j.db"
    with Journal.open(path, cab=CAB) as journal:
        journal.commit_step({"n": 0})
        main_size = path.stat().st_size
        for n in range(1, 60):  # ~25 pages each: past SQLite's default 1,000-page checkpoint
            journal.commit_step({"n": n, "blob": random.randbytes(50_000).hex()})
        assert path.stat().st_size == main_size  # every commit only appended to the WAL
        assert journal.commits_since_checkpoint >= 60
        assert journal.checkpoint() > 1000
        assert journal.commits_since_checkpoint == 0
        assert path.stat().st_size > main_size
        journal.commit_step({"n": 60})  # commits go on after it, on their own connection
    with Journal.open(path, cab=CAB) as journal:
        snapshot = journal.load_snapshot()
        assert snapshot is not None and snapshot.data == {"n": 60}


def test_command_answers_are_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal.open(path, cab=CAB) as journal:
        assert journal.command_result("c1") is None
        journal.begin_command("c1")
        journal.record_command("c1", Ack(cmd="c1", ok=True))
        # The first answer stands, whatever comes later.
        journal.record_command("c1", Ack.failure("c1", "late"))
        journal.commit_step(None, forced(1), command=Ack.failure("c2", "no such door"))
        journal.begin_command("c3")  # then the process dies before answering
    with Journal.open(path, cab=CAB) as journal:
        assert journal.command_result("c1") == Ack(cmd="c1", ok=True)
        assert journal.command_result("c2") == Ack.failure("c2", "no such door")
        assert journal.command_result("c3") == Ack.failure("c3", INTERRUPTED)


def test_a_journal_belongs_to_one_cabinet(tmp_path: Path) -> None:
    Journal.open(tmp_path / "j.db", cab=CAB).close()
    with pytest.raises(JournalError, match="belongs to cabinet 'cab1'"):
        Journal.open(tmp_path / "j.db", cab="cab2")


def test_boot_rises_at_every_call_and_survives_reopen(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.db", cab=CAB) as journal:
        assert [journal.next_boot(), journal.next_boot()] == [1, 2]
    with Journal.open(tmp_path / "j.db", cab=CAB) as journal:
        assert journal.boot == 2 and journal.next_boot() == 3


KILLS = 5


def test_kill_9_at_random_moments_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    rng = random.Random(20261123)
    committed_step, committed_seq = 0, 0
    for kill in range(KILLS):
        writer = subprocess.Popen(
            [sys.executable, str(WRITER), str(path), CAB, str(kill)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        target = rng.randint(5, 60)  # steps this run commits (at least) before the kill
        lines: list[str] = []
        wait_for(
            lambda: lines.append(writer.stdout.readline()) or len(lines) >= target,  # noqa: B023
            20,
            f"{target} committed steps",
        )
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        step, seq = map(int, lines[-1].split())
        assert step > committed_step and seq > committed_seq
        committed_step, committed_seq = step, seq

        with Journal.open(path, cab=CAB) as journal:
            snapshot = journal.load_snapshot()
            assert snapshot is not None
            # Whatever was printed was committed, and the snapshot agrees with the events.
            assert snapshot.data["step"] >= committed_step
            assert snapshot.data["last_seq"] == snapshot.last_seq == journal.last_seq
            seqs = [e.seq for e in journal.unacked()]
            assert seqs == list(range(seqs[0], journal.last_seq + 1))
            # The writer acks up to 5 short of its last seq: pruning never reaches past an ack.
            assert len(seqs) >= min(5, journal.last_seq)
            committed_step, committed_seq = snapshot.data["step"], journal.last_seq
