"""Tests of the MQTT message models and codec against recorded payloads of every message type."""

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from protocol.codec import MAX_PAYLOAD_BYTES, decode, decode_command, encode
from protocol.errors import MessageError, ProtocolError
from protocol.messages import (
    COMMAND_TYPES,
    EVENT_TYPES,
    Ack,
    CompartmentInfo,
    CompartmentState,
    ParcelDeposited,
    ParcelDepositedData,
    PutCodes,
    PutConfig,
    RevokeCodes,
    Size,
    State,
)

FIXTURES = Path(__file__).parent / "fixtures"
CAB = "SZ-NS-0042"
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))


def kind_of(fixture: Path) -> str:
    return fixture.name.split(".")[0]


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def raw(payload: dict) -> bytes:
    return json.dumps(payload).encode()


def decode_error(kind: str, payload: bytes) -> MessageError:
    with pytest.raises(MessageError) as caught:
        decode(f"lockers/v1/{CAB}/{kind}", payload)
    return caught.value


# --- every recorded payload round-trips ----------------------------------------------------------


def test_every_event_and_command_type_has_a_recorded_payload():
    names = {f.stem for f in FIXTURE_FILES}
    assert {f"event.{t}" for t in EVENT_TYPES} <= names
    assert {f"cmd.{t}" for t in COMMAND_TYPES} <= names
    assert {"state.birth", "state.will", "ack.ok", "ack.failed", "event-ack"} <= names


@pytest.mark.parametrize("fixture", FIXTURE_FILES, ids=lambda f: f.stem)
def test_recorded_payload_round_trips(fixture):
    payload = fixture.read_bytes()
    message = decode(f"lockers/v1/{CAB}/{kind_of(fixture)}", payload)

    if kind_of(fixture) in ("event", "cmd"):
        assert message.type == fixture.stem.split(".", 1)[1]
    encoded = encode(message)
    assert json.loads(encoded) == json.loads(payload)
    assert decode(f"lockers/v1/{CAB}/{kind_of(fixture)}", encoded) == message


def test_encoding_is_compact_utf8_json_in_contract_order():
    message = decode(f"lockers/v1/{CAB}/event", (FIXTURES / "event.door.forced.json").read_bytes())
    assert encode(message) == (
        b'{"v":1,"id":"01J02A8C0E2G4J6L8N0Q2S4U6W","cab":"SZ-NS-0042","seq":1045,'
        b'"ts":"2024-06-06T19:33:07.500000Z","type":"door.forced","data":{"compartment":"C07"}}'
    )


def test_a_deposit_built_in_python_needs_no_v_or_type():
    deposit = ParcelDeposited(
        id="01HZX3K8P2Q7M4N6R9T1V3W5Y7",
        cab=CAB,
        seq=1041,
        ts=datetime(2024, 6, 3, 1, 12, 45, 318000, tzinfo=UTC),
        data=ParcelDepositedData(
            parcel_id="01HZX3K8NZB5D2F7G9H1J3K5M7",
            compartment="A03",
            size=Size.M,
            tracking_no="SF1402938475612",
            phone="+8613812345678",
            courier_id="SF-30117",
        ),
    )
    assert json.loads(encode(deposit)) == load("event.parcel.deposited")


# --- timestamps ----------------------------------------------------------------------------------


def test_timestamps_with_an_offset_become_utc_and_are_written_with_z():
    payload = load("event.door.forced")
    payload["ts"] = "2024-06-07T03:33:07.5+08:00"
    message = decode(f"lockers/v1/{CAB}/event", raw(payload))
    assert message.ts == datetime(2024, 6, 6, 19, 33, 7, 500000, tzinfo=UTC)
    assert message.ts.utcoffset() == timedelta(0)
    assert json.loads(encode(message))["ts"] == "2024-06-06T19:33:07.500000Z"


def test_nanosecond_timestamps_are_kept_to_the_microsecond():
    payload = load("event.door.forced")
    payload["ts"] = "2024-06-06T19:33:07.123456789Z"
    assert decode(f"lockers/v1/{CAB}/event", raw(payload)).ts.microsecond == 123456


@pytest.mark.parametrize(
    "ts",
    [
        "2024-06-06T19:33:07",
        "2024-06-06 19:33:07Z",
        "1717702387",
        "2024-06-06",
        "2024-13-01T00:00:00Z",
    ],
)
def test_timestamps_must_be_rfc3339_with_an_offset(ts):
    payload = load("event.door.forced")
    payload["ts"] = ts
    assert decode_error("event", raw(payload)).field == "ts"


