"""Tests that the exported JSON Schemas are valid and agree with the recorded payloads."""

import json
from pathlib import Path

import jsonschema
import pytest

from protocol.messages import COMMAND_TYPES, EVENT_TYPES
from protocol.schema import INDEX_FILE, write_schemas

Validator = jsonschema.Draft202012Validator

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def schema_dir(tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp("schemas")
    write_schemas(out_dir)
    return out_dir


def schema(schema_dir: Path, name: str) -> dict:
    return json.loads((schema_dir / name).read_text(encoding="utf-8"))


def schema_files_for(fixture: Path) -> list[str]:
    """Return the schemas a recorded payload must satisfy: its own type's and its topic's union."""
    kind = fixture.stem.split(".")[0]
    if kind in ("event", "cmd"):
        return [f"{kind}.json", f"{fixture.stem}.json"]
    return [f"{kind}.json"]


def test_writes_one_schema_per_message_and_an_index(tmp_path):
    written = write_schemas(tmp_path / "out")
    names = {path.name for path in written}
    assert {f"event.{t}.json" for t in EVENT_TYPES} <= names
    assert {f"cmd.{t}.json" for t in COMMAND_TYPES} <= names
    assert {
        "event.json",
        "cmd.json",
        "state.json",
        "ack.json",
        "event-ack.json",
        INDEX_FILE,
    } <= names
    assert all(path.is_file() for path in written)


def test_index_lists_each_schema_with_its_topic(schema_dir):
    index = schema(schema_dir, INDEX_FILE)
    assert index["protocol_version"] == 1
    by_file = {entry["file"]: entry for entry in index["schemas"]}
    assert set(by_file) == {p.name for p in schema_dir.glob("*.json")} - {INDEX_FILE}
    assert by_file["event.parcel.deposited.json"] == {
        "file": "event.parcel.deposited.json",
        "type": "parcel.deposited",
        "topic": "lockers/v1/{cab}/event",
        "publisher": "cabinet",
        "qos": 1,
        "retain": False,
    }
    assert by_file["state.json"]["retain"] is True
    assert by_file["cmd.codes.put.json"]["publisher"] == "cloud"


def test_every_schema_is_valid_draft_2020_12(schema_dir):
    for path in schema_dir.glob("*.json"):
        if path.name != INDEX_FILE:
            document = schema(schema_dir, path.name)
            assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
            Validator.check_schema(document)


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("*.json")), ids=lambda f: f.stem)
def test_recorded_payloads_satisfy_their_schemas(schema_dir, fixture):
    payload = json.loads(fixture.read_text(encoding="utf-8"))
    for name in schema_files_for(fixture):
        Validator(schema(schema_dir, name)).validate(payload)


def broken(name: str, change) -> dict:
    payload = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    change(payload)
    return payload


@pytest.mark.parametrize(
    ("schema_file", "payload"),
    [
        ("event.json", broken("event.door.forced", lambda p: p.update(v=2))),
        ("event.json", broken("event.door.forced", lambda p: p.update(type="door.ajar"))),
        ("event.json", broken("event.door.forced", lambda p: p.update(seq=0))),
        ("event.json", broken("event.door.forced", lambda p: p.update(ts="2024-06-06T19:33:07"))),
        ("event.json", broken("event.door.forced", lambda p: p.update(prio=1))),
        ("event.json", broken("event.door.forced", lambda p: p.pop("v"))),
        ("event.door.forced.json", broken("event.door.forced", lambda p: p["data"].clear())),
        (
            "event.parcel.deposited.json",
            broken("event.parcel.deposited", lambda p: p["data"].update(phone="13812345678")),
        ),
        (
            "event.parcel.deposited.json",
            broken("event.parcel.deposited", lambda p: p["data"].update(size="XXL")),
        ),
        ("cmd.json", broken("cmd.codes.revoke", lambda p: p["data"].update(parcel_ids=[]))),
        (
            "cmd.codes.put.json",
            broken("cmd.codes.put", lambda p: p["data"]["entries"][0].pop("code_hash")),
        ),
        (
            "cmd.config.put.json",
            broken("cmd.config.put", lambda p: p["data"]["settings"].update(x=None)),
        ),
        ("state.json", broken("state.birth", lambda p: p.pop("compartments"))),
        ("state.json", broken("state.will", lambda p: p.update(compartments=[]))),
        ("ack.json", broken("ack.failed", lambda p: p.pop("error"))),
        ("ack.json", broken("ack.ok", lambda p: p.update(error="late"))),
        ("event-ack.json", broken("event-ack", lambda p: p.update(upto=-1))),
    ],
)
def test_schemas_reject_off_contract_payloads(schema_dir, schema_file, payload):
    assert not Validator(schema(schema_dir, schema_file)).is_valid(payload)
