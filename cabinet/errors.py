"""The exceptions the cabinet's adapters raise (the core has its own, in cabinet/core/errors.py).

AdapterError                 base: an edge of the daemon (a driver, the config) failed
├── ConfigError              the config file or environment is wrong; `.key` names the setting
│                            (`layout.compartments[3].channel`), raised before anything moves
└── DriverError              a door driver cannot do what it was asked
    ├── UnknownCompartment   the driver does not route this compartment id
    ├── DriverClosed         the driver was closed (or never started)
    └── FeedTaken            door changes go to one owner, and someone already owns them

A lock that does not release is not an exception: `unlock` returns an `UnlockResult` that says so
(ports.py), because the caller must act on it, not merely log it.
"""

from __future__ import annotations


class AdapterError(Exception):
    """An adapter at the cabinet's edge failed."""


class ConfigError(AdapterError):
    """The config is wrong; `key` names the setting (dotted, list items as `[i]`)."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


class DriverError(AdapterError):
    """A door driver cannot do what it was asked."""


class UnknownCompartment(DriverError):
    """The driver has no route to this compartment."""

    def __init__(self, compartment: str) -> None:
        self.compartment = compartment
        super().__init__(f"no door driver routes compartment {compartment!r}")


class DriverClosed(DriverError):
    """The driver is closed, or was never started."""


class FeedTaken(DriverError):
    """The driver's door changes already have an owner."""
