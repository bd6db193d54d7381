"""`locker sim`: serve a simulated RS485 lock-board bus on a pseudo-terminal."""

from __future__ import annotations

import signal
import threading
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from firmware_sim import BoardConfig, ControlServer, PtyServer, SimulatedBus, SimulatorError
from firmware_sim.pulse_log import PulseLog
from protocol.lockboard.common import Polarity
from protocol.lockboard.family_8a import (
    HEAD_QUERY,
    HEAD_UNLOCK,
    MAX_ADDRESS,
    MAX_CHANNELS,
    MAX_STATUS_BYTES,
)


class PolarityChoice(StrEnum):
    normal = "normal"
    inverted = "inverted"


class FamilyChoice(StrEnum):
    f8a = "8a"
    krcu = "krcu"


class ReplyHead(StrEnum):
    h8a = "8a"
    h80 = "80"


# `locker sim`'s options, named so its signature reads as a list.
BoardsOption = Annotated[
    int, typer.Option(min=1, max=MAX_ADDRESS, help="How many boards share the bus.")
]
LocksOption = Annotated[
    int,
    typer.Option(
        min=1, max=MAX_CHANNELS, help=f"Lock channels per board: 1–{MAX_CHANNELS} (e.g. 24, 50)."
    ),
]
StatusBytesOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=MAX_STATUS_BYTES,
        help="Status bytes in a query-all reply, as some boards send more than ceil(locks / 8) "
        "(an 8-lock board captured sending 3). Default: ceil(locks / 8).",
        show_default=False,
    ),
]
FirstAddressOption = Annotated[
    int,
    typer.Option(min=1, max=MAX_ADDRESS, help="DIP address of the first board; the others follow."),
]
LinkOption = Annotated[
    Path | None,
    typer.Option(help="Also make this symlink to the pty (e.g. /tmp/ttyLOCK); removed on exit."),
]
BaudOption = Annotated[int, typer.Option(min=1, help="Line speed for --wire-time.")]
WireTimeOption = Annotated[
    bool, typer.Option(help="Take as long as the wire would: 10 bits per byte at --baud.")
]
PolarityOption = Annotated[
    PolarityChoice, typer.Option(help="Lock status polarity: normal means 0x11 = closed.")
]
ReplyHeadOption = Annotated[
    ReplyHead, typer.Option(help="Head byte of the unlock reply (boards differ).")
]
ReportsOption = Annotated[
    bool, typer.Option(help="Boards send unasked `82` state reports when a lock changes.")
]
PulseMsOption = Annotated[
    int,
    typer.Option(min=0, max=5000, help="Unlock pulse per lock; the unlock reply follows it."),
]
FamilyOption = Annotated[
    FamilyChoice,
    typer.Option(
        help="The boards' family: 8a (the 8A/80 boards, 9600 baud) or krcu (Kerong KR-CU16, "
        "19200 baud, 16 locks and 16 occupancy sensors per board)."
    ),
]
KrcuBoardsOption = Annotated[
    int,
    typer.Option(
        min=0,
        max=15,
        help="Also put this many KR-CU16 boards (addresses 1, 2, ...) on the same wire: a "
        "two-family bus, each family heard only at its own baud.",
    ),
]
UnlockReplyOption = Annotated[
    bool,
    typer.Option(
        help="KR-CU boards answer an unlock with their status (--no-unlock-reply: with nothing; "
        "both occur, the spec is unsure)."
    ),
]
ClashOption = Annotated[
    int | None,
    typer.Option(
        help="Plant a second board of the first family at this address (a DIP-switch clash).",
        show_default=False,
    ),
]
PulseLogOption = Annotated[
    Path | None,
    typer.Option(
        help="Append every unlock pulse to a file per board in this folder "
        "(board-<family>-<address>.pulses, JSON lines), for a checker that reads them all.",
        show_default=False,
    ),
]
ControlPortOption = Annotated[
    int,
    typer.Option(min=0, max=65535, help="HTTP control port on 127.0.0.1; 0 picks a free one."),
]


