"""The webhook dispatcher: fans the outbox out to endpoints, sends due deliveries, signed.

One `tick(now)`:

1. Fan-out: each queued `webhook_outbox` row (written with its parcel's change) becomes one
   `webhook_deliveries` row per active endpoint of the parcel's owner key subscribed to its event;
   the outbox row moves to `dispatched` in the same transaction (a parcel with no owner key or
   no endpoint is dispatched to nobody).
2. Send, in rounds: the oldest due deliveries that are each first in their (endpoint, parcel)
   line are leased in one transaction (next attempt moved past the round's sends, conditionally,
   so two workers never both send one), the endpoint's URL is checked again by the SSRF guard
   (its host resolved once, every address checked, the connection made to the checked address:
   DNS pinning), and the body is POSTed with the Standard Webhooks headers, signed with the
   endpoint's secret (and, during a rotation's grace period, the previous one too). A 2xx
   delivers it; anything else is an attempt row and a retry after an exponential, jittered wait,
   until the retry horizon (3 days) makes it dead. A dead
   delivery unblocks the parcel's next event.

At least once: a crash after the send and before the record sends it again, with the same
`webhook-id`, which a receiver uses to drop duplicates. `now` (the injected clock) decides what
is due; the signature's timestamp is the wall clock's, as the receiver checks it against its own.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Engine
from sqlmodel import Session
from standardwebhooks import Webhook

from cloud import metrics
from cloud.core import webhooks as core
from cloud.core.access import AuditEntry, PrincipalKind, ResourceKind
from cloud.db import webhooks as db
from cloud.db.engine import write_session
from cloud.db.models import WebhookOutbox
from cloud.db.sealing import SealError, unseal
from cloud.db.webhook_models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from cloud.services.audit import record
from cloud.services.webhooks import Resolver, check_url, secret_context, system_resolve

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0  # a receiver should answer at once and work later (Standard Webhooks)
BATCH_SIZE = 100
FANOUT_BATCH = 500
DISABLE_ACTION = "disable_webhook_endpoint"
# Delivered deliveries (and their attempts) are kept this long for the log and replays, then
# deleted: at 100 events a second the log would otherwise grow by millions of rows a week.
RETENTION = timedelta(days=30)
PRUNE_EVERY = timedelta(hours=1)
PRUNE_BATCH = 5000  # rows a transaction: a long delete would hold up the sends on SQLite


@dataclass
class WebhookTick:
    fanned_out: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    disabled: int = 0
    pruned: int = 0
    more: bool = False


def _wall() -> datetime:
    return datetime.now(UTC)


class WebhookDispatcher:
    """Send the ERP webhooks; call `tick(now)` from the worker's loop."""

    def __init__(
        self,
        *,
        engine: Engine,
        seal_key: bytes,
        allow_hosts: frozenset[str] = frozenset(),
        resolve: Resolver = system_resolve,
        client: httpx.Client | None = None,
        timeout_s: float = TIMEOUT_S,
        jitter: Callable[[], float] = random.random,
        wall: Callable[[], datetime] = _wall,
        batch_size: int = BATCH_SIZE,
        retention: timedelta = RETENTION,
    ) -> None:
        self.engine = engine
        self.seal_key = seal_key
        self.allow_hosts = allow_hosts
        self.resolve = resolve
        self.timeout_s = timeout_s
        # Redirects are not followed: a public URL must not bounce the request inside.
        self.client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)
        self.jitter = jitter
        self.wall = wall
        self.batch_size = batch_size
        self.retention = retention
        self._prune_next_at: datetime | None = None

    def close(self) -> None:
        self.client.close()

    def tick(self, now: datetime) -> WebhookTick:
        result = WebhookTick()
        result.fanned_out = self.fan_out(now)
        if self._prune_next_at is None or now >= self._prune_next_at:
            result.pruned = self.prune(now)
            self._prune_next_at = now + PRUNE_EVERY
        sent: set[int] = set()  # one attempt per delivery per tick
        while len(sent) < self.batch_size:
            # A round: the heads of distinct (endpoint, parcel) lines, claimed in one
            # transaction, sent, recorded in one transaction; the next round finds the events
            # those lines held back. Two commits a round, not two a delivery.
            claimed = self._claim(now, sent, self.batch_size - len(sent))
            if not claimed:
                return result
            answers = [(d, ep, self._post(ep, outbox, now)) for d, ep, outbox in claimed]
            for outcome in self._record(answers, now):
                setattr(result, outcome, getattr(result, outcome) + 1)
        result.more = True
        return result

    # --- 1. fan-out ----------------------------------------------------------------------------

    def fan_out(self, now: datetime) -> int:
        done = 0
        with Session(self.engine) as session:
            queued = [
                (row.id, row.event, row.parcel_row_id, key_id)
                for row, key_id in db.queued_outbox(session=session, limit=FANOUT_BATCH)
            ]
            keys = {key_id for *_, key_id in queued if key_id is not None}
            endpoints = {
                k: [
                    (e.id, e.event_types)
                    for e in db.endpoints_of_key(session=session, key_id=k)
                    if e.status == db.ACTIVE
                ]
                for k in keys
            }
            session.rollback()
            if not queued:
                return 0
            # One write transaction for the batch (a commit per row would cost as much as the
            # sends); a row another worker moved meanwhile is skipped, not fanned out twice.
            write_session(session)  # SQLite: take the write lock first, not midway
            ids = [outbox_id for outbox_id, *_ in queued if outbox_id is not None]
            moved = db.mark_dispatched(session=session, outbox_ids=ids, now=now)
            for outbox_id, event, parcel_row_id, key_id in queued:
                if outbox_id not in moved:
                    continue
                for endpoint_id, types in endpoints.get(key_id or "", []):
                    if core.subscribed(types, event):
                        session.add(
                            WebhookDelivery(
                                outbox_id=outbox_id,
                                endpoint_id=endpoint_id,
                                parcel_row_id=parcel_row_id,
                                next_attempt_at=now,
                                created_at=now,
                            )
                        )
                done += 1
            session.commit()
        return done

    def prune(self, now: datetime) -> int:
        """Delete what was delivered more than the retention before `now` (the injected clock),
        in batches; return how many deliveries went. Pending and dead ones are kept."""
        total = 0
        while True:
            with Session(self.engine) as session:
                write_session(session)
                done = db.prune_delivered(
                    session=session, before=now - self.retention, limit=PRUNE_BATCH
                )
                session.commit()
            total += done
            if done < PRUNE_BATCH:
                break
        if total:
            log.info("webhooks: %d delivered deliveries past the retention deleted", total)
        return total

    # --- 2. send -------------------------------------------------------------------------------

    def _claim(
        self, now: datetime, sent: set[int], limit: int
    ) -> list[tuple[WebhookDelivery, WebhookEndpoint, WebhookOutbox]]:
        """Lease up to `limit` due heads (their next attempt moved past this round's sends)."""
        claimed = []
        lease = now + timedelta(seconds=self.timeout_s * limit + 60)
        with Session(self.engine, expire_on_commit=False) as session:
            write_session(session)
            for delivery in db.due_heads(session=session, now=now, skip=sent, limit=limit):
                assert delivery.id is not None
                sent.add(delivery.id)
                if not db.claim(session=session, delivery=delivery, until=lease):
                    continue  # another worker has it
                endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
                outbox = session.get(WebhookOutbox, delivery.outbox_id)
                if endpoint is not None and outbox is not None:
                    claimed.append((delivery, endpoint, outbox))
            session.commit()
        return claimed

    def _post(
        self, endpoint: WebhookEndpoint, outbox: WebhookOutbox, now: datetime
    ) -> tuple[int | None, str | None, int]:
        try:
            checked = check_url(endpoint.url, allow=self.allow_hosts, resolve=self.resolve)
            secrets_ = self._secrets(endpoint, now)
        except Exception as err:  # refused by the guard now, or a secret that will not unseal
            return None, str(err)[:1024], 0
        body = json.dumps(
            {
                "type": f"{core.EVENT_PREFIX}{outbox.event}",
                "timestamp": outbox.created_at.isoformat(),
                "data": outbox.payload,
            },
            separators=(",", ":"),
        ).encode()
        msg_id = f"msg_{outbox.id}"
        stamp = self.wall()
        signature = " ".join(Webhook(s).sign(msg_id, stamp, body) for s in secrets_)
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": signature,
            "user-agent": "locker-cloud-webhooks/1",
        }
        request = self.client.build_request("POST", endpoint.url, content=body, headers=headers)
        if checked.address is not None:
            # DNS pinning: connect to the address the guard checked, not to whatever the name
            # resolves to a moment later; the Host header (set from the URL above) and, for
            # https, the TLS server name and certificate check stay the endpoint's host name.
            request.url = request.url.copy_with(host=checked.address)
            request.extensions["sni_hostname"] = checked.target.host
        started = time.perf_counter()
        try:
            answer = self.client.send(request)
        except httpx.TimeoutException:
            return None, f"no answer in {self.timeout_s:g} s", _ms(started)
        except httpx.HTTPError as err:
            return None, f"{type(err).__name__}: {err}"[:1024], _ms(started)
        error = None if core.success(answer.status_code) else f"HTTP {answer.status_code}"
        return answer.status_code, error, _ms(started)

    def _secrets(self, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
        context = secret_context(endpoint.id)
        found = [unseal(self.seal_key, endpoint.secret_sealed, context=context)]
        if (
            endpoint.previous_secret_sealed
            and endpoint.previous_until is not None
            and now < endpoint.previous_until
        ):
            try:
                found.append(
                    unseal(self.seal_key, endpoint.previous_secret_sealed, context=context)
                )
            except SealError:
                log.warning("webhook endpoint %s: its previous secret does not unseal", endpoint.id)
        return found

    def _record(
        self,
        answers: list[tuple[WebhookDelivery, WebhookEndpoint, tuple[int | None, str | None, int]]],
        now: datetime,
    ) -> list[str]:
        """Write each send's attempt row and outcome, in one transaction; return the outcomes."""
        outcomes = []
        with Session(self.engine) as session:
            write_session(session)
            for delivery, endpoint, (status_code, error, latency_ms) in answers:
                row = session.get(WebhookDelivery, delivery.id)
                ep = session.get(WebhookEndpoint, endpoint.id)
                if row is None or ep is None:  # deleted meanwhile
                    continue
                outcomes.append(
                    self._record_one(session, row, ep, status_code, error, latency_ms, now)
                )
            session.commit()
        for outcome in outcomes:
            # A retry due later is a failure now, whether or not it disabled the endpoint.
            counted = outcome if outcome in ("delivered", "dead") else "failed"
            metrics.WEBHOOK_DELIVERIES.labels(outcome=counted).inc()
        return outcomes

    def _record_one(
        self,
        session: Session,
        row: WebhookDelivery,
        ep: WebhookEndpoint,
        status_code: int | None,
        error: str | None,
        latency_ms: int,
        now: datetime,
    ) -> str:
        session.add(
            WebhookAttempt(
                delivery_id=row.id,
                endpoint_id=ep.id,
                status_code=status_code,
                latency_ms=latency_ms,
                error=error,
                at=now,
            )
        )
        row.attempts += 1
        row.first_attempt_at = row.first_attempt_at or now
        outcome: str
        if error is None:
            row.status, row.delivered_at, row.last_error = db.DELIVERED, now, None
            ep.failing_since, ep.failures = None, 0
            outcome = "delivered"
        else:
            row.last_error = error
            ep.failing_since = ep.failing_since or now
            ep.failures += 1
            if core.gives_up(row.first_attempt_at, now):
                row.status = db.DEAD
                outcome = "dead"
                log.warning(
                    "webhook delivery %s to %s dead after %d attempts: %s",
                    row.id,
                    ep.id,
                    row.attempts,
                    error,
                )
            else:
                row.next_attempt_at = now + core.retry_delay(row.attempts, self.jitter())
                outcome = "retried"
            if ep.status == db.ACTIVE and core.should_disable(ep.failing_since, ep.failures, now):
                self._disable(session, ep, now)
                outcome = "disabled" if outcome == "retried" else outcome
        session.add(row)
        session.add(ep)
        session.flush()
        return outcome

    def _disable(self, session: Session, ep: WebhookEndpoint, now: datetime) -> None:
        assert ep.failing_since is not None
        reason = (
            f"every attempt failed since {ep.failing_since.isoformat()} "
            f"({ep.failures} in a row): disabled; enable it again with POST "
            f"/api/v1/webhooks/{ep.id}/enable and replay what it missed"
        )
        ep.status, ep.disabled_reason = db.DISABLED, reason
        record(
            session=session,
            entry=AuditEntry(
                # The cloud itself (no principal asked): the key's endpoint is the resource.
                principal_kind=PrincipalKind.ANYONE,
                principal_id="webhook-dispatcher",
                action=DISABLE_ACTION,
                resource_kind=ResourceKind.API_KEY,
                resource_id=ep.key_id,
                reason=reason,
                outcome="disabled",
                detail={"endpoint_id": ep.id, "url": ep.url, "failures": ep.failures},
            ),
            now=now,
        )
        log.warning("webhook endpoint %s of key %s %s", ep.id, ep.key_id, reason)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
