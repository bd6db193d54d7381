"""One campaign: start the cluster, drive the workload under the nemesis, heal, wait for quiet,
check, report. `run(options)` returns a `Result`; `locker chaos` prints it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import time as wall_time
from pathlib import Path
from typing import Any

import httpx

from locker.chaos.checker import INVARIANTS, Checker, Violation, dump, gather, read_journal
from locker.chaos.cluster import Cluster, ClusterOptions
from locker.chaos.erp import Erp
from locker.chaos.history import History
from locker.chaos.nemesis import KINDS, Nemesis
from locker.chaos.phones import Notice, openid_of
from locker.chaos.workload import Parcel, Workload, plan

QUIET_FOR_S = 3.0  # how long nothing may move before the checker looks
ROUND = 12  # parcels per round: four per cabinet, then the clock jumps for those left


@dataclass
class CampaignOptions:
    data_dir: Path
    seed: int
    cycles: int = 60
    faults: int = 20
    fault_gap_s: float = 2.0  # the mean gap between two faults
    max_fault_s: float = 6.0  # the longest a cut, a refusal or a board power-off lasts
    pg_admin_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    site_time: wall_time | None = None
    quiet_timeout_s: float = 90.0
    # The longest a person waits for the system (an SMS, an expiry, the cabinet being told of a
    # retrieval) before giving up on that step. A run with a planted bug that loses events sets
    # it short: the checker, not the workload's patience, is what judges.
    patience_s: float = 90.0
    kinds: tuple[str, ...] = KINDS
    plant: str | None = None  # a planted bug for the workers (tests only)
    # A replay: these faults (a run's history, `nemesis.faults_of`), each at its workload step,
    # instead of the seed's; the seed still plans the parcels.
    schedule: list[dict[str, Any]] | None = None


def replay_options(history_path: Path, data_dir: Path, pg_admin_url: str) -> CampaignOptions:
    """The options that re-run a recorded run: its seed, cycles and settings, and the faults it
    injected, each at the workload step it came at."""
    from locker.chaos.history import read_history
    from locker.chaos.nemesis import faults_of

    records = read_history(history_path)
    start = next((r for r in records if r["who"] == "workload" and r["op"] == "start"), None)
    if start is None:
        raise ValueError(f"{history_path} has no start record: not a chaos history")
    site_time = start.get("site_time")
    return CampaignOptions(
        data_dir=data_dir,
        seed=start["seed"],
        cycles=start["cycles"],
        pg_admin_url=pg_admin_url,
        site_time=wall_time.fromisoformat(site_time) if site_time else None,
        patience_s=start.get("patience_s", 90.0),
        quiet_timeout_s=start.get("quiet_timeout_s", 90.0),
        plant=start.get("plant"),
        schedule=faults_of(records),
    )


@dataclass
class Result:
    seed: int
    cycles: int
    outcomes: dict[str, int]
    faults: dict[str, int]
    checked: dict[str, int]
    paths: dict[str, int]  # how the parcels went: see `paths`
    violations: list[Violation]
    excerpts: list[str]
    seconds: float
    history_path: Path
    replayed: bool = False
    nemesis_errors: list[str] = field(default_factory=list)
    supervised: list[str] = field(default_factory=list)  # restarted after exiting on their own

    @property
    def ok(self) -> bool:
        return not self.violations


def run(
    options: CampaignOptions,
    *,
    echo: Callable[[str], None] = lambda _line: None,
    progress: Callable[[int], None] = lambda _n: None,
) -> Result:
    started = time.monotonic()
    options.data_dir.mkdir(parents=True, exist_ok=True)
    history_path = options.data_dir / "chaos-history.jsonl"
    history = History(history_path)
    cluster = Cluster(
        ClusterOptions(
            data_dir=options.data_dir / "stack",
            pg_admin_url=options.pg_admin_url,
            site_time=options.site_time,
            plant=options.plant,
        ),
        echo=echo,
    )
    engine: Any = None
    try:
        info = cluster.start()
        assert cluster.database is not None and cluster.stack is not None
        sinks = cluster.stack.sinks
        assert sinks is not None
        from cloud.db.engine import make_engine

        database_url = cluster.database.url  # direct, not through the nemesis's proxy
        engine = make_engine(database_url)

        def notices() -> list[Notice]:
            with sinks.twilio.lock:
                sms = [Notice("sms", m.to, m.body) for m in sinks.twilio.messages]
            with sinks.wechat.lock:
                wechat = [Notice("wechat", m.touser, m.text, m.url) for m in sinks.wechat.messages]
            return sms + wechat

        def wechat_with_ids() -> list[tuple[str, str, str]]:
            with sinks.wechat.lock:
                return [(str(m.msgid), m.touser, m.text) for m in sinks.wechat.messages]

        def sms_with_ids() -> list[tuple[str, str, str]]:
            with sinks.twilio.lock:
                return [(m.sid, m.to, m.body) for m in sinks.twilio.messages]

        def cloud_status(tracking: list[str]) -> dict[str, str]:
            from sqlmodel import Session, col, select

            from cloud.db.models import Parcel as ParcelRow

            with Session(engine) as session:
                rows = session.exec(
                    select(ParcelRow.tracking_no, ParcelRow.status).where(
                        col(ParcelRow.tracking_no).in_(tracking)
                    )
                )
                return dict(rows.all())

        parcels = plan(options.seed, options.cycles, [c.id for c in info.cabinets])
        _bind_wechat(engine, parcels)
        receiver = cluster.stack.receiver
        assert receiver is not None
        with httpx.Client(timeout=10) as http:
            webhook_id = Erp(http, info.api_url, info.erp_key).register(receiver)
        history.add("workload", "webhook.registered", webhook_id=webhook_id)
        workload = Workload(
            info, history, notices=notices, cloud_status=cloud_status, wait_s=options.patience_s
        )
        workload.on_progress = progress
        history.add(
            "workload",
            "start",
            seed=options.seed,
            cycles=options.cycles,
            plant=options.plant,
            patience_s=options.patience_s,
            quiet_timeout_s=options.quiet_timeout_s,
            site_time=options.site_time.isoformat() if options.site_time else None,
            replay=options.schedule is not None,
        )
        nemesis = Nemesis(
            cluster,
            history,
            seed=options.seed,
            gap_s=options.fault_gap_s,
            limit=options.faults,
            max_fault_s=options.max_fault_s,
            kinds=options.kinds,
            schedule=options.schedule,
        ).start()
        try:
            for first in range(0, len(parcels), ROUND):
                workload.run_round(parcels[first : first + ROUND])
        finally:
            nemesis.stop_and_heal()
            history.add("nemesis", "healed", faults=dict(nemesis.counts))
        cluster.wait_all_running()
        for name, status in cluster.supervised:
            history.add("nemesis", "supervisor-restart", target=name, status=status)
        _wait_kiosks(workload, info)
        _wait_quiet(cluster, engine, options.quiet_timeout_s, history)
        evidence = gather(info, parcels, sms_with_ids, database_url)
        evidence.wechat = wechat_with_ids()
        evidence.webhooks = receiver.received()
        (options.data_dir / "chaos-evidence.json").write_text(dump(evidence))
        checker = Checker(history)
        violations = checker.check(evidence)
        excerpts = [history.excerpt(v.records) for v in violations]
        outcomes: dict[str, int] = {}
        for parcel in parcels:
            outcomes[parcel.state] = outcomes.get(parcel.state, 0) + 1
        workload.close()
        return Result(
            seed=options.seed,
            cycles=options.cycles,
            outcomes=outcomes,
            faults={
                kind: nemesis.counts.get(kind, 0)
                for kind in (KINDS if options.schedule is not None else options.kinds)
            },
            checked={name: checker.checked.get(name, 0) for name in INVARIANTS},
            paths=paths(parcels),
            violations=violations,
            excerpts=excerpts,
            seconds=time.monotonic() - started,
            history_path=history_path,
            replayed=options.schedule is not None,
            nemesis_errors=nemesis.errors,
            supervised=[name for name, _status in cluster.supervised],
        )
    finally:
        if engine is not None:
            engine.dispose()
        history.close()
        cluster.stop()


def paths(parcels: list[Parcel]) -> dict[str, int]:
    """How the parcels went, for the table: each path planned and how many were picked up by it,
    those announced by the ERP, those whose recipient is on WeChat."""
    counts: dict[str, int] = {}
    for parcel in parcels:
        for key in (f"planned {parcel.path}", *(["ERP-announced"] if parcel.erp else [])):
            counts[key] = counts.get(key, 0) + 1
        if parcel.wechat:
            counts["WeChat recipients"] = counts.get("WeChat recipients", 0) + 1
        if parcel.reserved_door:
            counts["deposited in their held door"] = (
                counts.get("deposited in their held door", 0) + 1
            )
        if parcel.picked_by:
            key = f"picked up by {parcel.picked_by}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _bind_wechat(engine: Any, parcels: list[Parcel]) -> None:
    """The WeChat recipients' bindings, as the official account leaves them once a phone is
    proven: their notices then go by WeChat."""
    from datetime import UTC, datetime

    from sqlmodel import Session

    from cloud.db.models import WechatBinding

    now = datetime.now(UTC)
    with Session(engine) as session:
        for phone in sorted({p.phone for p in parcels if p.wechat}):
            session.add(WechatBinding(openid=openid_of(phone), phone=phone, created_at=now))
        session.commit()


def _wait_kiosks(workload: Workload, info: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(workload.kiosk_status(c) for c in info.cabinets):
        if time.monotonic() > deadline:
            raise RuntimeError("a kiosk does not answer after healing")
        time.sleep(0.2)


def _wait_quiet(cluster: Cluster, engine: Any, timeout_s: float, history: History) -> None:
    """Until every journal is acked, the cloud applied it all, and no notice or command waits."""
    from sqlalchemy import text
    from sqlmodel import Session

    deadline = time.monotonic() + timeout_s
    started = time.monotonic()
    quiet_since: float | None = None
    while True:
        journals = {c.id: read_journal(c) for c in cluster.cabinets}
        with Session(engine) as session:
            applied = dict(session.exec(text("SELECT id, applied_upto FROM cabinets")).all())
            queued = session.exec(
                text("SELECT COUNT(*) FROM notice_outbox WHERE status = 'queued'")
            ).one()[0]
            # Webhooks still to fan out or to deliver (the receiver is always up).
            queued += session.exec(
                text(
                    "SELECT (SELECT COUNT(*) FROM webhook_outbox WHERE status = 'queued')"
                    " + (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending')"
                )
            ).one()[0]
        quiet = queued == 0 and all(
            j["unacked"] == 0 and applied.get(cab) == j["last_seq"] for cab, j in journals.items()
        )
        # Quiet means it stays so: the last door shut a moment ago may still be on its way.
        if not quiet:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_FOR_S:
            history.add("workload", "quiet", after_s=round(time.monotonic() - started, 1))
            return
        if time.monotonic() > deadline:
            history.add("workload", "not-quiet", journals=journals, applied=applied, queued=queued)
            return
        time.sleep(0.25)
