"""Webhook decisions without I/O: which URLs may be called, event types, retry timing, when an
endpoint is given up on. The adapter (cloud/notify/webhooks.py) resolves names, sends and signs.

Standard Webhooks (https://www.standardwebhooks.com): every message carries `webhook-id` (the same
on every retry, so a receiver drops duplicates), `webhook-timestamp` and `webhook-signature`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from cloud.core.parcels import Status

EVENT_PREFIX = "parcel."
ALL_EVENTS = "*"
EVENT_TYPES = tuple(f"{EVENT_PREFIX}{status.value}" for status in Status)

# Retries: exponential from 5 s, doubling, capped at 2 h per wait, each wait drawn in [½, 1] of
# its nominal value (jitter, so a recovered receiver is not hit by every sender at once). Given up
# ("dead") at the first failure once RETRY_HORIZON has passed since the first attempt: at least
# 3 days of trying (Stripe's horizon), ~45 attempts at most.
FIRST_DELAY_S = 5.0
MAX_DELAY_S = 2 * 3600.0
RETRY_HORIZON = timedelta(days=3)
# An endpoint whose every attempt failed for 5 days (and at least 20 attempts in a row) is
# disabled, as Svix does: the owner sees why in `GET /webhooks`, and the audit log has a row.
DISABLE_AFTER = timedelta(days=5)
DISABLE_MIN_FAILURES = 20
# After a rotation the old secret still signs for a day, so receivers can switch at leisure.
ROTATION_GRACE = timedelta(hours=24)
SECRET_PREFIX = "whsec_"


class UrlRefused(ValueError):
    """An endpoint URL the cloud will not call; the message names why."""


@dataclass(frozen=True)
class Target:
    """A URL's parts that the guard decides on."""

    scheme: str
    host: str
    port: int

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"


def allowed(target: Target, allow_hosts: frozenset[str]) -> bool:
    """Whether the operator's allow-list names this host (or host:port): a local test receiver."""
    return target.host in allow_hosts or target.host_port in allow_hosts


def check_target(target: Target, addresses: list[str], allow_hosts: frozenset[str]) -> None:
    """Refuse a URL that is not https, or whose host resolves to a non-public address
    (loopback, private, link-local, metadata...), unless the allow-list names it.

    Checked at registration and again before every send (DNS may change in between).
    """
    if allowed(target, allow_hosts):
        return
    if target.scheme != "https":
        raise UrlRefused("url: must be https (http only for hosts in the webhook allow-list)")
    if not addresses:
        raise UrlRefused(f"url: host {target.host} does not resolve")
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if not address.is_global:
            raise UrlRefused(f"url: host {target.host} resolves to {address}, a non-public address")


def check_event_types(event_types: list[str]) -> list[str]:
    """Return the event types, deduplicated in order; ValueError naming an unknown one."""
    if not event_types:
        raise ValueError(f"event_types: give at least one of {', '.join(EVENT_TYPES)} or '*'")
    for name in event_types:
        if name != ALL_EVENTS and name not in EVENT_TYPES:
            raise ValueError(f"event_types: unknown {name!r}; known: {', '.join(EVENT_TYPES)}")
    return list(dict.fromkeys(event_types))


def subscribed(event_types: list[str], event: str) -> bool:
    """Whether an endpoint with `event_types` wants the parcel status event `event`."""
    return ALL_EVENTS in event_types or f"{EVENT_PREFIX}{event}" in event_types


def retry_delay(attempt: int, jitter: float) -> timedelta:
    """The wait after failed attempt number `attempt` (1-based); `jitter` in [0, 1)."""
    nominal = min(FIRST_DELAY_S * 2 ** min(attempt - 1, 30), MAX_DELAY_S)
    return timedelta(seconds=nominal * (0.5 + jitter / 2))


def gives_up(first_attempt_at: datetime, now: datetime) -> bool:
    """Whether a delivery failing at `now` is dead: its retry horizon has passed."""
    return now - first_attempt_at >= RETRY_HORIZON


def should_disable(failing_since: datetime | None, failures: int, now: datetime) -> bool:
    """Whether an endpoint that has failed `failures` times in a row since `failing_since` is
    given up on."""
    return (
        failing_since is not None
        and failures >= DISABLE_MIN_FAILURES
        and now - failing_since >= DISABLE_AFTER
    )


def success(status_code: int) -> bool:
    """Standard Webhooks: any 2xx is delivered; anything else (and no answer) is retried."""
    return 200 <= status_code < 300
