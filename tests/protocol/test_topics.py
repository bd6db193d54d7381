"""Tests of the MQTT topic names, filters and parser of the cabinet ↔ cloud contract."""

import pytest

from protocol.errors import ProtocolError, TopicError
from protocol.topics import (
    ACK_SUBSCRIPTION,
    EVENT_SUBSCRIPTION,
    SHARED_EVENT_SUBSCRIPTION,
    STATE_SUBSCRIPTION,
    Topic,
    TopicKind,
    ack_topic,
    cabinet_subscriptions,
    cmd_topic,
    event_ack_topic,
    event_topic,
    parse_topic,
    state_topic,
    topic,
    topic_template,
    validate_cabinet_id,
)


def test_builders_write_the_topics_of_the_contract():
    assert event_topic("SZ-NS-0042") == "lockers/v1/SZ-NS-0042/event"
    assert state_topic("SZ-NS-0042") == "lockers/v1/SZ-NS-0042/state"
    assert cmd_topic("SZ-NS-0042") == "lockers/v1/SZ-NS-0042/cmd"
    assert ack_topic("SZ-NS-0042") == "lockers/v1/SZ-NS-0042/ack"
    assert event_ack_topic("SZ-NS-0042") == "lockers/v1/SZ-NS-0042/event-ack"


def test_subscriptions_of_the_cloud_and_of_a_cabinet():
    assert EVENT_SUBSCRIPTION == "lockers/v1/+/event"
    assert SHARED_EVENT_SUBSCRIPTION == "$share/cloud/lockers/v1/+/event"
    assert STATE_SUBSCRIPTION == "lockers/v1/+/state"
    assert ACK_SUBSCRIPTION == "lockers/v1/+/ack"
    assert cabinet_subscriptions("c1") == ("lockers/v1/c1/cmd", "lockers/v1/c1/event-ack")


def test_kinds_know_who_publishes_and_what_is_retained():
    assert {k for k in TopicKind if k.publisher == "cloud"} == {TopicKind.CMD, TopicKind.EVENT_ACK}
    assert [k for k in TopicKind if k.retained] == [TopicKind.STATE]
    assert topic_template(TopicKind.EVENT_ACK) == "lockers/v1/{cab}/event-ack"


@pytest.mark.parametrize("kind", list(TopicKind))
def test_parse_inverts_build(kind):
    name = topic(kind, "cab_01-x")
    parsed = parse_topic(name)
    assert parsed == Topic("cab_01-x", kind)
    assert str(parsed) == name


@pytest.mark.parametrize("cab", ["a", "A" * 64, "SZ-NS-0042", "cab_7"])
def test_valid_cabinet_ids(cab):
    assert validate_cabinet_id(cab) == cab


@pytest.mark.parametrize("cab", ["", "A" * 65, "cab 7", "cab/7", "cab+", "柜子", "cab\n", 42, None])
def test_invalid_cabinet_ids(cab):
    with pytest.raises(TopicError):
        validate_cabinet_id(cab)
    with pytest.raises(TopicError):
        event_topic(cab)


@pytest.mark.parametrize(
    ("name", "complaint"),
    [
        ("", "empty"),
        ("lockers/v1/+/event", "wildcard"),
        ("lockers/v1/c1/#", "wildcard"),
        ("$share/cloud/lockers/v1/c1/event", "does not start with lockers/"),
        ("locker/v1/c1/event", "does not start with lockers/"),
        ("/lockers/v1/c1/event", "does not start with lockers/"),
        ("lockers", "version nothing"),
        ("lockers/v2/c1/event", "version 'v2'"),
        ("lockers/v1/c1", "3 levels"),
        ("lockers/v1/c1/event/extra", "5 levels"),
        ("lockers/v1/c1/event/", "5 levels"),
        ("lockers/v1//event", "bad cabinet id ''"),
        ("lockers/v1/c 1/event", "bad cabinet id 'c 1'"),
        ("lockers/v1/c1/events", "unknown kind 'events'"),
        ("lockers/v1/c1/EVENT", "unknown kind 'EVENT'"),
        (b"lockers/v1/c1/event", "string"),
    ],
)
def test_parse_rejects_malformed_topics_saying_what_is_wrong(name, complaint):
    with pytest.raises(TopicError) as caught:
        parse_topic(name)
    assert complaint in str(caught.value)


def test_a_hostile_topic_is_shortened_in_the_error():
    with pytest.raises(TopicError) as caught:
        parse_topic("lockers/v1/" + "x" * 10_000 + "/event")
    assert len(str(caught.value)) < 400


def test_topic_errors_are_protocol_errors():
    assert issubclass(TopicError, ProtocolError)
