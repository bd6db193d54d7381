"""The daemon's /metrics: what a technician reads off one cabinet, scraped over HTTP.

A jammed lock makes a faulted compartment, a `lock.fault` event and an unlock fault on board 1;
the events wait in the journal until the cloud's event-ack, and the backlog says so.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cabinet.config import load_config
from cabinet.core.inputs import CourierSignIn, PhoneEntered, SizeChosen, TrackingEntered
from cabinet.metrics import serve_metrics
from firmware_sim import PtyServer, SimulatedBus
from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.aio import eventually
from tests.cabinet.service.harness import (
    COURIER,
    PHONE,
    PIN,
    ServiceFactory,
    events_of,
    put_courier,
)

Sim = tuple[SimulatedBus, PtyServer]
ROOT = Path(__file__).resolve().parents[3]


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the daemon's /metrics by (name, labels), fetched off the loop's thread."""
    answer = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert answer.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


async def test_a_jammed_lock_and_the_unacked_journal_show_in_the_metrics(
    service_factory: ServiceFactory, peer: CloudPeer, sim: Sim
) -> None:
    bus, _server = sim
    runner = await service_factory()
    await runner.wait_online()
    served = serve_metrics(runner.service, "127.0.0.1", 0)
    try:
        before = await scrape(served.port)
        assert before[("locker_cabinet_mqtt_connected", ())] == 1
        assert before[("locker_cabinet_compartments", (("state", "faulted"),))] == 0
        await put_courier(peer)
        bus.faults.jam(1, 2)  # A02, the only M door
        await runner.submit(CourierSignIn(COURIER, PIN))
        await runner.submit(TrackingEntered("SF4001"))
        await runner.submit(PhoneEntered(PHONE))
        await runner.submit(SizeChosen("M"))
        await eventually(lambda: events_of(peer, "lock.fault"), 10, "lock.fault at the peer")

        figures = await scrape(served.port)
        assert figures[("locker_cabinet_compartments", (("state", "faulted"),))] == 1
        board = (("board", "1"), ("bus", "rs485"))  # the driver's name: the bus's in a config
        assert figures[("locker_cabinet_bus_requests_total", board)] > 0
        faults = (*board, ("kind", "unlock_faults"))
        assert figures[("locker_cabinet_bus_errors_total", faults)] >= 1
        assert figures[("locker_cabinet_events_total", (("type", "lock.fault"),))] >= 1
        # Nothing acked yet: every event the peer saw waits in the journal.
        unacked = len(peer.seqs())
        assert unacked >= 1
        assert figures[("locker_cabinet_journal_unacked_events", ())] == unacked
        assert figures[("locker_cabinet_journal_oldest_unacked_age_seconds", ())] >= 0

        peer.event_ack(max(peer.seqs()))
        await eventually(lambda: runner.journal.backlog()[0] == 0, 10, "the journal acked")
        after = await scrape(served.port)
        assert after[("locker_cabinet_journal_unacked_events", ())] == 0
        assert after[("locker_cabinet_journal_oldest_unacked_age_seconds", ())] == 0
    finally:
        served.stop()


def test_metrics_are_off_unless_a_port_is_set() -> None:
    """The shipped examples serve no metrics; `LOCKER_METRICS_PORT` (or the TOML) turns them on."""
    example = ROOT / "deploy" / "cabinet-rs485-24.toml"
    env = {"LOCKER_CODE_KEY": "k" * 32}
    shipped = load_config(example, env=env)
    assert (shipped.metrics_port, shipped.metrics_host, shipped.log_format) == (
        None,
        "127.0.0.1",
        "text",
    )
    on = load_config(
        example, env={**env, "LOCKER_METRICS_PORT": "9102", "LOCKER_LOG_FORMAT": "json"}
    )
    assert (on.metrics_port, on.log_format) == (9102, "json")
