"""`locker chaos`: the fault campaign (see locker/chaos/)."""

from __future__ import annotations

import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from locker.harness.postgres import DEFAULT_ADMIN_URL


def chaos(
    cycles: Annotated[
        int,
        typer.Option(
            min=1,
            help="Parcel cycles to run: each is one deposit (a third announced by the ERP "
            "first) and then a pickup (the notice's code or QR, or scan-to-open), or an expiry "
            "and the courier's retrieval.",
        ),
    ] = 60,
    seed: Annotated[
        int,
        typer.Option(
            help="Seeds the workload's parcels and the nemesis's schedule; a failing run prints "
            "it, and the same --seed replays the same plan of parcels and faults."
        ),
    ] = 1,
    faults: Annotated[
        int | None,
        typer.Option(
            min=0, help="Faults to inject over the run (default: one every three cycles)."
        ),
    ] = None,
    fault_gap_s: Annotated[
        float, typer.Option(min=0.1, help="Mean seconds between two faults (exponential gaps).")
    ] = 2.0,
    max_fault_s: Annotated[
        float,
        typer.Option(
            min=0.5, help="Longest a network cut, PostgreSQL refusal or board power-off lasts."
        ),
    ] = 6.0,
    kinds: Annotated[
        str | None,
        typer.Option(
            help="Only these fault kinds, comma-separated (default: every kind): kill-cabinet, "
            "kill-worker, kill-api, kill-broker, cut-cabinet, cut-worker, pg-refuse, board, "
            "sms-fail, duplicate, jam, stuck-sensor, clock-skew.",
            show_default=False,
        ),
    ] = None,
    patience_s: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Longest a person waits for the system (an SMS, an expiry) before giving up "
            "on that step; a run that loses events on purpose (--plant) sets it short.",
        ),
    ] = 90.0,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the run (logs, history, evidence); default a new temporary one, "
            "kept and printed at the end."
        ),
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(
            help="Re-run a recorded run (its chaos-history.jsonl): the same seed, cycles and "
            "settings, and the same faults, each injected at the workload step it came at "
            "(not at the same instant). --cycles, --seed and the fault options are ignored.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    shrink_runs: Annotated[
        int,
        typer.Option(
            "--shrink",
            min=0,
            help="On a violation, replay the run up to this many times with fewer cycles, then "
            "fewer faults (delta debugging), keeping each cut that still fails, and print the "
            "shortest failing history found (each replay is a whole run: minutes). 0: don't.",
        ),
    ] = 0,
    plant: Annotated[
        str | None,
        typer.Option(
            hidden=True,
            help="Plant a bug in the cloud workers for this run (locker/chaos/plants.py), to "
            "show the checker catches it.",
        ),
    ] = None,
    pg_admin_url: Annotated[
        str,
        typer.Option(
            envvar="LOCKER_TEST_PG_ADMIN_URL",
            help="A PostgreSQL role that may create databases: the run makes one of its own "
            "and drops it at the end. The server is never restarted.",
        ),
    ] = DEFAULT_ADMIN_URL,
) -> None:
    """Run parcels through crashes, cuts and restarts, then prove nothing was lost.

    Starts the real processes on this machine: Mosquitto (the registry's passwords and ACLs), a
    PostgreSQL database of the run's own, the API, 2 cloud workers sharing the event
    subscription, 3 cabinet daemons on simulated lock boards, the fake Twilio and WeChat. Each
    cabinet's and worker's broker link and every PostgreSQL connection go through a proxy the
    nemesis can cut.

    The workload: the shop's ERP announces a third of the parcels (a door held for each) and
    takes their webhooks; couriers deposit at the kiosks; recipients (a third on WeChat) pick up
    with the code from their notice, its QR at the scanner, or scan-to-open from their phone;
    the rest expire (the workers' injected clock jumps past the window) and the couriers take
    them back. Meanwhile the nemesis, from --seed, at random instants: kill -9 and
    restarts a cabinet daemon, a worker, the API or the broker; cuts, stalls or delays one
    cabinet's or worker's link; makes PostgreSQL refuse connections; powers a lock board off,
    garbles its replies or the bus; makes the SMS provider fail.

    Then everything is healed, the system left to go quiet, and the checker proves: every
    deposited parcel in a legal state with its timeline in order; every cabinet's seq gapless
    in the cloud, no event applied twice; no notice sent twice, one code per parcel by SMS or
    WeChat; every door opening on the simulator traced to a recorded act; the cloud's picture
    of every door equal to the cabinet's; every status of an announced parcel delivered to the
    ERP once, verified, in order; no door held for a parcel deposited or cancelled. It prints
    a table; on a violation, the seed and the history that shows it, and exits 1.

    Example: `locker chaos --cycles 200 --seed 7` (about 4 minutes on a 2-core machine).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from locker.chaos.campaign import CampaignOptions, replay_options, run
    from locker.chaos.report import print_result
    from locker.harness import ServiceMissing

    # A SIGTERM ends the run as Ctrl-C does: through the campaign's clean-up, which stops every
    # process it started by its pid and drops its database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    console = Console()
    folder = data or Path(tempfile.mkdtemp(prefix="locker-chaos-"))
    if replay is not None:
        try:
            options = replay_options(replay, folder, pg_admin_url)
        except (ValueError, KeyError) as err:
            console.print(f"[red]cannot replay {replay}:[/] {err}")
            raise typer.Exit(2) from None
        cycles = options.cycles
        schedule = options.schedule or []
        console.print(
            f"[bold]locker chaos --replay[/] {replay}: {cycles} parcel cycles, "
            f"{len(schedule)} faults at their steps, seed {options.seed}; run folder {folder}"
        )
    else:
        from locker.chaos.nemesis import KINDS

        chosen = tuple(k.strip() for k in kinds.split(",") if k.strip()) if kinds else KINDS
        unknown = sorted(set(chosen) - set(KINDS))
        if unknown or not chosen:
            console.print(f"[red]unknown fault kinds {unknown}[/]; known: {', '.join(KINDS)}")
            raise typer.Exit(2)
        options = CampaignOptions(
            data_dir=folder,
            seed=seed,
            cycles=cycles,
            faults=faults if faults is not None else max(1, cycles // 3),
            fault_gap_s=fault_gap_s,
            max_fault_s=max_fault_s,
            pg_admin_url=pg_admin_url,
            plant=plant,
            kinds=chosen,
            patience_s=patience_s,
            quiet_timeout_s=min(90.0, max(10.0, patience_s)),
        )
        console.print(
            f"[bold]locker chaos[/]: {cycles} parcel cycles, up to {options.faults} faults, "
            f"seed {seed}; run folder {folder}"
        )
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("parcel cycles", total=cycles)
        try:
            result = run(
                options,
                echo=lambda line: bar.console.print(f"  {line}", markup=False),
                progress=lambda n: bar.advance(task, n),
            )
        except ServiceMissing as err:
            console.print(f"[red]{err}[/]")
            raise typer.Exit(2) from None
    print_result(console, result)
    if not result.ok:
        if shrink_runs:
            _shrink(console, result, folder / "shrink", pg_admin_url, shrink_runs)
        raise typer.Exit(1)


def _shrink(console: Any, failing: Any, folder: Path, pg_admin_url: str, max_runs: int) -> None:
    """Replay `failing` smaller and smaller; print the shortest failing history found."""
    from locker.chaos.campaign import replay_options, run
    from locker.chaos.report import print_result
    from locker.chaos.shrink import shrink

    console.print(f"[bold]shrinking[/]: up to {max_runs} replays, each a whole run")
    options = replay_options(failing.history_path, folder, pg_admin_url)
    shrunk = shrink(
        options,
        failing,
        run_one=lambda candidate: run(candidate),
        max_runs=max_runs,
        echo=lambda line: console.print(f"  {line}", markup=False),
    )
    if not shrunk.reproduced:
        console.print(
            "[yellow]the violation did not come back on a replay[/] (it needed the original "
            f"instants): replay the original, {failing.history_path}"
        )
        return
    kinds = sorted({f.get("kind", "?") for f in shrunk.options.schedule or []})
    console.print(
        f"[bold]shortest failing run found[/] in {shrunk.runs} replays: "
        f"{shrunk.options.cycles} cycles, {len(shrunk.options.schedule or [])} faults "
        f"({', '.join(kinds) or 'none'})"
    )
    print_result(console, shrunk.result)
