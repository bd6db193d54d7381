"""The cloud's ingest through a real PgBouncer in transaction mode (deploy/SCALING.md).

Debian's PgBouncer (1.18) does not track prepared statements, and psycopg 3 prepares a query on
the server after its 5th run on a connection: behind transaction pooling the next transaction
may run on a server connection that has, or lacks, that statement. The first test shows the
failure with the default settings; the second runs the real exactly-once ingest (store, then
apply under the cabinet's row lock) from three engines through the pooler with
`?prepare_threshold=none` in the URL, and every event is applied once, in order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from cloud.db import repo
from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.services.ingest import apply_pending, store_events
from tests.cloud.db.builders import CAB, SEAL_KEY, T0, deposited, picked_up, register_cabinet
from tests.deploy.tools import debian, require_tool
from tests.services import TempDatabase, find_executable, free_port, port_accepts, wait_for


class PgBouncer:
    """One pgbouncer in transaction mode, one server connection, in front of `database`."""

    def __init__(self, database: TempDatabase) -> None:
        # Debian installs it in /usr/sbin, which is not on a normal user's PATH.
        binary = find_executable(("pgbouncer", "/usr/sbin/pgbouncer")) or require_tool(
            "pgbouncer", debian("pgbouncer")
        )
        server = urlsplit(database.admin_url)
        self.port = free_port()
        # PgBouncer refuses to run as root: as root it runs as postgres, from a folder it can read.
        self.workdir = Path(tempfile.mkdtemp(prefix="locker-pgbouncer-"))
        (self.workdir / "userlist.txt").write_text('"postgres" ""\n')
        (self.workdir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{database.name} = host={server.hostname} port={server.port or 5432} "
            f"dbname={database.name} user={server.username or 'postgres'}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.workdir / 'userlist.txt'}\n"
            "pool_mode = transaction\ndefault_pool_size = 1\n"
            f"logfile = {self.workdir / 'pgbouncer.log'}\n"
        )
        as_user: dict[str, object] = {}
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
            for path in self.workdir.iterdir():
                shutil.chown(path, "postgres")
            as_user = {"user": "postgres", "group": "postgres", "extra_groups": []}
        self.process = subprocess.Popen(
            [binary, str(self.workdir / "pgbouncer.ini")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **as_user,
        )
        try:
            wait_for(
                lambda: self.process.poll() is not None or port_accepts("127.0.0.1", self.port),
                10,
                "pgbouncer to listen",
            )
        except TimeoutError:
            self.stop()
            raise
        if self.process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited: {self.process.stderr.read().decode()}")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database.name}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture
def bouncer(postgres_factory: Callable[[], TempDatabase]) -> Iterator[PgBouncer]:
    database = postgres_factory()
    upgrade(database.url)  # migrations go straight to PostgreSQL, as SCALING.md says
    pooler = PgBouncer(database)
    yield pooler
    pooler.stop()


def events(n: int) -> list:
    """Deposit P1, pick it up, deposit P3, pick it up, ... in compartment A01."""
    return [deposited(seq) if seq % 2 else picked_up(seq, seq - 1) for seq in range(1, n + 1)]


def test_psycopg_prepared_statements_break_behind_transaction_pooling(bouncer: PgBouncer) -> None:
    clients = [psycopg.connect(bouncer.url.replace("+psycopg", "")) for _ in range(2)]
    try:
        with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
            for n in range(12):  # both clients prepare "_pg3_0" on the one server connection
                clients[n % 2].execute("SELECT %s::int + 1", (n,)).fetchone()
                clients[n % 2].commit()
    finally:
        for client in clients:
            client.close()


def test_exactly_once_ingest_through_pgbouncer_with_prepare_threshold_none(
    bouncer: PgBouncer,
) -> None:
    engines = [make_engine(f"{bouncer.url}?prepare_threshold=none") for _ in range(3)]
    try:
        with Session(engines[0]) as session:
            register_cabinet(session)
        stream = events(24)
        applied = 0
        for n, envelope in enumerate(stream):
            # Each event reaches a different worker, and one in three is a redelivery.
            for copy in range(2 if n % 3 == 0 else 1):
                with Session(engines[(n + copy) % 3]) as session:
                    store_events(session=session, cab=CAB, envelopes=[envelope], now=T0)
                    result = apply_pending(session=session, cab=CAB, now=T0, seal_key=SEAL_KEY)
                    applied += result.applied
                    assert result.anomalies == 0
        with Session(engines[1]) as session:
            cabinet = repo.get_cabinet(session=session, cab=CAB)
            assert cabinet is not None and cabinet.applied_upto == len(stream)
        assert applied == len(stream)
    except DBAPIError as err:  # name the setting if it ever stops being enough
        pytest.fail(f"ingest through PgBouncer failed: {err.orig!r}")
    finally:
        for engine in engines:
            engine.dispose()


def test_a_bad_prepare_threshold_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="prepare_threshold must be `none` or a whole number"):
        make_engine("postgresql+psycopg://postgres@127.0.0.1:1/x?prepare_threshold=soon")
