"""The cloud's Prometheus metrics (docs/metrics.md): what workers count, what the API reads.

Three sources, each exposed where it is true:

- **the worker's counters** (`WORKER`, this process): events received by type, stored, applied,
  dropped; the ingest lag; event-acks; commands sent, resent, expired; notices by channel and
  outcome; webhook deliveries by outcome. Each worker serves them on a port of its own
  (`LOCKER_CLOUD_WORKER_METRICS_PORT`, `serve_worker_metrics`): sum them over workers.
- **the fleet's gauges** (`FleetCollector`), read from the database at scrape time: cabinets
  by presence, faulted doors, events not yet applied and the oldest one's age, commands in
  play, notices and webhook deliveries not settled, open alarms by kind. The API serves them
  on `/metrics`: every replica reads the same database, so take `max` over replicas, not `sum`.
- **the API's HTTP latency** (`HttpMetrics`), by route template, method and status class.

Labels stay few and bounded (event types, channels, outcomes, route templates): nothing per
cabinet, per parcel or per phone, so a 10,000-cabinet city has the same number of series as a
demo. Cabinet-level detail is each cabinet's own endpoint (cabinet/metrics.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cloud.services.fleet import read_fleet

log = logging.getLogger(__name__)

# No `_created` series beside every counter and histogram: Prometheus does not need them, and
# they double what a scrape carries.
disable_created_metrics()

# Receipt -> commit is milliseconds when the worker keeps up and seconds to minutes when a
# reconnect storm queues deliveries: buckets from 5 ms to 2 min.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# An API answer is a few ms; a statement export up to seconds.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _registry_with_process() -> CollectorRegistry:
    registry = CollectorRegistry()
    # CPU seconds, resident memory, open fds; the Python version: what an operator checks first.
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


# --- the worker ---------------------------------------------------------------------------------

WORKER = _registry_with_process()

EVENTS_RECEIVED = Counter(
    "locker_events_received_total",
    "Event deliveries decoded by this worker, by event type (redeliveries included).",
    ["type"],
    registry=WORKER,
)
EVENTS_INGESTED = Counter(
    "locker_events_ingested_total",
    "Events stored for the first time (by (cabinet, seq)): the cloud now holds them.",
    registry=WORKER,
)
EVENTS_APPLIED = Counter(
    "locker_events_applied_total", "Events applied to parcels and doors.", registry=WORKER
)
EVENTS_DROPPED = Counter(
    "locker_events_dropped_total",
    "Deliveries dropped: malformed, off-contract, or from a cabinet not in the registry.",
    registry=WORKER,
)
INGEST_LAG = Histogram(
    "locker_ingest_lag_seconds",
    "From a delivery's receipt by the worker to the commit that stored and applied it.",
    buckets=LAG_BUCKETS,
    registry=WORKER,
)
EVENT_ACKS = Counter(
    "locker_event_acks_sent_total",
    "event-ack messages published (each tells one cabinet it may forget its events).",
    registry=WORKER,
)
INGEST_FALLBACKS = Counter(
    "locker_ingest_fallback_batches_total",
    "Batches that failed as one transaction and were done cabinet by cabinet.",
    registry=WORKER,
)
COMMANDS_SENT = Counter(
    "locker_commands_sent_total",
    "Commands published to cabinets: kind=first or resend (unacked after the resend interval).",
    ["kind"],
    registry=WORKER,
)
COMMANDS_EXPIRED = Counter(
    "locker_commands_expired_total",
    "Commands whose expires_at passed before the cabinet acked them.",
    registry=WORKER,
)
NOTICES = Counter(
    "locker_notices_total",
    "Notice send attempts by channel (sms, wechat) and outcome (sent, retried, failed, unknown).",
    ["channel", "outcome"],
    registry=WORKER,
)
WEBHOOK_DELIVERIES = Counter(
    "locker_webhook_deliveries_total",
    "ERP webhook attempts by outcome (delivered, failed: to be retried, dead: retries ran out).",
    ["outcome"],
    registry=WORKER,
)
PRESENCE_CHANGES = Counter(
    "locker_presence_changes_total",
    "Cabinet presence messages applied, by the presence they set (online, offline).",
    ["presence"],
    registry=WORKER,
)
INBOX = Gauge(
    "locker_worker_inbox_messages",
    "Deliveries received from the broker and not yet handled by this worker.",
    registry=WORKER,
)

for _kind in ("first", "resend"):
    COMMANDS_SENT.labels(kind=_kind)
for _outcome in ("delivered", "failed", "dead"):
    WEBHOOK_DELIVERIES.labels(outcome=_outcome)
for _presence in ("online", "offline"):
    PRESENCE_CHANGES.labels(presence=_presence)
for _channel in ("sms", "wechat"):
    for _outcome in ("sent", "retried", "failed", "unknown"):
        NOTICES.labels(channel=_channel, outcome=_outcome)


def watch_inbox(size: Callable[[], int]) -> None:
    """Report `size()` as this process's worker inbox (the last worker started wins)."""
    INBOX.set_function(size)


