"""`locker bench ingest`: the worker's ingest transaction alone, fed in process: its CPU and its
statements per deposit.

`locker bench cloud` measures the whole path (broker, MQTT, command acks) on a machine other
jobs share, so its per-event figures move by a tenth between two runs of one code. This feeds
batches of new parcels' deposits (the bench's own events, many cabinets a batch) straight into
`IngestLoop.handle` on a scratch PostgreSQL database and reads the CPU of this process
(`time.process_time`) and of its database backend (/proc), and counts the statements each batch
sends (SQLAlchemy's `before_cursor_execute`): the ingest's own cost, with nothing else in it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, text

from locker.bench.cloud import _deposit, register_cabinets
from locker.harness.processes import cpu_s

SEAL_KEY = b"locker-bench-ingest-secret-key-32"
WARM_UP_BATCHES = 5  # prepared statements, caches and the pool settle first


@dataclass
class IngestFigures:
    cabinets: int
    batches: int
    batch: int
    deposits: int
    worker_ms_per_deposit: float  # this process (the ingest loop), CPU
    postgresql_ms_per_deposit: float  # its database backend, CPU
    statements_per_batch: float
    fallback_batches: int
    statements: dict[str, float] = field(default_factory=dict)  # per batch, by statement start


def run(url: str, *, cabinets: int, batches: int, batch: int) -> IngestFigures:
    """Register `cabinets`, then feed `batches` batches of `batch` deposits (each cabinet in
    turn, so a batch holds `batch` cabinets' events when `cabinets` >= `batch`)."""
    from cloud.db.engine import make_engine
    from cloud.worker.ingest_loop import IngestLoop
    from cloud.worker.mqtt import Received
    from protocol.codec import encode
    from protocol.topics import event_topic

    register_cabinets(url, cabinets, seal_key=SEAL_KEY)
    engine = make_engine(url, pool_pre_ping=False)  # as the worker's (locker cloud worker)
    counting = False
    statements: Counter[str] = Counter()

    @event.listens_for(engine, "before_cursor_execute")
    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if counting:
            statements[" ".join(statement.split())[:72]] += 1

    loop = IngestLoop(
        engine=engine, publish=lambda *_: True, seal_key=SEAL_KEY, clock=lambda: datetime.now(UTC)
    )
    seqs: Counter[int] = Counter()
    turn = 0

    def deliveries() -> list[Any]:
        nonlocal turn
        made = []
        for _ in range(batch):
            cab, turn = turn % cabinets, turn + 1
            seqs[cab] += 1
            deposit = _deposit(cab, seqs[cab], datetime.now(UTC))
            made.append(Received(event_topic(deposit.cab), encode(deposit), datetime.now(UTC)))
        return made

    try:
        for _ in range(WARM_UP_BATCHES):
            loop.handle(deliveries())
        with engine.connect() as connection:  # the pool's one connection: the loop's backend
            backend = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
        fed = [deliveries() for _ in range(batches)]
        fallbacks = loop.stats.fallback_batches
        counting = True
        cpu, pg = time.process_time(), cpu_s(backend)
        for one in fed:
            loop.handle(one)
        cpu, pg = time.process_time() - cpu, cpu_s(backend) - pg
        counting = False
    finally:
        engine.dispose()
    deposits = batches * batch
    return IngestFigures(
        cabinets=cabinets,
        batches=batches,
        batch=batch,
        deposits=deposits,
        worker_ms_per_deposit=round(1000 * cpu / deposits, 3),
        postgresql_ms_per_deposit=round(1000 * pg / deposits, 3),
        statements_per_batch=round(sum(statements.values()) / batches, 2),
        fallback_batches=loop.stats.fallback_batches - fallbacks,
        statements={s: round(n / batches, 2) for s, n in statements.most_common()},
    )


def as_dict(figures: IngestFigures) -> dict[str, Any]:
    return asdict(figures)
