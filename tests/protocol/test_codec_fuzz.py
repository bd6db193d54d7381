"""Property tests: decode survives any input, and every valid message survives encode → decode."""

import contextlib
import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.codec import MAX_JSON_DEPTH, decode, encode, strict_loads
from protocol.config_push import config_sha256
from protocol.errors import MessageError, TopicError
from protocol.messages import (
    COMMAND_MODELS,
    EVENT_MODELS,
    Ack,
    CodeEntry,
    CompartmentInfo,
    CompartmentState,
    CourierEntry,
    EventAck,
    PutConfigData,
    Size,
    State,
)
from protocol.topics import TopicKind, topic

FIXTURES = Path(__file__).parent / "fixtures"
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

cabs = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
ids = st.from_regex(r"[!-~]{1,64}", fullmatch=True)
compartments = st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)
phones = st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True)
hashes = st.from_regex(r"[!-~]{1,256}", fullmatch=True)
one_line = st.text(
    st.characters(exclude_categories=("Cs",), min_codepoint=0x20, exclude_characters="\x7f"),
    min_size=1,
    max_size=40,
)
# Any zone, so normalising to UTC is round-tripped too.
timestamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.timezones()
)
int64 = st.integers(min_value=1, max_value=2**63 - 1)
setting_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30),
)

# Data fields have the same meaning wherever they appear, so one strategy per field name.
FIELDS = {
    "parcel_id": ids,
    "courier_id": ids,
    "tracking_no": ids,
    "compartment": compartments,
    "phone": phones,
    "reason": one_line,
    "seconds": int64,
    "detail": one_line,
    "in_service": st.booleans(),
    "expected": st.sampled_from(["empty", "parcel"]),
    "sensed": st.sampled_from(["occupied", "empty"]),
    "actor": one_line,
    "parcel_ids": st.lists(ids, min_size=1, max_size=5),
    "until": timestamps,
    "carrier_id": st.none() | ids,
    "entries": st.lists(
        st.builds(
            CodeEntry,
            parcel_id=ids,
            compartment=compartments,
            code_hash=hashes,
            expires_at=timestamps,
        ),
        min_size=1,
        max_size=5,
        unique_by=lambda e: e.parcel_id,
    ),
    "couriers": st.lists(
        st.builds(CourierEntry, courier_id=ids, pin_hash=hashes),
        min_size=1,
        max_size=5,
        unique_by=lambda c: c.courier_id,
    ),
    "settings": st.dictionaries(
        st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True),
        setting_values,
        min_size=1,
        max_size=5,
    ),
}


# A config.put carries settings or a whole body whose sha256 is the hash of that body.
config_bodies = st.dictionaries(
    st.sampled_from(["kiosk_language", "poll_interval_s", "screen", "buses", "compartments"]),
    setting_values,
    min_size=1,
    max_size=4,
)
config_puts = st.one_of(
    st.builds(PutConfigData, settings=FIELDS["settings"]),
    st.builds(
        lambda version, body: PutConfigData(
            version=version, sha256=config_sha256(body), config=body
        ),
        st.integers(min_value=1, max_value=2**63 - 1),
        config_bodies,
    ),
)


def data_of(model):
    data_model = model.model_fields["data"].annotation
    if data_model is PutConfigData:
        return config_puts
    return st.builds(
        data_model,
        **{
            name: st.sampled_from(field.annotation)
            if isinstance(field.annotation, type) and issubclass(field.annotation, StrEnum)
            else FIELDS[name]
            for name, field in data_model.model_fields.items()
        },
    )


events = st.one_of(
    [
        st.builds(model, id=ids, cab=cabs, seq=int64, ts=timestamps, data=data_of(model))
        for model in EVENT_MODELS
    ]
)


@st.composite
def commands(draw):
    model = draw(st.sampled_from(COMMAND_MODELS))
    sent_at = draw(timestamps)
    lifetime = draw(
        st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=30))
    )
    return model(
        id=draw(ids),
        cab=draw(cabs),
        ts=sent_at,
        expires_at=sent_at.astimezone(UTC) + lifetime,  # in UTC: a DST change cannot reorder
        data=draw(data_of(model)),
    )


compartment_lists = st.lists(
    st.builds(
        CompartmentInfo,
        id=compartments,
        size=st.sampled_from(Size),
        state=st.sampled_from(CompartmentState),
    ),
    max_size=8,
    unique_by=lambda c: c.id,
)
births = st.builds(
    State,
    cab=cabs,
    online=st.just(True),
    boot=st.integers(0, 2**63 - 1),
    firmware=one_line,
    ts=timestamps,
    compartments=compartment_lists,
)
wills = st.builds(
    State,
    cab=cabs,
    online=st.just(False),
    boot=st.integers(0, 2**63 - 1),
    firmware=st.none() | one_line,
    ts=timestamps,
)
acks = st.builds(Ack, cmd=ids, ok=st.just(True)) | st.builds(
    Ack, cmd=ids, ok=st.just(False), error=one_line
)
event_acks = st.builds(EventAck, upto=st.integers(0, 2**63 - 1))
messages = st.one_of(events, commands(), births, wills, acks, event_acks)


@FAST
@given(messages)
def test_every_valid_message_round_trips(message):
    cab = getattr(message, "cab", "any-cabinet")
    assert decode(topic(message.TOPIC_KIND, cab), encode(message)) == message


@FAST
@given(st.sampled_from(TopicKind), st.binary(max_size=512))
def test_random_bytes_only_raise_message_errors(kind, payload):
    with contextlib.suppress(MessageError):
        decode(topic(kind, "c1"), payload)


@FAST
@given(st.text(max_size=80), st.binary(max_size=64))
def test_any_topic_only_raises_topic_or_message_errors(name, payload):
    with contextlib.suppress(TopicError, MessageError):
        decode(name, payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
RECORDED = [
    (path.name.split(".")[0], json.loads(path.read_text(encoding="utf-8")))
    for path in sorted(FIXTURES.glob("*.json"))
]


def paths_of(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths_of(item, (*prefix, index))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(RECORDED), st.data())
def test_mutated_recorded_payloads_only_raise_message_errors(recorded, data):
    kind, payload = recorded
    payload = json.loads(json.dumps(payload))
    path = data.draw(st.sampled_from([p for p in paths_of(payload) if p]))
    parent = payload
    for part in path[:-1]:
        parent = parent[part]
    if data.draw(st.booleans()):
        parent[path[-1]] = data.draw(json_values)
    elif isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent.pop(path[-1])
    try:
        message = decode(topic(kind, "SZ-NS-0042"), json.dumps(payload).encode())
    except MessageError as error:
        assert str(error)
    else:  # a mutation the contract allows (an ignored data field, a still-valid value)
        assert decode(topic(kind, "SZ-NS-0042"), encode(message)) == message


@pytest.mark.parametrize("as_bytes", [False, True])
def test_nesting_is_refused_one_level_past_the_limit_and_taken_at_it(as_bytes: bool) -> None:
    # The depth walk runs only past MAX_JSON_DEPTH brackets: right at the edge it must still
    # tell the two apart, whether the text arrives as str (the API) or bytes (MQTT).
    def nested(depth: int) -> str | bytes:
        text = '{"a":' * (depth - 1) + "[]" + "}" * (depth - 1)
        return text.encode() if as_bytes else text

    assert strict_loads(nested(MAX_JSON_DEPTH)) is not None
    with pytest.raises(ValueError, match=f"nested more than {MAX_JSON_DEPTH} deep"):
        strict_loads(nested(MAX_JSON_DEPTH + 1))
