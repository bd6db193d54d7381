"""Errors the simulator raises when asked for something it has not got or cannot do.

SimulatorError
├── ConfigError          a board or bus setting is out of range (address, channel count, timing)
├── UnknownBoardError    no board on the bus has that address
├── UnknownChannelError  the board has no such lock channel
└── RefusedError         the door cannot do that as it stands (open a latched door by hand,
                         put a parcel through a shut door, take one from an empty compartment)

ConfigError, UnknownBoardError and UnknownChannelError are bad input (HTTP 400); RefusedError is
the physical world saying no (HTTP 409). Nothing changes when any of them is raised.
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Something asked of the simulator is out of range or physically impossible."""


class ConfigError(SimulatorError, ValueError):
    """A board or bus setting is out of range."""


class UnknownBoardError(SimulatorError, LookupError):
    """No board on the bus has that address."""


class UnknownChannelError(SimulatorError, LookupError):
    """The board has no such lock channel."""


class RefusedError(SimulatorError):
    """The door cannot do that as it stands."""
