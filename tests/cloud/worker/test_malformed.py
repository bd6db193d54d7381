"""A malformed or foreign message on the event topic is logged with its reason and dropped."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import Engine

from cloud.db.models import InboxEvent
from protocol.codec import encode
from protocol.topics import event_topic
from tests.cloud.db.builders import CAB, deposited
from tests.cloud.worker.harness import ScriptedCabinet, count, make_worker, start_workers
from tests.services import Mosquitto


def test_bad_messages_are_dropped_with_a_reason_and_the_next_valid_one_goes_through(
    engine: Engine, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cloud.worker")
    worker = make_worker(engine, mosquitto, "w1")
    start_workers(worker)
    cabinet = ScriptedCabinet(mosquitto)
    unknown_type = json.loads(encode(deposited(1)))
    unknown_type["type"] = "parcel.teleported"
    try:
        cabinet.publish_raw(event_topic(CAB), b"not json {")
        cabinet.publish_raw(event_topic(CAB), encode(deposited(1, cab="CAB-2")))
        cabinet.publish_raw(event_topic(CAB), json.dumps(unknown_type).encode())
        cabinet.publish_raw(event_topic("GHOST"), encode(deposited(1, cab="GHOST")))
        cabinet.publish_events([deposited(1)])
        cabinet.wait_acked(1)
    finally:
        worker.stop()
        cabinet.close()

    assert count(engine, InboxEvent) == 1
    assert worker.ingest.stats.dropped == 4
    reasons = "\n".join(r.getMessage() for r in caplog.records)
    assert "payload is not JSON" in reasons
    assert "payload names cabinet 'CAB-2' but came on the topic of cabinet 'CAB-1'" in reasons
    assert "unknown event type 'parcel.teleported'" in reasons
    assert "no cabinet 'GHOST' in the registry" in reasons
    assert "+8613812341234" not in reasons  # payloads, which hold phones, are never logged
