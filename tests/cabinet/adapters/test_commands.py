"""Commands from the wire become core inputs; what the core emits journals as valid events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cabinet.commands import UnsupportedCommand, command_input
from cabinet.core import Context, apply, new_cabinet
from cabinet.core.compartments import Compartment, Size
from cabinet.core.effects import Emit, Unlock
from cabinet.core.inputs import (
    CodeGrant,
    CodesPut,
    CodesRevoke,
    CompartmentOpen,
    CompartmentService,
    CourierGrant,
    CouriersPut,
    RetrievalsPut,
)
from cabinet.journal import Journal
from protocol.codec import decode_command

CAB = "cab1"
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def wire(type_: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "id": f"c-{type_}",
            "cab": CAB,
            "ts": "2024-05-01T08:00:00Z",
            "expires_at": "2024-05-01T09:00:00Z",
            "type": type_,
            "data": data,
        }
    ).encode()


CASES = [
    (
        "codes.put",
        {
            "entries": [
                {
                    "parcel_id": "p1",
                    "compartment": "A01",
                    "code_hash": "h1",
                    "expires_at": "2024-05-03T08:00:00Z",
                }
            ]
        },
        CodesPut((CodeGrant("p1", "A01", "h1", T0 + timedelta(days=2)),)),
    ),
    ("codes.revoke", {"parcel_ids": ["p1", "p2"]}, CodesRevoke(("p1", "p2"))),
    (
        "compartment.open",
        {"compartment": "A01", "reason": "stuck parcel", "actor": "mgr-7"},
        CompartmentOpen("A01", "stuck parcel", "mgr-7"),
    ),
    (
        "compartment.service",
        {"compartment": "A01", "in_service": False},
        CompartmentService("A01", False),
    ),
    (
        "couriers.put",
        {"couriers": [{"courier_id": "k1", "pin_hash": "ph"}]},
        CouriersPut((CourierGrant("k1", "ph"),)),
    ),
    ("retrievals.put", {"parcel_ids": ["p9"]}, RetrievalsPut(("p9",))),
]


@pytest.mark.parametrize(("type_", "data", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_core_command_maps_to_its_input(type_: str, data: dict, expected: object) -> None:
    assert command_input(decode_command(wire(type_, data), cab=CAB)) == expected


def test_config_put_is_not_a_core_input() -> None:
    command = decode_command(wire("config.put", {"settings": {"unlock_window_s": 30}}), cab=CAB)
    with pytest.raises(UnsupportedCommand, match=r"config\.put"):
        command_input(command)


def test_a_command_through_the_core_journals_contract_valid_events(tmp_path: Path) -> None:
    cabinet = new_cabinet(CAB, [Compartment("A01", Size.S), Compartment("A02", Size.M)])
    ctx = Context(code_key=b"k" * 16, new_id=lambda: "p-1")
    with Journal.open(tmp_path / "j.db", cab=CAB) as journal:
        for type_, data in (
            ("compartment.service", {"compartment": "A02", "in_service": False}),
            ("compartment.open", {"compartment": "A01", "reason": "check", "actor": "mgr"}),
        ):
            inp = command_input(decode_command(wire(type_, data), cab=CAB))
            cabinet, effects = apply(cabinet, inp, T0, ctx)
            unlocks = [e.compartment for e in effects if isinstance(e, Unlock)]
            emits = [e for e in effects if isinstance(e, Emit)]
            journal.commit_step(cabinet.to_dict(), emits, unlocks, now=T0)
        [event] = journal.unacked()
        assert (event.seq, event.type, event.data.compartment) == (1, "compartment.service", "A02")
        assert journal.pending_unlocks() == ["A01"]
        snapshot = journal.load_snapshot()
        assert snapshot is not None and snapshot.data == cabinet.to_dict()
