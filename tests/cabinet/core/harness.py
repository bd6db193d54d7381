"""Drive the cabinet core in tests: a clock you advance, a context, and checks on every step."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from cabinet.core import Cabinet, Context, apply, new_cabinet, reconcile
from cabinet.core.compartments import Compartment, Size
from cabinet.core.effects import EVENT_FIELDS, Effect, Emit, Show, Unlock
from cabinet.core.inputs import (
    CodeEntered,
    CodeGrant,
    CodesPut,
    Confirm,
    CourierGrant,
    CourierSignIn,
    CouriersPut,
    DoorObserved,
    Input,
    PhoneEntered,
    SizeChosen,
    Tick,
    TrackingEntered,
)
from protocol.hashing import code_hash
from protocol.messages import EVENT_TYPES

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
CAB = "cab-1"
CODE_KEY = b"test-code-key-0123456789"
PHONE = "13812345678"
PHONE_E164 = "+8613812345678"

# Two small doors at hand height, a low small one, two mediums, a low large, a low XL.
LAYOUT = (
    Compartment("A01", Size.S),
    Compartment("A02", Size.S),
    Compartment("A03", Size.S, low=True),
    Compartment("A04", Size.M),
    Compartment("A05", Size.M),
    Compartment("B01", Size.L, low=True),
    Compartment("B02", Size.XL, low=True),
)


def fake_pin_hash(pin: str) -> str:
    """A PIN "hash" the fast fake verifier accepts (scrypt is too slow for property tests)."""
    return f"fake${pin}"


def fake_verify_pin(pin: str, stored: str) -> bool:
    return stored == fake_pin_hash(pin)


def check_event(effect: Emit) -> None:
    """The event carries exactly the fields of docs/mqtt.md#events and passes the data model."""
    assert tuple(effect.data) == EVENT_FIELDS[effect.type], effect.type
    model = EVENT_TYPES[effect.type].model_fields["data"].annotation
    model.model_validate_json(json.dumps(effect.data))  # type: ignore[union-attr]


class Harness:
    """A cabinet, a clock and a context; `do` applies an input at the current time."""

    def __init__(
        self,
        cabinet: Cabinet | None = None,
        *,
        layout: Iterable[Compartment] = LAYOUT,
        verify_pin=fake_verify_pin,
    ) -> None:
        self.cab = cabinet or new_cabinet(CAB, layout)
        self.now = T0
        self._ids = 0
        self.ctx = Context(code_key=CODE_KEY, new_id=self._new_id, verify_pin=verify_pin)
        self.effects: list[Effect] = []

    def _new_id(self) -> str:
        self._ids += 1
        return f"P{self._ids:04d}"

    def do(self, inp: Input) -> list[Effect]:
        self.cab, effects = apply(self.cab, inp, self.now, self.ctx)
        for effect in effects:
            if isinstance(effect, Emit):
                check_event(effect)
        self.effects += effects
        return effects

    def reconcile(self, readings: dict[str, bool]) -> list[Effect]:
        self.cab, effects = reconcile(self.cab, readings, self.now)
        for effect in effects:
            if isinstance(effect, Emit):
                check_event(effect)
        return effects

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def tick(self, seconds: float = 0) -> list[Effect]:
        self.advance(seconds)
        return self.do(Tick())

    def door(self, compartment: str, is_open: bool) -> list[Effect]:
        return self.do(DoorObserved(compartment, is_open))

    def cycle(self, compartment: str) -> list[Effect]:
        """The door is seen open, then closed."""
        return self.door(compartment, True) + self.door(compartment, False)

    # --- shortcuts for whole steps ---------------------------------------------------------

    def add_courier(self, courier_id: str = "C1", pin: str = "246810") -> None:
        self.do(CouriersPut((CourierGrant(courier_id, fake_pin_hash(pin)),)))

    def sign_in(self, courier_id: str = "C1", pin: str = "246810") -> list[Effect]:
        if courier_id not in self.cab.couriers:
            self.add_courier(courier_id, pin)
        return self.do(CourierSignIn(courier_id, pin))

    def deposit(self, tracking_no: str, size: Size = Size.S, phone: str = PHONE) -> str:
        """A whole deposit by the signed-in courier; return the parcel id."""
        self.do(TrackingEntered(tracking_no))
        self.do(PhoneEntered(phone))
        opened = unlocks(self.do(SizeChosen(size)))
        assert len(opened) == 1, opened
        self.cycle(opened[0])
        (event,) = emitted(self.do(Confirm()), "parcel.deposited")
        return event["parcel_id"]

    def grant(self, parcel_id: str, code: str, *, valid_s: float = 86400) -> None:
        compartment = self.cab.parcels[parcel_id].compartment
        grant = CodeGrant(
            parcel_id,
            compartment,
            code_hash(CODE_KEY, code),
            self.now + timedelta(seconds=valid_s),
        )
        self.do(CodesPut((grant,)))

    def enter(self, code: str) -> list[Effect]:
        return self.do(CodeEntered(code))


def unlocks(effects: Iterable[Effect]) -> list[str]:
    return [e.compartment for e in effects if isinstance(e, Unlock)]


def emitted(effects: Iterable[Effect], event_type: str | None = None) -> list[dict]:
    return [e.data for e in effects if isinstance(e, Emit) and event_type in (None, e.type)]


def event_types(effects: Iterable[Effect]) -> list[str]:
    return [e.type for e in effects if isinstance(e, Emit)]


def shown(effects: Iterable[Effect]) -> list[object]:
    return [e.screen for e in effects if isinstance(e, Show)]


def at_size_for(h: Harness, tracking_no: str = "SF1001", phone: str = PHONE) -> None:
    """Bring the signed-in courier's session to the size step."""
    h.do(TrackingEntered(tracking_no))
    h.do(PhoneEntered(phone))