def test_python_callers_cannot_build_a_naive_timestamp():
    with pytest.raises(ValueError, match="timezone info"):
        State(cab=CAB, online=False, boot=1, ts=datetime(2024, 1, 1))


# --- each rejection names what is wrong ----------------------------------------------------------


def mutate(name: str, change) -> bytes:
    payload = load(name)
    change(payload)
    return raw(payload)


@pytest.mark.parametrize(
    ("kind", "payload", "field", "reason"),
    [
        ("event", mutate("event.door.forced", lambda p: p.update(v=2)), "v", "version 2"),
        ("event", mutate("event.door.forced", lambda p: p.update(v="1")), "v", "integer"),
        ("event", mutate("event.door.forced", lambda p: p.update(v=True)), "v", "integer"),
        ("event", mutate("event.door.forced", lambda p: p.pop("v")), "v", "Field required"),
        (
            "event",
            mutate("event.door.forced", lambda p: p["data"].pop("compartment")),
            "data.compartment",
            "Field required",
        ),
        (
            "event",
            mutate("event.door.left_open", lambda p: p["data"].update(seconds="120")),
            "data.seconds",
            "valid integer",
        ),
        (
            "event",
            mutate("event.compartment.service", lambda p: p["data"].update(in_service=0)),
            "data.in_service",
            "valid boolean",
        ),
        ("event", mutate("event.door.forced", lambda p: p.update(seq=0)), "seq", "greater than"),
        ("event", mutate("event.door.forced", lambda p: p.update(seq=2**63)), "seq", "less than"),
        ("event", mutate("event.door.forced", lambda p: p.update(seq=1.0)), "seq", "integer"),
        ("event", mutate("event.door.forced", lambda p: p.update(id="")), "id", "pattern"),
        (
            "event",
            mutate("event.door.forced", lambda p: p.update(type="door.ajar")),
            "type",
            "door.ajar",
        ),
        ("event", mutate("event.door.forced", lambda p: p.pop("type")), "type", "Field required"),
        ("event", mutate("event.door.forced", lambda p: p.update(prio=1)), "prio", "Extra inputs"),
        (
            "event",
            mutate("event.door.forced", lambda p: p.update(cab="SZ-NS-0043")),
            "cab",
            "SZ-NS-0043",
        ),
        ("event", mutate("event.door.forced", lambda p: p.update(cab="bad cab")), "cab", "pattern"),
        (
            "event",
            mutate("event.parcel.deposited", lambda p: p["data"].update(phone="13812345678")),
            "data.phone",
            "pattern",
        ),
        (
            "event",
            mutate("event.parcel.deposited", lambda p: p["data"].update(size="XXL")),
            "data.size",
            "'S', 'M', 'L' or 'XL'",
        ),
        (
            "event",
            mutate("event.lock.fault", lambda p: p["data"].update(detail="stuck\x00")),
            "data.detail",
            "pattern",
        ),
        (
            "cmd",
            mutate("cmd.codes.put", lambda p: p["data"]["entries"][1].pop("code_hash")),
            "data.entries[1].code_hash",
            "Field required",
        ),
        (
            "cmd",
            mutate("cmd.codes.put", lambda p: p["data"]["entries"].append(p["data"]["entries"][0])),
            "data",
            "parcel_id '01HZX3K8NZB5D2F7G9H1J3K5M7' appears more than once",
        ),
        (
            "cmd",
            mutate("cmd.codes.revoke", lambda p: p["data"].update(parcel_ids=[])),
            "data.parcel_ids",
            "at least 1",
        ),
        (
            "cmd",
            mutate("cmd.codes.revoke", lambda p: p.update(expires_at=p["ts"])),
            None,
            "expires_at must be later than ts",
        ),
        (
            "cmd",
            mutate("cmd.config.put", lambda p: p["data"]["settings"].update(x=None)),
            "data.settings.x",
            "a setting is a JSON string, number or boolean",
        ),
        (
            "cmd",
            mutate("cmd.config.put", lambda p: p["data"]["settings"].update(x=2**64)),
            "data.settings.x",
            "64 bits",
        ),
        ("state", mutate("state.birth", lambda p: p.pop("firmware")), None, "needs firmware"),
        (
            "state",
            mutate("state.will", lambda p: p.update(compartments=[])),
            None,
            "no compartments",
        ),
        (
            "state",
            mutate("state.birth", lambda p: p["compartments"][0].update(state="open")),
            "compartments[0].state",
            "'free'",
        ),
        ("ack", mutate("ack.failed", lambda p: p.pop("error")), None, "needs an error"),
        ("ack", mutate("ack.ok", lambda p: p.update(ok=1, error="")), "ok", "boolean"),
        ("event-ack", mutate("event-ack", lambda p: p.update(upto=-1)), "upto", "greater than"),
    ],
)
def test_each_rejection_names_the_field(kind, payload, field, reason):
    error = decode_error(kind, payload)
    assert error.field == field
    assert reason in error.reason
    assert str(error) == (f"{field}: {error.reason}" if field else error.reason)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"v":1,', "not JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'"hello"', "JSON str, not an object"),
        (b'{"v":1,"upto":NaN}', "NaN is not JSON"),
        (b'{"v":1,"upto":1,"upto":2}', "'upto' appears twice"),
        (b"[" * 100_000, "not JSON"),
        (b'{"v":1,"upto":' + b"9" * 5000 + b"}", "not JSON"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "limit"),
    ],
)
def test_whole_message_problems_have_no_field(payload, reason):
    error = decode_error("event-ack", payload)
    assert error.field is None
    assert reason in str(error)


