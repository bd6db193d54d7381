"""A faithful simulator of RS485 lock-control boards and their doors, served on a pty.

It speaks the "8A/80" frames of docs/lockboard.md through the codec in `protocol.lockboard`,
so the cabinet daemon opens it with pyserial exactly as it would open /dev/ttyUSB0:

    bus = SimulatedBus([BoardConfig(address=1, channels=24)], pulse_s=0.01)
    with PtyServer(bus, link="/tmp/ttyLOCK") as server:    # server.path: /dev/pts/N
        bus.person.close_door(1, 3)                         # act as the person at the cabinet
        bus.faults.jam(1, 4)                                # or break something

Modules, one concept each:

- `board`        one board and its doors as a pure model (door physics, lock faults, counters, log)
- `bus`          several boards on one bus: the host's bytes in, timed reply chunks out
- `control`      the person (`bus.person`) and the fault injector (`bus.faults`)
- `pty_server`   serve a bus on a pseudo-terminal, raw, with an optional symlink
- `http_control` the same person and faults over a small HTTP JSON server on 127.0.0.1
- `errors`       what the simulator raises
"""

from firmware_sim.board import Board, BoardConfig, Door
from firmware_sim.bus import Chunk, SimulatedBus
from firmware_sim.control import Faults, Person
from firmware_sim.errors import (
    ConfigError,
    RefusedError,
    SimulatorError,
    UnknownBoardError,
    UnknownChannelError,
)
from firmware_sim.http_control import ControlServer
from firmware_sim.pty_server import PtyServer

__all__ = [
    "Board",
    "BoardConfig",
    "Chunk",
    "ConfigError",
    "ControlServer",
    "Door",
    "Faults",
    "Person",
    "PtyServer",
    "RefusedError",
    "SimulatedBus",
    "SimulatorError",
    "UnknownBoardError",
    "UnknownChannelError",
]
