"""`locker cabinet doctor`: what is on the RS485 bus, and what is wrong with its wiring."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

if TYPE_CHECKING:
    from cabinet.doctor import Board, Report

EXIT_PROBLEMS = 1  # the scan ran and found wiring problems (or nothing at all)
EXIT_USAGE = 2


def _addresses(text: str | None) -> dict[str, range] | None:
    if text is None:
        return None
    from cabinet.doctor import ADDRESSES

    try:
        first, _, last = text.partition("-")
        low, high = int(first), int(last or first)
    except ValueError:
        raise typer.BadParameter(
            "give an address range such as 1-8", param_hint="'--addresses'"
        ) from None
    return {
        family: range(max(low, every.start), min(high, every.stop - 1) + 1)
        for family, every in ADDRESSES.items()
    }


def _pulse_target(text: str | None) -> tuple[str, int, int] | None:
    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in ("8a", "krcu") or not all(p.isdigit() for p in parts[1:]):
        raise typer.BadParameter(
            "give FAMILY:BOARD:CHANNEL, such as 8a:1:3 or krcu:2:16", param_hint="'--pulse'"
        )
    return parts[0], int(parts[1]), int(parts[2])


def doctor(
    ports: Annotated[
        list[str],
        typer.Option(
            "--port",
            "-p",
            help="A serial port (device path or pyserial URL) to scan; repeat for each bus.",
            show_default=False,
        ),
    ],
    pulse: Annotated[
        str | None,
        typer.Option(
            help="Fire one lock, once, after the scan: FAMILY:BOARD:CHANNEL (8a:1:3, krcu:2:16). "
            "Learns how the board answers unlocks and reads the lock back. Stand clear of it.",
            show_default=False,
        ),
    ] = None,
    write: Annotated[
        Path | None,
        typer.Option(
            help="Write the layout found as cabinet TOML (buses, boards, compartments) here.",
            show_default=False,
        ),
    ] = None,
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="The cabinet's TOML: its boards are expected, so one that stays quiet is "
            "named a silent board.",
            show_default=False,
        ),
    ] = None,
    addresses: Annotated[
        str | None,
        typer.Option(help="Only ask these addresses (1-8); default every address of each family."),
    ] = None,
    timeout_ms: Annotated[
        int, typer.Option(min=5, max=2000, help="How long a board has to answer a query.")
    ] = 100,
    reads: Annotated[
        int,
        typer.Option(
            min=1, max=10, help="Status reads per board: a door open in all never closed."
        ),
    ] = 2,
) -> None:
    """Scan RS485 buses for lock boards, show what they read, and name wiring problems.

    For an installer at a new cabinet. Each port is scanned at both families' rates: the
    8A/80 boards at 9600 baud (addresses 1-64), the Kerong KR-CU16 boards at 19200 (boards
    1-15). For every board found it prints the family, address, channel count, polarity, every
    door (shut or open) and, on KR-CU boards, every occupancy sensor. It unlocks nothing unless
    asked with --pulse.

    Problems it names: two boards on one DIP address (their replies collide), a board the
    --config names that does not answer, a door that reads open in every read (it never
    reports closed), and two board families on one wire.

    Exit status: 0 when boards were found and nothing is wrong, 1 when it found problems or
    no board at all, 2 for bad options.

    Examples:

        locker cabinet doctor --port /dev/ttyUSB0

        locker cabinet doctor -p /dev/ttyUSB0 --pulse 8a:1:3 --write found.toml

    Against the simulator (a two-family wire with a planted DIP clash at address 2):

        locker sim --boards 2 --krcu-boards 1 --clash 2 --link /tmp/ttyLOCK &

        locker cabinet doctor --port /tmp/ttyLOCK --addresses 1-4
    """
    from cabinet.doctor import FAMILY_BAUD, Link, Timing, layout_toml, probes, scan
    from cabinet.doctor import pulse as fire

    console = Console(soft_wrap=True, highlight=False)
    target = _pulse_target(pulse)
    chosen = _addresses(addresses)
    expected: list[tuple[str, int]] = []
    if config_path is not None:
        from cabinet.config import load_config
        from cabinet.errors import ConfigError

        try:
            config = load_config(config_path, env={"LOCKER_CODE_KEY": "doctor-reads-no-codes"})
        except ConfigError as err:
            console.print(
                f"[red]error:[/] bad config {escape(str(config_path))}: {escape(str(err))}"
            )
            raise typer.Exit(EXIT_USAGE) from None
        expected = [(config.buses[b.bus].family, b.address) for b in config.boards]
    timing = Timing(
        reply_timeout_s=timeout_ms / 1000,
        quiet_gap_s=min(0.025, timeout_ms / 4000),
        reads=reads,
    )
    reports: list[Report] = []
    for port in ports:
        try:
            link = Link(port, timing)
        except Exception as err:  # pyserial raises several kinds for a port it cannot open
            console.print(f"[red]error:[/] cannot open {escape(port)}: {escape(str(err))}")
            raise typer.Exit(EXIT_USAGE) from None
        try:
            families = ("8a", "krcu")
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                console=console,
                transient=False,
            ) as bar:
                task = bar.add_task(f"scanning {port}", total=probes(families, chosen))

                def step(
                    family: str,
                    address: int,
                    bar: Progress = bar,
                    task: Any = task,
                    port: str = port,
                ) -> None:
                    baud = FAMILY_BAUD[family]
                    bar.update(task, advance=1, description=f"{port} {family} @{baud} #{address}")

                report = scan(
                    link, families=families, addresses=chosen, expected=expected, progress=step
                )
            if target is not None:
                family, address, channel = target
                board = next(
                    (b for b in report.boards if (b.family, b.address) == (family, address)), None
                )
                report.pulse = fire(link, family, address, channel, board)
        finally:
            link.close()
        reports.append(report)
        _print(console, report)
    if write is not None:
        write.write_text(layout_toml(reports), encoding="utf-8")
        console.print(f"layout written to {escape(str(write))}")
    boards = sum(len(r.boards) for r in reports)
    problems = sum(len(r.problems) for r in reports)
    console.print(f"{boards} board(s), {problems} problem(s).")
    if problems or not boards:
        raise typer.Exit(EXIT_PROBLEMS)


def _doors(board: Board) -> str:
    last = board.reads[-1] if board.reads else {}
    doors = "".join("■" if last.get(ch, True) else "□" for ch in range(1, board.channels + 1))
    return doors


def _print(console: Console, report: Report) -> None:
    table = Table(title=f"Boards on {report.port}  (■ shut □ open; sensors: ● full ○ empty)")
    for column in ("family", "address", "channels", "polarity", "unlock reply", "doors", "sensors"):
        table.add_column(column)
    for board in report.boards:
        sensors = (
            "".join("●" if board.sensors[ch] else "○" for ch in sorted(board.sensors))
            if board.sensors is not None
            else "-"
        )
        polarity = board.polarity.value + (" (guess)" if board.polarity_guessed else "")
        table.add_row(
            board.family,
            str(board.address),
            str(board.channels),
            polarity,
            board.unlock_reply or "(use --pulse)",
            _doors(board),
            sensors,
        )
    console.print(table)
    if report.pulse is not None:
        p = report.pulse
        outcome = {True: "released", False: "still latched", None: "did not read back"}
        console.print(
            f"pulse {p.family} board {p.address} lock {p.channel}: reply {p.reply}, "
            f"{outcome[p.released]}, {p.seconds * 1000:.0f} ms"
        )
    for problem in report.problems:
        console.print(f"[yellow]problem:[/] {escape(problem.detail)}")
