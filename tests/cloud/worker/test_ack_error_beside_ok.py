"""A cabinet that copies the contract's ack example literally still gets its success recorded.

The old contract text showed `"error": "..."` beside `"ok": true`; a cabinet sending that (or
`"error": ""`) had its whole ack dropped as malformed, so the cloud kept resending the command
until it expired. The decoder now ignores an `error` beside `ok: true` (docs/mqtt.md#acks).
"""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.db.models import CommandOutbox
from cloud.worker import IngestLoop, MqttClient, Worker
from cloud.worker.mqtt import Received
from protocol.codec import encode
from protocol.topics import ack_topic, event_topic
from tests.cloud.db.builders import SEAL_KEY, T0, deposited

NOW = T0 + timedelta(minutes=5)


def test_an_ok_ack_with_an_error_beside_it_is_recorded_as_ok(engine: Engine) -> None:
    ingest = IngestLoop(
        engine=engine, publish=lambda _topic, _payload: True, seal_key=SEAL_KEY, clock=lambda: NOW
    )
    ingest.handle(
        [Received(event_topic("CAB-1"), encode(deposited(seq, "CAB-1")), NOW) for seq in (1, 2)]
    )
    with Session(engine) as session:
        ids = sorted(session.exec(select(CommandOutbox.id)).all())
    assert len(ids) == 2  # one codes.put per deposit

    client = MqttClient(host="127.0.0.1", port=1883, client_id="t", subscriptions=[])
    worker = Worker(engine=engine, client=client, seal_key=SEAL_KEY)
    # As a cabinet copying the old example sends them: an error text beside ok true.
    copied = [
        {"v": 1, "cmd": ids[0], "ok": True, "error": ""},
        {"v": 1, "cmd": ids[1], "ok": True, "error": "..."},
    ]
    worker.handle([Received(ack_topic("CAB-1"), json.dumps(ack).encode(), NOW) for ack in copied])

    with Session(engine) as session:
        rows = [session.get(CommandOutbox, cid) for cid in ids]
    assert [(row.ack_ok, row.ack_error) for row in rows] == [(True, None), (True, None)]
    assert all(row.acked_at is not None for row in rows)
