"""`locker demo`: the README's main job. Today: one simulated cabinet's lock-board bus.

The full demo (embedded broker, cloud, cabinets with kiosks, notice sinks) grows here as the
cabinet daemon and cloud land; until then it starts what exists, so a newcomer can already open
doors on a simulated cabinet and watch its frames.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from locker.sim_command import PolarityChoice, ReplyHead, sim


def demo(
    control_port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="HTTP control port of the simulator; 0 picks one."),
    ] = 8485,
) -> None:
    """Run the demo: a simulated 48-door cabinet (two 24-lock RS485 boards) on a pty.

    Open `http://127.0.0.1:8485/state` to see every door, `POST /doors/1/3/close` to act as a
    person, and point a serial terminal at the printed pty to speak the board frames by hand.
    Ctrl-C stops it and leaves nothing running.
    """
    Console().print(
        "[bold]Parcel lockers demo[/]: a simulated cabinet with 2 lock boards x 24 doors.\n"
        "The cabinet daemon, kiosk and cloud join this demo as they are built "
        "(see README.md)."
    )
    sim(
        boards=2,
        locks=24,
        first_address=1,
        link=None,
        baud=9600,
        wire_time=False,
        polarity=PolarityChoice.normal,
        reply_head=ReplyHead.h8a,
        reports=False,
        pulse_ms=50,
        control_port=control_port,
    )
