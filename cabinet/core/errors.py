"""The exceptions the cabinet core raises; whenever one is raised, the state is left as it was.

CoreError                   base: the core refused an input (nothing changed, no effect to run)
├── IllegalTransition       the input is not allowed in the current state: Confirm before the
│                           door was seen open then closed, a pickup while a courier is signed
│                           in, taking a compartment that holds a parcel out of service;
│                           carries .state (what it was in) and .action (what was refused)
└── InvalidInput            the input itself is malformed or names what the cabinet lacks
    ├── UnknownCompartment  a compartment id that is not in this cabinet's layout
    └── BadSnapshot         `Cabinet.from_dict` got a dict it cannot read back

Adapters catch `CoreError` at their seam: the MQTT link acks the command `ok: false` with
`str(err)`; the kiosk logs it and re-renders (its buttons should not have offered the input).
What a person at the screen causes (a wrong code, an invalid phone, no free door) is not an error:
it comes back as a typed `Show` effect, and the state may change (a wrong code is counted).
"""

from __future__ import annotations


class CoreError(Exception):
    """The core refused an input; the cabinet state is unchanged."""


class IllegalTransition(CoreError):
    """The input is not allowed in the current state."""

    def __init__(self, message: str, *, state: str | None = None, action: str | None = None):
        self.state = state
        self.action = action
        super().__init__(message)


class InvalidInput(CoreError):
    """The input is malformed or names something this cabinet does not have."""


class UnknownCompartment(InvalidInput):
    """A compartment id that is not in this cabinet's layout."""

    def __init__(self, compartment: str) -> None:
        self.compartment = compartment
        super().__init__(f"no compartment {compartment!r} in this cabinet")


class BadSnapshot(InvalidInput):
    """A snapshot dict that `Cabinet.from_dict` cannot read back."""
