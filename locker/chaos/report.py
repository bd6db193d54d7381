"""The campaign's result as a person reads it: a table, and on a violation the seed to replay
and the history that shows it."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from locker.chaos.campaign import Result


def print_result(console: Console, result: Result) -> None:
    title = f"locker chaos, seed {result.seed}" + (", a replay" if result.replayed else "")
    table = Table(title=title, show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("parcel cycles", str(result.cycles))
    for outcome, n in sorted(result.outcomes.items()):
        table.add_row(f"  ended {outcome}", str(n))
    table.add_row("how they went", "")
    for path, n in result.paths.items():
        table.add_row(f"  {path}", str(n))
    table.add_row("faults injected", str(sum(result.faults.values())))
    for kind, n in result.faults.items():
        table.add_row(f"  {kind}", str(n))
    table.add_row("restarts by the supervisor", str(len(result.supervised)))
    table.add_row("facts checked", str(sum(result.checked.values())))
    for name, n in result.checked.items():
        table.add_row(f"  {name}", str(n))
    table.add_row("violations", str(len(result.violations)))
    table.add_row("seconds", f"{result.seconds:.0f}")
    console.print(table)
    for error in result.nemesis_errors:
        console.print(f"[yellow]a fault could not be injected:[/] {escape(error)}")
    if result.ok:
        console.print(f"[green bold]no violation[/]; history in {result.history_path}")
        return
    console.print(
        f"[red bold]{len(result.violations)} violation(s)[/]; replay its faults at the same "
        f"workload steps with [bold]locker chaos --replay {result.history_path}[/] (the same "
        f"plan, new instants: [bold]locker chaos --seed {result.seed} --cycles "
        f"{result.cycles}[/])"
    )
    for violation, excerpt in zip(result.violations, result.excerpts, strict=True):
        console.print(f"[red]✗ {violation.invariant}[/]: {escape(violation.detail)}")
        if excerpt:
            console.print(escape(excerpt), markup=False, highlight=False)
