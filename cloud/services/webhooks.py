"""Webhook endpoints of an ERP key: register (the secret shown once), list, rotate, disable; the
delivery log and replays. A key sees only its own endpoints: another key's is a NotFound."""

from __future__ import annotations

import base64
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlmodel import Session

from cloud.core import webhooks as core
from cloud.db import webhooks as db
from cloud.db.engine import write_session
from cloud.db.rows import new_id
from cloud.db.sealing import seal
from cloud.db.webhook_models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from cloud.errors import InvalidInput, NotFound

Resolver = Callable[[str, int], list[str]]
Endpoint = WebhookEndpoint  # what the routes render
SECRET_BYTES = 24  # 192 bits; Standard Webhooks asks for 24 to 64
NOT_FOUND = "no webhook endpoint by that id"
REPLAY_MAX = 1000  # one replay request re-queues at most this many deliveries


def system_resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (what a send could connect to)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return sorted({str(info[4][0]) for info in infos})


def allow_hosts(setting: str) -> frozenset[str]:
    """The allow-list setting (comma-separated hosts or host:port) as a set."""
    return frozenset(part.strip().lower() for part in setting.split(",") if part.strip())


def parse_url(url: str) -> core.Target:
    """Split an endpoint URL; UrlRefused if it is not an absolute http(s) URL with a host."""
    if len(url) > 2000:
        raise core.UrlRefused("url: at most 2000 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise core.UrlRefused(f"url: not a valid URL ({err})") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise core.UrlRefused("url: must be an absolute https:// URL")
    if parts.username or parts.password:
        raise core.UrlRefused("url: must not carry credentials")
    default = 443 if parts.scheme == "https" else 80
    return core.Target(parts.scheme, parts.hostname.lower(), port or default)


@dataclass(frozen=True)
class Checked:
    """A URL the guard let through, and the address it was checked at.

    `address` is where a send must connect: the host was resolved once, every address it gave
    was checked, and connecting to the checked one (not resolving the name again) is what keeps
    a DNS rebinding (public at the check, internal at the connect) from reaching inside. None for
    an allow-listed host, which is connected to by name.
    """

    target: core.Target
    address: str | None


def check_url(url: str, *, allow: frozenset[str], resolve: Resolver) -> Checked:
    """Refuse (InvalidInput naming `url`) a URL the guard refuses (cloud.core.webhooks); return
    the checked address to connect to."""
    try:
        target = parse_url(url)
        addresses = [] if core.allowed(target, allow) else resolve(target.host, target.port)
        core.check_target(target, addresses, allow)
    except core.UrlRefused as err:
        raise InvalidInput(str(err), field="url") from None
    return Checked(target, None if core.allowed(target, allow) else addresses[0])


def _begin_write(session: Session) -> None:
    """Start the write transaction afresh, as a writer (BEGIN IMMEDIATE on SQLite). The route's
    key lookup left a read transaction open; on SQLite one that then writes, after a worker
    committed meanwhile, fails at once ("database is locked", no busy wait)."""
    session.rollback()
    write_session(session)


def secret_context(endpoint_id: str) -> str:
    """The sealing context of an endpoint's secrets: a sealed secret cannot move to another."""
    return f"webhook-endpoint:{endpoint_id}"


def new_secret() -> str:
    return core.SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@dataclass(frozen=True)
class Created:
    endpoint: WebhookEndpoint
    secret: str  # shown once


def register(
    *,
    session: Session,
    key_id: str,
    url: str,
    event_types: list[str],
    seal_key: bytes,
    allow: frozenset[str],
    resolve: Resolver,
    now: datetime,
) -> Created:
    """Add an endpoint for `key_id`; return it with its signing secret (never readable again)."""
    check_url(url, allow=allow, resolve=resolve)  # resolves names: before the write lock
    try:
        types = core.check_event_types(event_types)
    except ValueError as err:
        raise InvalidInput(str(err), field="event_types") from None
    _begin_write(session)
    endpoint_id = f"we_{new_id()}"
    secret = new_secret()
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        key_id=key_id,
        url=url,
        event_types=types,
        secret_sealed=seal(seal_key, secret, context=secret_context(endpoint_id)),
        created_at=now,
    )
    session.add(endpoint)
    session.commit()
    session.refresh(endpoint)
    return Created(endpoint, secret)


def listed(*, session: Session, key_id: str) -> list[WebhookEndpoint]:
    return db.endpoints_of_key(session=session, key_id=key_id)