def test_payload_must_be_bytes():
    assert decode_error("event-ack", '{"v":1,"upto":1}').field is None


def test_message_errors_are_protocol_errors():
    assert issubclass(MessageError, ProtocolError)


# --- compatibility -------------------------------------------------------------------------------


def test_unknown_data_fields_are_ignored_so_senders_can_add_some():
    payload = mutate("event.door.forced", lambda p: p["data"].update(camera_clip="clip-77.mp4"))
    assert decode(f"lockers/v1/{CAB}/event", payload).data.compartment == "C07"
    payload = mutate("state.birth", lambda p: p["compartments"][0].update(low_door=True))
    assert decode(f"lockers/v1/{CAB}/state", payload).compartments[0].id == "A01"


# --- commands ------------------------------------------------------------------------------------


def test_command_expiry():
    command = decode(f"lockers/v1/{CAB}/cmd", (FIXTURES / "cmd.codes.revoke.json").read_bytes())
    assert isinstance(command, RevokeCodes)
    assert not command.is_expired(command.expires_at - timedelta(microseconds=1))
    assert command.is_expired(command.expires_at)
    assert not command.is_expired(datetime(2024, 6, 3, 18, 56, tzinfo=timezone(timedelta(hours=8))))
    with pytest.raises(ValueError, match="timezone-aware"):
        command.is_expired(datetime(2024, 6, 3, 10, 50))


def test_config_values_keep_their_json_type():
    command = decode(f"lockers/v1/{CAB}/cmd", (FIXTURES / "cmd.config.put.json").read_bytes())
    assert isinstance(command, PutConfig)
    settings = command.data.settings
    assert settings["door.left_open_alarm_s"] == 120 and type(settings["keypad.lockout_s"]) is int
    assert settings["kiosk.qr_pickup"] is True
    assert settings["kiosk.brightness"] == 0.8
    assert settings["kiosk.locale"] == "zh-CN"


def test_secrets_and_phones_stay_out_of_repr():
    deposit = decode(
        f"lockers/v1/{CAB}/event", (FIXTURES / "event.parcel.deposited.json").read_bytes()
    )
    codes = decode(f"lockers/v1/{CAB}/cmd", (FIXTURES / "cmd.codes.put.json").read_bytes())
    assert isinstance(codes, PutCodes)
    assert "+8613812345678" not in repr(deposit)
    assert "argon2" not in repr(codes) and "9f86d08" not in repr(codes)
    assert deposit.data.phone == "+8613812345678"


def test_encoding_a_message_over_the_limit_fails_with_a_clear_error():
    entry = load("cmd.codes.put")["data"]["entries"][0]
    payload = load("cmd.codes.put")
    payload["data"]["entries"] = [{**entry, "parcel_id": f"P{i:08d}"} for i in range(2000)]
    command = PutCodes.model_validate_json(raw(payload))
    with pytest.raises(MessageError, match="over the 262144-byte limit"):
        encode(command)


