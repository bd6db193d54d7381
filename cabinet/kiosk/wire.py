"""The kiosk API's JSON: a request body becomes a core input, a core screen becomes JSON.

    {"type": "CodeEntered", "code": "12345678"}   ->  CodeEntered(code="12345678")
    DoorsOpening(("A03",), ())                     ->  {"type": "DoorsOpening",
                                                        "compartments": ["A03"], "unavailable": []}

Only the inputs a person at the screen can cause are accepted (`SCREEN_INPUTS`): door readings
and the cloud's commands come from their own adapters, never from the page. A body that is not
one of them exactly (unknown type, missing or extra field, a field that is not a string) is a
`BadBody` naming the problem, raised before anything reaches the cabinet.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

from cabinet.core import inputs
from cabinet.core.errors import InvalidInput
from cabinet.core.inputs import Input
from cabinet.core.screens import Screen

SCREEN_INPUTS: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        inputs.CourierSignIn,
        inputs.CourierSignOut,
        inputs.TrackingEntered,
        inputs.PhoneEntered,
        inputs.SizeChosen,
        inputs.Confirm,
        inputs.Reopen,
        inputs.Larger,
        inputs.Cancel,
        inputs.OpenReserved,
        inputs.RetrieveParcels,
        inputs.CodeEntered,
        inputs.QrScanned,
        inputs.PickupClosed,
        inputs.ResendRequested,
    )
}
MAX_FIELD_CHARS = 256  # a QR payload is the longest thing a person can hand over


class BadBody(ValueError):
    """The request body is not a screen input; nothing was done."""


def parse_input(body: Any) -> Input:
    """The core input a JSON body names, or BadBody saying what is wrong with it."""
    if not isinstance(body, dict):
        raise BadBody('the body must be a JSON object like {"type": "CodeEntered", "code": "..."}')
    name = body.get("type")
    cls = SCREEN_INPUTS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise BadBody(f"unknown input type {name!r}: one of {', '.join(SCREEN_INPUTS)}")
    wanted = [f.name for f in dataclasses.fields(cls)]
    extra = sorted(set(body) - {"type", *wanted})
    if extra:
        raise BadBody(f"{name} takes no field {', '.join(map(repr, extra))}")
    args: dict[str, str] = {}
    for field in wanted:
        if field not in body:
            raise BadBody(f"{name} needs the field {field!r}")
        value = body[field]
        if not isinstance(value, str):
            raise BadBody(f"{name}.{field} must be a string, not {type(value).__name__}")
        if len(value) > MAX_FIELD_CHARS:
            raise BadBody(f"{name}.{field} is longer than {MAX_FIELD_CHARS} characters")
        args[field] = value
    try:
        return cls(**args)
    except InvalidInput as err:  # SizeChosen checks its size itself
        raise BadBody(f"{name}: {err}") from None


def screen_json(screen: Screen) -> dict[str, Any]:
    """A screen as JSON: its class name under "type", then its fields."""
    fields = {f.name: _plain(getattr(screen, f.name)) for f in dataclasses.fields(screen)}
    return {"type": type(screen).__name__, **fields}


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
