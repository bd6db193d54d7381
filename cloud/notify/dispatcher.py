"""The notice outbox dispatcher: claims due notices, sends each once by WeChat or SMS, retries.

One `tick(now)` expires stale leases, claims a batch of due rows and delivers them. How no notice
goes out twice, even across crashes and several dispatchers (see `cloud.db.notices`):

1. Claim: in one committed transaction, the next due `queued` row is locked (`FOR UPDATE SKIP
   LOCKED` on PostgreSQL, so dispatchers share the queue without waiting; SQLite serialises
   writers with BEGIN IMMEDIATE) and moved to `sending` with a fresh attempt token and a lease.
   The text is rendered here (the code unsealed in memory only), its scrubbed form kept as `body`.
2. Send, outside any transaction.
3. Record: the row moves to `sent`, `queued` (retry with backoff) or `failed` — only if it still
   carries this attempt's token.

A crash between 1 and 3 leaves the row `sending`. Neither Twilio's Messages API nor WeChat's
template API takes an idempotency key, so nobody can ask whether that message went out; resending
would risk a second message, so when the lease runs out the row becomes `unknown` for a human (or
for Twilio's status callback, whose URL names the attempt, to settle as sent). At most once,
by design: a lost notice is remedied by the recipient asking again at the cabinet, a duplicate
pickup code in someone's phone is not remedied at all. A send whose answer was lost (timeout
after the request left) is treated the same way.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from cloud import metrics
from cloud.core.alarms import kind_name as alarm_kind_name
from cloud.core.alarms import where_text
from cloud.core.codes import RandBelow, pickup_link
from cloud.core.expiry import overdue_fee
from cloud.core.notices import (
    Audience,
    Channel,
    Notice,
    NoticeContext,
    NoticeKind,
    channel_plan,
    compose,
    next_channel,
    recipient_language,
    retry_delay_s,
)
from cloud.core.phones import mask_phone
from cloud.core.policies import Language
from cloud.db import notices
from cloud.db.cabinets import site_policy
from cloud.db.engine import write_session
from cloud.db.models import Alarm, Cabinet, NoticeOutbox, Parcel, Site
from cloud.db.notices import (
    FAILED,
    QUEUED,
    SENDING,
    SKIPPED,
    UNKNOWN,
    attempt_marker,
    settle_as_sent,
)
from cloud.db.parcels import parcel_to_core
from cloud.db.sealing import SealError, unseal
from cloud.notify.errors import AmbiguousSendError, PermanentSendError, RetryableSendError
from cloud.notify.ports import OutgoingMessage, Sender, SendReceipt, WechatBindings
from cloud.services import alarms

log = logging.getLogger(__name__)

BATCH_SIZE = 50
# Longer than any send can take (two provider calls with their timeouts): a row still `sending`
# after this belongs to a dispatcher that died.
LEASE_S = 300
# SMS attempts: with the default backoff, up to about 36 minutes of trying (half on average).
MAX_ATTEMPTS = 10


@dataclass
class TickResult:
    """What one `tick` did."""

    sent: int = 0
    retried: int = 0  # back to queued, for a later attempt
    failed: int = 0
    unknown: int = 0  # maybe sent: left for a human
    more: bool = False  # the batch was full: more may be due now


@dataclass
class _Claim:
    id: int
    token: str
    attempt: int
    notice: Notice = field(repr=False)
    phone: str = field(repr=False)
    openid: str | None = field(repr=False)
    plan: tuple[Channel, ...]
    link: str | None

    @property
    def ref(self) -> str:
        return f"{self.id}.{self.token}"


class _Unsendable(Exception):
    """The row cannot become a message (no phone, bad seal, missing code): fail it."""


class Dispatcher:
    """Send due notices from the outbox; call `tick(now)` from the worker's loop."""

    def __init__(
        self,
        *,
        engine: Engine,
        sms: Sender,
        seal_key: bytes,
        base_url: str,
        wechat: Sender | None = None,
        bindings: WechatBindings | None = None,
        courier_phones: Callable[[str], str | None] | Mapping[str, str] | None = None,
        randbelow: RandBelow = secrets.randbelow,
        batch_size: int = BATCH_SIZE,
        lease_s: int = LEASE_S,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.engine = engine
        self.senders: dict[Channel, Sender] = {Channel.SMS: sms}
        if wechat is not None:
            self.senders[Channel.WECHAT] = wechat
        self.bindings = bindings
        self.seal_key = seal_key
        self.base_url = base_url.rstrip("/")
        if isinstance(courier_phones, Mapping):
            courier_phones = courier_phones.get
        self.courier_phones = courier_phones or (lambda _courier_id: None)
        self.randbelow = randbelow
        self.batch_size = batch_size
        self.lease_s = lease_s
        self.max_attempts = max_attempts

    def tick(self, now: datetime) -> TickResult:
        """Expire stale leases, then claim and deliver up to `batch_size` notices due at `now`."""
        result = TickResult()
        result.unknown += self._expire_leases(now)
        for _ in range(self.batch_size):
            claim, unsendable = self._claim(now)
            if unsendable:
                result.failed += 1
                continue
            if claim is None:
                return result
            outcome = self._deliver(claim, now)
            setattr(result, outcome, getattr(result, outcome) + 1)
        result.more = True
        return result

    # --- 1. claim ------------------------------------------------------------------------------

    def _claim(self, now: datetime) -> tuple[_Claim | None, bool]:
        """Claim the next due row (and commit); return it, or whether a row was unsendable.

        One row per claim, right before its send: a crash then leaves at most the one row whose
        send had begun in `sending`, never a batch of rows nobody tried.
        """
        with Session(self.engine, expire_on_commit=False) as session:
            write_session(session)
            row = notices.claim_next_due(session=session, now=now)
            if row is None:
                return None, False
            token = secrets.token_hex(8)
            claim: _Claim | None = None
            if _alarm_resolved(session, row):
                # Held for the quiet hours and resolved meanwhile: nobody needs waking for it.
                row.status, row.last_error = SKIPPED, "the alarm was resolved before it was sent"
                log.info("notice %s (alarm %s) dropped: resolved already", row.id, row.alarm_id)
                session.add(row)
                session.commit()
                return None, True
            try:
                claim = self._prepare(session, row, token, now)
            except _Unsendable as err:
                row.status, row.last_error, row.code_sealed = FAILED, str(err)[:1024], None
                log.error("notice %s (%s) cannot be sent: %s", row.id, row.kind, err)
                alarms.notice_failed(session=session, row=row, now=now)
            else:
                row.status = SENDING
                row.attempts += 1
                row.provider_id = attempt_marker(token)
                row.next_attempt_at = now + timedelta(seconds=self.lease_s)
                row.body = claim.notice.scrubbed().text_for(claim.plan[0])
                row.channel = claim.plan[0].value
            session.add(row)
            session.commit()
            return claim, claim is None

    def _prepare(self, session: Session, row: NoticeOutbox, token: str, now: datetime) -> _Claim:
        assert row.id is not None
        if row.alarm_id is not None:
            return self._prepare_alarm(session, row, token)
        parcel = session.get(Parcel, row.parcel_row_id)
        cabinet = session.get(Cabinet, parcel.cabinet_id) if parcel else None
        site = session.get(Site, cabinet.site_id) if cabinet else None
        if parcel is None or cabinet is None or site is None:
            raise _Unsendable("its parcel, cabinet or site is gone")
        policy = site_policy(site)
        kind = NoticeKind(row.kind)
        if row.audience == Audience.COURIER.value:
            phone = self.courier_phones(row.courier_id or "")
        else:
            phone = row.to_phone
        if not phone:
            raise _Unsendable(f"no phone for this {row.audience}")
        if kind is NoticeKind.SCAN_OTP and now >= row.deadline:
            # The code died in the queue (an outage): a text of a dead code only confuses.
            raise _Unsendable("the one-time code expired before it could be sent")
        if kind is NoticeKind.WECHAT_REBOUND and (
            not row.to_openid or Channel.WECHAT not in self.senders
        ):
            raise _Unsendable("no WeChat user or no WeChat sender for a rebinding notice")
        code = None
        if row.code_sealed:
            try:
                code = unseal(self.seal_key, row.code_sealed, context=row.dedupe_key)
            except SealError as err:
                raise _Unsendable(f"sealed code: {err}") from None
        link = None
        if code:
            link = pickup_link(
                self.base_url,
                cabinet.id,
                code,
                compartment=parcel.compartment,
                deadline=row.deadline,
            )
        fee_minor = None
        if kind is NoticeKind.EXPIRED:
            fee_minor = overdue_fee(parcel_to_core(parcel), policy, now).amount_minor or None
        # The recipient's language, and the cabinet named in it (a Chinese name in an English
        # text is a name the recipient cannot read).
        language = Language(row.language) if row.language else recipient_language(phone, policy)
        english = language is Language.EN
        context = NoticeContext(
            cabinet=(cabinet.name_en or cabinet.name) if english else cabinet.name,
            address=(cabinet.address_en or cabinet.address) if english else cabinet.address,
            tracking_no=parcel.tracking_no,
            deadline=row.deadline,
            link=link or f"{self.base_url}/pickup/{cabinet.id}",
            compartment=parcel.compartment or "",
            code=code,
            fee_minor=fee_minor,
            currency=policy.currency,
        )
        try:
            notice = compose(
                kind=kind,
                phone=phone,
                language=language,
                context=context,
                policy=policy,
                key=row.dedupe_key,
            )
        except ValueError as err:
            raise _Unsendable(str(err)) from None
        openid = None
        if Channel.WECHAT in self.senders and self.bindings and row.channel != Channel.SMS:
            openid = self.bindings.openid_for(phone)
        plan = channel_plan(openid)
        if kind is NoticeKind.SCAN_OTP:
            # The code proves the phone: it goes to the phone, never to a WeChat user bound to it.
            openid, plan = None, (Channel.SMS,)
        elif kind is NoticeKind.WECHAT_REBOUND:
            # To the user being replaced, by the channel being taken away: not to the phone
            # (its holder is the one binding) nor to whoever the phone is bound to by now.
            openid, plan = row.to_openid, (Channel.WECHAT,)
        return _Claim(
            id=row.id,
            token=token,
            attempt=row.attempts + 1,
            notice=notice,
            phone=phone,
            openid=openid,
            plan=plan,
            link=context.link,
        )

    def _prepare_alarm(self, session: Session, row: NoticeOutbox, token: str) -> _Claim:
        """A manager's notice of a new alarm: by WeChat if their phone is bound, else SMS."""
        assert row.id is not None and row.alarm_id is not None
        alarm = session.get(Alarm, row.alarm_id)
        cabinet = session.get(Cabinet, alarm.cabinet_id) if alarm else None
        site = session.get(Site, cabinet.site_id) if cabinet else None
        if alarm is None or cabinet is None or site is None or not row.to_phone:
            raise _Unsendable("its alarm, cabinet, site or phone is gone")
        policy = site_policy(site)
        link = f"{self.base_url}/console/alarms"
        context = NoticeContext(
            cabinet=cabinet.name,
            address=cabinet.address,
            tracking_no="",
            deadline=alarm.at,
            link=link,
            compartment=alarm.compartment or "",
            what=alarm_kind_name(alarm.kind, policy.language),
            where=where_text(alarm.compartment, policy.language),
        )
        notice = compose(
            kind=NoticeKind.ALARM,
            phone=row.to_phone,
            language=policy.language,
            context=context,
            policy=policy,
            key=row.dedupe_key,
        )
        openid = None
        if Channel.WECHAT in self.senders and self.bindings and row.channel != Channel.SMS:
            openid = self.bindings.openid_for(row.to_phone)
        return _Claim(
            id=row.id,
            token=token,
            attempt=row.attempts + 1,
            notice=notice,
            phone=row.to_phone,
            openid=openid,
            plan=channel_plan(openid),
            link=link,
        )

    # --- 2. send -------------------------------------------------------------------------------

    def _deliver(self, claim: _Claim, now: datetime) -> str:
        errors: list[str] = []
        channel: Channel | None = claim.plan[0]
        while channel is not None:
            to = claim.openid if channel is Channel.WECHAT else claim.phone
            assert to is not None
            # An SMS carries no link (phishing texts put one beside a code); WeChat shows it.
            link = claim.link if channel is Channel.WECHAT else None
            text = claim.notice.text_for(channel)
            message = OutgoingMessage(to=to, text=text, ref=claim.ref, link=link)
            try:
                receipt = self.senders[channel].send(message)
            except AmbiguousSendError as err:
                # Maybe sent: another channel or another try could make it twice.
                errors.append(f"{channel}: {err}")
                return self._record(claim, UNKNOWN, channel, errors, now)
            except (PermanentSendError, RetryableSendError) as err:
                errors.append(f"{channel}: {err}")
                log.warning("%s failed: %s", claim.notice.log_form(channel), err)
                fallback = next_channel(claim.plan, channel)
                if fallback is not None:
                    channel = fallback  # SMS when WeChat fails, at once: the recipient waits
                    continue
                if isinstance(err, PermanentSendError) or claim.attempt >= self.max_attempts:
                    return self._record(claim, FAILED, channel, errors, now)
                return self._record(claim, QUEUED, channel, errors, now)
            except Exception as err:
                # A sender's bug: we cannot tell whether it sent, so treat it as a lost answer.
                # Only the type is logged: a message could quote the phone or the text.
                errors.append(f"{channel}: unexpected {type(err).__name__}")
                log.error(
                    "%s: sender raised %s", claim.notice.log_form(channel), type(err).__name__
                )
                return self._record(claim, UNKNOWN, channel, errors, now)
            return self._record(claim, "sent", channel, errors, now, receipt=receipt)
        raise AssertionError("a channel plan is never empty")

    # --- 3. record -----------------------------------------------------------------------------

    def _record(
        self,
        claim: _Claim,
        outcome: str,
        channel: Channel,
        errors: list[str],
        now: datetime,
        *,
        receipt: SendReceipt | None = None,
    ) -> str:
        with Session(self.engine) as session:
            write_session(session)
            row = notices.lock_notice(session=session, notice_id=claim.id)
            assert row is not None  # claimed rows are never deleted
            if row.provider_id != attempt_marker(claim.token):
                # Settled meanwhile (a provider callback, a human): theirs is the later word.
                log.warning("%s: row settled elsewhere as %s", claim.notice.log_form(), row.status)
                return "sent" if row.status == "sent" else "unknown"
            row.last_error = "; ".join(errors)[:1024] or None
            row.channel = channel.value
            if receipt is not None:
                settle_as_sent(row, provider_id=receipt.provider_id, channel=channel, now=now)
                row.delivery_status = receipt.status
                log.info("%s sent as %s", claim.notice.log_form(channel), receipt.provider_id)
                result = "sent"
            elif outcome == QUEUED:
                delay_s = retry_delay_s(claim.attempt, self.randbelow)
                row.status = QUEUED
                row.provider_id = None
                row.next_attempt_at = now + timedelta(seconds=delay_s)
                log.info(
                    "%s retry %d in %d s", claim.notice.log_form(channel), claim.attempt, delay_s
                )
                result = "retried"
            elif outcome == FAILED:
                row.status = FAILED
                row.provider_id = None
                row.code_sealed = None  # never to be sent: the remedy is a new code at the cabinet
                log.error("%s failed for good", claim.notice.log_form(channel))
                alarms.notice_failed(session=session, row=row, now=now)
                result = "failed"
            else:
                row.status = UNKNOWN  # the attempt marker stays: a callback may settle it
                log.error("%s may have been sent: left for a human", claim.notice.log_form(channel))
                alarms.notice_failed(session=session, row=row, now=now)
                result = "unknown"
            session.add(row)
            session.commit()
            metrics.NOTICES.labels(channel=channel.value, outcome=result).inc()
            return result

    # --- crashed dispatchers -------------------------------------------------------------------

    def _expire_leases(self, now: datetime) -> int:
        with Session(self.engine) as session:
            write_session(session)
            rows = notices.lost_sends(session=session, now=now, limit=self.batch_size)
            for row in rows:
                row.status = UNKNOWN
                row.last_error = "dispatcher lost during the send: may have been sent"
                log.error(
                    "notice %s (%s) to %s may have been sent (lease ran out): left for a human",
                    row.id,
                    row.kind,
                    _masked(row),
                )
                session.add(row)
                alarms.notice_failed(session=session, row=row, now=now)
            session.commit()
            return len(rows)


def _alarm_resolved(session: Session, row: NoticeOutbox) -> bool:
    if row.alarm_id is None:
        return False
    alarm = session.get(Alarm, row.alarm_id)
    return alarm is not None and alarm.cleared_at is not None


def _masked(row: NoticeOutbox) -> str:
    return mask_phone(row.to_phone) if row.to_phone else f"courier {row.courier_id}"