def sim(
    boards: BoardsOption = 1,
    locks: LocksOption = 24,
    status_bytes: StatusBytesOption = None,
    first_address: FirstAddressOption = 1,
    link: LinkOption = None,
    baud: BaudOption = 9600,
    wire_time: WireTimeOption = False,
    polarity: PolarityOption = PolarityChoice.normal,
    reply_head: ReplyHeadOption = ReplyHead.h8a,
    reports: ReportsOption = False,
    pulse_ms: PulseMsOption = 50,
    family: FamilyOption = FamilyChoice.f8a,
    krcu_boards: KrcuBoardsOption = 0,
    unlock_reply: UnlockReplyOption = True,
    clash: ClashOption = None,
    control_port: ControlPortOption = 0,
    pulse_log: PulseLogOption = None,
) -> None:
    """Serve simulated RS485 lock-control boards on a virtual serial port (a pty).

    The boards speak the real "8A/80" frames (docs/lockboard.md) and have doors with
    physics: an unlock pulse releases a latch and the door springs open; it stays open until
    someone closes it; a latched door opens only when forced. Faults (jammed locks, stuck
    sensors, silent or garbling boards, power cuts) are injected through the control server.

    Point the cabinet daemon's RS485 port at the printed pty path or at `--link`, or talk to it
    by hand in hex (type `8A 01 01 11 9B` to unlock board 1 lock 1):

        python -m serial.tools.miniterm --encoding hexlify /tmp/ttyLOCK 9600

    Act as the person at the cabinet, or break something, over HTTP:

        curl http://127.0.0.1:PORT/state

        curl -X POST http://127.0.0.1:PORT/doors/1/3/close   # or open, force, put, take

        curl -X POST http://127.0.0.1:PORT/faults/1 -d '{"fault": "jam", "channel": 4}'

        curl -X POST http://127.0.0.1:PORT/faults/1/clear

    KR-CU16 boards (`--family krcu`, or `--krcu-boards N` beside 8A/80 ones on one wire) have
    an occupancy sensor per compartment that follows the parcels put in and taken out
    (`curl -X POST .../doors/1/3/put`); stick one with the `stick_occupancy` fault.

    Example: `locker sim --boards 2 --locks 24 --link /tmp/ttyLOCK --control-port 8485`.
    A bus for `locker cabinet doctor`: `locker sim --boards 2 --krcu-boards 1 --clash 2`.
    Runs until Ctrl-C or SIGTERM, then removes the link.
    """
    console = Console(soft_wrap=True)
    if first_address + boards - 1 > MAX_ADDRESS:
        raise typer.BadParameter(
            f"{boards} boards from address {first_address} run past {MAX_ADDRESS}",
            param_hint="'--boards'",
        )
    try:
        configs = [
            _board(
                family, first_address + index, locks, status_bytes, polarity, reply_head, reports
            )
            for index in range(boards)
        ]
        if clash is not None:
            configs.append(
                _board(family, clash, locks, status_bytes, polarity, reply_head, reports)
            )
        configs += [
            BoardConfig(address=1 + index, channels=16, family="krcu")
            for index in range(krcu_boards)
        ]
        configs = [
            replace(c, answers_unlock=unlock_reply) if c.family == "krcu" else c for c in configs
        ]
    except SimulatorError as err:  # a board the options describe cannot exist
        raise typer.BadParameter(str(err), param_hint="'--locks' / '--status-bytes'") from None
    bus = SimulatedBus(configs, pulse_s=pulse_ms / 1000)
    pulses = PulseLog(pulse_log, bus.boards) if pulse_log is not None else None

    _serve(
        console,
        bus,
        configs,
        link=link,
        baud=baud,
        wire_time=wire_time,
        port=control_port,
        pulse_ms=pulse_ms,
    )
    if pulses is not None:
        pulses.close()
    console.print("stopped.")


def _board(
    family: FamilyChoice,
    address: int,
    locks: int,
    status_bytes: int | None,
    polarity: PolarityChoice,
    reply_head: ReplyHead,
    reports: bool,
) -> BoardConfig:
    if family is FamilyChoice.krcu:
        return BoardConfig(
            address=address,
            channels=min(locks, 16),
            family="krcu",
            polarity=Polarity(polarity.value),
        )
    return BoardConfig(
        address=address,
        channels=locks,
        status_bytes=status_bytes,
        polarity=Polarity(polarity.value),
        unlock_reply_head=HEAD_UNLOCK if reply_head is ReplyHead.h8a else HEAD_QUERY,
        sends_reports=reports,
    )


def _serve(
    console: Console,
    bus: SimulatedBus,
    configs: list[BoardConfig],
    *,
    link: Path | None,
    baud: int,
    wire_time: bool,
    port: int,
    pulse_ms: int,
) -> None:
    """Serve the bus on a pty and its control over HTTP until Ctrl-C or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
    }

    try:
        server = PtyServer(bus, link=link, baud=baud, wire_time=wire_time)
    except OSError as err:
        console.print(f"[red]cannot open a pty:[/] {escape(str(err))}")
        raise typer.Exit(code=1) from None
    try:
        server.start()
        control = ControlServer(bus, port=port).start()
    except (OSError, SimulatorError) as err:
        server.close()
        console.print(f"[red]cannot start:[/] {escape(str(err))}")
        raise typer.Exit(code=1) from None

    try:
        console.print(f"pty: {escape(server.path)}")
        if link is not None:
            console.print(f"link: {escape(str(link))} -> {escape(server.path)}")
        console.print(f"control: {control.url}")
        console.print(_board_table(configs, pulse_ms, wire_time, baud))
        console.print("Ctrl-C to stop.")
        while not stop.wait(timeout=0.5):
            pass
    finally:
        control.close()
        server.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _board_table(configs: list[BoardConfig], pulse_ms: int, wire_time: bool, baud: int) -> Table:
    timing = f"pulse {pulse_ms} ms" + (f", wire time at {baud} baud" if wire_time else "")
    table = Table(title=f"Boards on the bus ({timing})")
    for column in ("family", "address", "locks", "polarity", "unlock reply", "reports/sensors"):
        table.add_column(column)
    for config in configs:
        if config.family == "krcu":
            reply = "status" if config.answers_unlock else "none"
            extra = f"sensors ({config.sensor_polarity.value})"
        else:
            reply = f"{config.unlock_reply_head:02X}"
            extra = "82 reports" if config.sends_reports else "no"
        table.add_row(
            config.family,
            f"{config.address} (0x{config.address:02X})",
            str(config.channels),
            config.polarity.value,
            reply,
            extra,
        )
    return table