# --- presence ------------------------------------------------------------------------------------


def state(*, online: bool, boot: int, minute: int = 0) -> State:
    compartments = [CompartmentInfo(id="A01", size=Size.S, state=CompartmentState.FREE)]
    return State(
        cab=CAB,
        online=online,
        boot=boot,
        firmware="cabinetd 0.1.0",
        ts=datetime(2024, 6, 3, 1, minute, tzinfo=UTC),
        compartments=compartments if online else None,
    )


@pytest.mark.parametrize(
    ("old", "new", "replaces"),
    [
        (None, state(online=True, boot=1), True),
        (state(online=True, boot=1), state(online=False, boot=1), True),  # the session ended
        (state(online=False, boot=1), state(online=True, boot=2), True),  # reconnected
        (state(online=True, boot=2), state(online=False, boot=1, minute=5), False),  # late Will
        (
            state(online=False, boot=1),
            state(online=True, boot=1, minute=5),
            False,
        ),  # birth after its Will
        (
            state(online=True, boot=2),
            state(online=True, boot=2, minute=5),
            True,
        ),  # birth republished
        (
            state(online=True, boot=2, minute=5),
            state(online=True, boot=2),
            False,
        ),  # stale republish
    ],
)
def test_a_late_will_never_hides_a_newer_birth(old, new, replaces):
    assert new.supersedes(old) is replaces


def test_states_of_different_cabinets_do_not_compare():
    other = State(cab="other", online=False, boot=9, ts=datetime(2024, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="cabinets"):
        other.supersedes(state(online=True, boot=1))


def test_will_omits_what_it_does_not_know():
    will = State(cab=CAB, online=False, boot=37, ts=datetime(2024, 6, 3, 0, 58, 12, tzinfo=UTC))
    assert json.loads(encode(will)) == {
        "v": 1,
        "cab": CAB,
        "online": False,
        "boot": 37,
        "ts": "2024-06-03T00:58:12Z",
    }


@pytest.mark.parametrize("error", ["", "...", "late", "\u0000 not even one line"])
def test_an_error_beside_ok_true_is_ignored_not_a_reason_to_drop_the_ack(error):
    # Cabinets copy the contract's old example (`"error": "..."` beside `"ok": true`) literally.
    payload = mutate("ack.ok", lambda p: p.update(error=error))
    ack = decode(f"lockers/v1/{CAB}/ack", payload)
    assert (ack.ok, ack.error) == (True, None)
    assert encode(ack) == encode(Ack(cmd=ack.cmd, ok=True))
    assert Ack(cmd="c-1", ok=True, error="x").error is None


def test_a_failed_ack_still_needs_a_real_error():
    for error in ("", None):
        payload = mutate("ack.failed", lambda p, e=error: p.update(error=e))
        assert decode_error("ack", payload).field in ("error", None)


def test_successful_ack_omits_error():
    assert encode(Ack(cmd="c-1", ok=True)) == b'{"v":1,"cmd":"c-1","ok":true}'
    assert json.loads(encode(Ack(cmd="c-1", ok=False, error="expired")))["error"] == "expired"


def test_a_cabinet_can_always_ack_a_command_it_could_not_decode():
    payload = mutate("cmd.compartment.open", lambda p: p["data"].update(compartment="C 07"))
    with pytest.raises(MessageError) as caught:
        decode_command(payload, cab=CAB)
    ack = Ack.failure(caught.value.message_id, f"rejected:\n{caught.value}")
    assert ack.cmd == "5e2a9f40-8c1d-4e3b-a7f6-0d9c8b7a6e5f"
    assert ack.error.startswith("rejected: data.compartment: String should match pattern")
    assert decode(f"lockers/v1/{CAB}/ack", encode(ack)) == ack
    assert len(Ack.failure("c-1", "x" * 5000).error) == 1024


def test_parsing_keeps_no_value_strings_in_pydantics_process_wide_cache():
    """Ids and timestamps seen once filled pydantic-core's 16,384-string cache: daemon RSS crept."""
    import inspect

    import pydantic

    from protocol import messages

    models = [
        model
        for _, model in inspect.getmembers(messages, inspect.isclass)
        if issubclass(model, pydantic.BaseModel) and model.__module__ == messages.__name__
    ]
    assert len(models) > 20
    assert {m.__name__ for m in models if m.model_config.get("cache_strings") != "keys"} == set()
