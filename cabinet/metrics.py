"""The cabinet daemon's Prometheus metrics, served on `metrics_port` (off unless set).

What a technician or the fleet's operator asks of one cabinet: is the link up, how many events
wait in the journal for the cloud's event-ack (and since when), the compartments by state, the
RS485 bus's errors per board, the events journalled by type (`keypad.lockout` among them: the
keypad's lockouts). Read at scrape time from the running service (`CabinetCollector`), on the
HTTP server's own thread: the journal takes its lock, the driver's counters theirs, and the
cabinet's state is an immutable value the owner task swaps whole.

Each cabinet is its own Prometheus target (or a node exporter's textfile, or a push to a
gateway at the site): the cloud's metrics never carry a per-cabinet label.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cabinet.health import BUS_ERROR_KINDS  # the RS485 board counters that are errors

if TYPE_CHECKING:
    from cabinet.service import CabinetService

log = logging.getLogger(__name__)

disable_created_metrics()  # no `_created` series beside each counter

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

EVENTS = Counter(
    "locker_cabinet_events_total",
    "Events journalled since the daemon started, by type (keypad.lockout: a keypad lockout).",
    ["type"],
    registry=REGISTRY,
)
COMPARTMENT_STATES = ("free", "reserved", "occupied", "faulted", "out_of_service")  # the wire's


def count_events(types: list[str]) -> None:
    """Count journalled events (the service calls it after each commit)."""
    for type_ in types:
        EVENTS.labels(type=type_).inc()


class CabinetCollector(Collector):
    """Gauges and counters read from one running cabinet service at each scrape."""

    def __init__(self, service: CabinetService, now: Any = None) -> None:
        self.service = service
        self.now = now or (lambda: datetime.now(UTC))

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        service = self.service
        link = service.link
        yield GaugeMetricFamily(
            "locker_cabinet_mqtt_connected",
            "1 while the MQTT link to the cloud is up (deposits and pickups go on without it).",
            value=1 if link is not None and link.online.is_set() else 0,
        )
        count, oldest = service.journal.backlog()
        yield GaugeMetricFamily(
            "locker_cabinet_journal_unacked_events",
            "Events in the journal that no event-ack covers yet (the cloud may not have them).",
            value=count,
        )
        age = 0.0 if oldest is None else max(0.0, (self.now() - oldest).total_seconds())
        yield GaugeMetricFamily(
            "locker_cabinet_journal_oldest_unacked_age_seconds",
            "Age of the oldest unacked event in the journal (0 when none waits).",
            value=age,
        )
        yield from self._compartments()
        yield from _bus(service.driver.health())

    def _compartments(self) -> Iterator[Metric]:
        try:
            compartments = self.service.cabinet.compartments
        except Exception:  # not started, or stopped: the other figures still say so
            return
        by_state = dict.fromkeys(COMPARTMENT_STATES, 0)
        for compartment in compartments.values():
            state = compartment.wire_state
            by_state[state] = by_state.get(state, 0) + 1
        family = GaugeMetricFamily(
            "locker_cabinet_compartments",
            "Compartments by state (faulted: the lock did not release; a technician must look).",
            labels=["state"],
        )
        for state, count in by_state.items():
            family.add_metric([state], count)
        yield family


def _boards(health: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(bus, board address, counters) of every RS485 board, through a mixed driver too."""
    if health.get("driver") == "mixed":
        for part in health.get("drivers", ()):
            yield from _boards(part)
    elif health.get("driver") == "rs485":
        for address, counters in sorted(health.get("boards", {}).items()):
            yield str(health.get("name", "")).removeprefix("rs485:"), str(address), counters


def _bus(health: Mapping[str, Any]) -> Iterator[Metric]:
    boards = list(_boards(health))
    if not boards:
        return  # GPIO doors: no bus
    requests = CounterMetricFamily(
        "locker_cabinet_bus_requests",
        "Requests sent to each RS485 lock board.",
        labels=["bus", "board"],
    )
    errors = CounterMetricFamily(
        "locker_cabinet_bus_errors",
        "RS485 errors per board, by kind (timeouts, bad_checksum, malformed, wrong_replies, ...).",
        labels=["bus", "board", "kind"],
    )
    faulted = GaugeMetricFamily(
        "locker_cabinet_board_faulted",
        "1 while a board is taken out of use after repeated failures (its doors out of service).",
        labels=["bus", "board"],
    )
    for bus, board, counters in boards:
        requests.add_metric([bus, board], counters.get("requests", 0))
        for kind in BUS_ERROR_KINDS:
            errors.add_metric([bus, board, kind], counters.get(kind, 0))
        faulted.add_metric([bus, board], 1 if counters.get("faulted") else 0)
    yield requests
    yield errors
    yield faulted


@dataclass
class CabinetMetricsServer:
    """The running `/metrics` server of one daemon; `stop()` closes it."""

    server: Any
    thread: threading.Thread
    port: int
    collector: CabinetCollector

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        REGISTRY.unregister(self.collector)


def serve_metrics(service: CabinetService, host: str, port: int) -> CabinetMetricsServer:
    """Serve the daemon's metrics on http://host:port/metrics (port 0: any free one)."""
    collector = CabinetCollector(service)
    REGISTRY.register(collector)
    try:
        server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError:
        REGISTRY.unregister(collector)
        raise
    port = server.server_address[1]
    log.info("cabinet %s: metrics on http://%s:%d/metrics", service.cabinet_id, host, port)
    return CabinetMetricsServer(server=server, thread=thread, port=port, collector=collector)