def get(*, session: Session, key_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = db.endpoint_of_key(session=session, key_id=key_id, endpoint_id=endpoint_id)
    if endpoint is None:
        raise NotFound(NOT_FOUND)
    return endpoint


def rotate(
    *, session: Session, key_id: str, endpoint_id: str, seal_key: bytes, now: datetime
) -> Created:
    """Give the endpoint a new secret; the current one keeps signing beside it for the grace
    period (Standard Webhooks sends several signatures), so the receiver can switch over."""
    _begin_write(session)
    endpoint = get(session=session, key_id=key_id, endpoint_id=endpoint_id)
    secret = new_secret()
    endpoint.previous_secret_sealed = endpoint.secret_sealed
    endpoint.previous_until = now + core.ROTATION_GRACE
    endpoint.secret_sealed = seal(seal_key, secret, context=secret_context(endpoint.id))
    session.add(endpoint)
    session.commit()
    session.refresh(endpoint)
    return Created(endpoint, secret)


def set_enabled(
    *, session: Session, key_id: str, endpoint_id: str, enabled: bool
) -> WebhookEndpoint:
    """Disable an endpoint (nothing is sent; deliveries wait), or enable it again (the failure
    count starts over)."""
    _begin_write(session)
    endpoint = get(session=session, key_id=key_id, endpoint_id=endpoint_id)
    if enabled:
        endpoint.status, endpoint.disabled_reason = db.ACTIVE, None
        endpoint.failing_since, endpoint.failures = None, 0
    else:
        endpoint.status, endpoint.disabled_reason = db.DISABLED, "disabled by its owner"
    session.add(endpoint)
    session.commit()
    session.refresh(endpoint)
    return endpoint


def delete(*, session: Session, key_id: str, endpoint_id: str) -> None:
    _begin_write(session)
    endpoint = get(session=session, key_id=key_id, endpoint_id=endpoint_id)
    session.delete(endpoint)
    session.commit()


@dataclass(frozen=True)
class LoggedDelivery:
    delivery: WebhookDelivery
    event: str
    attempts: list[WebhookAttempt]


def deliveries(
    *, session: Session, key_id: str, endpoint_id: str, limit: int, before_id: int | None
) -> list[LoggedDelivery]:
    """The endpoint's delivery log, newest first, each with its attempts."""
    from cloud.db.models import WebhookOutbox

    get(session=session, key_id=key_id, endpoint_id=endpoint_id)
    rows = db.deliveries_of(
        session=session, endpoint_id=endpoint_id, limit=limit, before_id=before_id
    )
    attempts = db.attempts_of(session=session, delivery_ids=[r.id for r in rows if r.id])
    by_delivery: dict[int, list[WebhookAttempt]] = {}
    for attempt in attempts:
        by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
    out = []
    for row in rows:
        outbox = session.get(WebhookOutbox, row.outbox_id)
        event = f"{core.EVENT_PREFIX}{outbox.event}" if outbox else ""
        out.append(LoggedDelivery(row, event, by_delivery.get(row.id or 0, [])))
    return out


def replay(
    *,
    session: Session,
    key_id: str,
    endpoint_id: str,
    delivery_id: int | None,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
) -> list[int]:
    """Queue one delivery, or those created in [since, until), to be sent again now (with the
    same webhook-id: a receiver that has it already may drop it). Return their ids."""
    _begin_write(session)
    get(session=session, key_id=key_id, endpoint_id=endpoint_id)
    if (delivery_id is None) == (since is None or until is None):
        raise InvalidInput("give either delivery_id, or both since and until", field="delivery_id")
    if delivery_id is not None:
        row = session.get(WebhookDelivery, delivery_id)
        if row is None or row.endpoint_id != endpoint_id:
            raise NotFound("no delivery by that id at this endpoint", field="delivery_id")
        rows = [row]
    else:
        assert since is not None and until is not None
        if until <= since:
            raise InvalidInput("until must be after since", field="until")
        rows = db.deliveries_between(
            session=session, endpoint_id=endpoint_id, since=since, until=until
        )
        if len(rows) > REPLAY_MAX:
            raise InvalidInput(
                f"{len(rows)} deliveries in that range; replay at most {REPLAY_MAX} at once",
                field="since",
            )
    for row in rows:
        row.status, row.next_attempt_at = db.PENDING, now
        row.first_attempt_at, row.last_error = None, None
        session.add(row)
    session.commit()
    return [row.id for row in rows if row.id is not None]