@dataclass
class MetricsServer:
    """A running `/metrics` HTTP server; `stop()` closes its socket and joins its thread."""

    server: Any
    thread: threading.Thread
    port: int

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve_worker_metrics(host: str, port: int) -> MetricsServer:
    """Serve `WORKER` on http://host:port/metrics from a daemon thread (port 0: any free one).

    The endpoint has no authentication: bind it to 127.0.0.1 (the default) or to a network
    only Prometheus reaches (compose's internal network).
    """
    server, thread = start_http_server(port, addr=host, registry=WORKER)
    return MetricsServer(server=server, thread=thread, port=server.server_address[1])


# --- the fleet, read from the database -----------------------------------------------------------


class FleetCollector(Collector):
    """Gauges of the whole fleet, read from the database at each scrape."""

    def __init__(self, *, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []  # no read at registration; names are checked at scrape (tests/cloud/metrics)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "locker_database_up", "1 if the API could read the fleet's figures from the database."
        )
        now = self.clock()
        try:
            rows = read_fleet(engine=self.engine, now=now)
        except SQLAlchemyError as err:
            log.warning("metrics: could not read the fleet: %s", " ".join(str(err).split())[:300])
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        cabinets = GaugeMetricFamily(
            "locker_cabinets",
            "Registered cabinets by presence (online, offline, never_seen).",
            labels=["presence"],
        )
        for presence, count in sorted(rows.cabinets.items()):
            cabinets.add_metric([presence], count)
        yield cabinets
        yield _gauge(
            "locker_compartments_faulted",
            "Compartments whose lock is faulted (their parcels' deadlines are paused).",
            rows.compartments_faulted,
        )
        yield _gauge(
            "locker_compartments_out_of_service",
            "Compartments taken out of service.",
            rows.compartments_out_of_service,
        )
        yield _gauge(
            "locker_events_unapplied",
            "Events stored but not applied yet, all cabinets together (the ingest backlog).",
            rows.events_unapplied,
        )
        yield _gauge(
            "locker_events_unapplied_oldest_age_seconds",
            "Age of the oldest stored event not applied yet (0 when none waits).",
            _age(now, rows.oldest_unapplied_received_at),
        )
        yield _gauge(
            "locker_commands_pending",
            "Commands in play: not acked, not expired, not superseded (all cabinets together).",
            rows.commands_pending,
        )
        yield _gauge(
            "locker_commands_pending_resent",
            "Of the commands in play, those sent more than once (the cabinet has not acked).",
            rows.commands_pending_resent,
        )
        yield _gauge(
            "locker_commands_pending_oldest_age_seconds",
            "Age of the oldest command in play (0 when none).",
            _age(now, rows.oldest_pending_command_at),
        )
        notices = GaugeMetricFamily(
            "locker_notice_outbox",
            "Notices not sent, by status: queued, sending, unknown (maybe sent: for a person), "
            "failed (for good).",
            labels=["status"],
        )
        for status, count in rows.notices.items():
            notices.add_metric([status], count)
        yield notices
        deliveries = GaugeMetricFamily(
            "locker_webhook_outbox",
            "ERP webhook deliveries not delivered, by status: pending, dead.",
            labels=["status"],
        )
        for status, count in rows.webhook_deliveries.items():
            deliveries.add_metric([status], count)
        yield deliveries
        alarms = GaugeMetricFamily(
            "locker_alarms_open",
            "Alarms not cleared, by kind (door left open, forced, lock fault, keypad lockout).",
            labels=["kind"],
        )
        for kind, count in sorted(rows.alarms_open.items()):
            alarms.add_metric([kind], count)
        yield alarms


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _age(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())


# --- the API's HTTP latency --------------------------------------------------------------------


class HttpMetrics:
    """Request latency by route template: `/api/v1/parcels/{parcel_id}`, never the id itself."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "locker_http_request_duration_seconds",
            "API request latency by method, route template and status class (2xx, 4xx, 5xx).",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.duration.labels(method=method, route=route, status=f"{status // 100}xx").observe(
            seconds
        )


def api_registry(
    *, engine: Engine, clock: Callable[[], datetime]
) -> tuple[CollectorRegistry, HttpMetrics]:
    """The registry one API app serves: process, fleet gauges and HTTP latency."""
    registry = _registry_with_process()
    registry.register(FleetCollector(engine=engine, clock=clock))
    return registry, HttpMetrics(registry)
