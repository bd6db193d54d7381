"""Codes again on WeChat: a bound recipient writes to the official account and gets new codes.

The cloud keeps no clear code, so "send me my codes" means a new code per live parcel
(`cloud.core.parcels.ReissueCode`): per cabinet, in one transaction holding the cabinet's row
lock (as ingestion does, so codes stay unique among the cabinet's live ones), each parcel's new
hash goes into a `codes.put` in the command outbox (retiring the old put if still unacked) and
its code, sealed, into a RESEND notice, which goes by WeChat since the phone is bound. The same
per-parcel limit as a resend asked for at the cabinet applies (`notices.resend_decision` with
the site's `resend_limit` per `resend_window_s`): one rule, whichever way the recipient asks.

Each pushed message is recorded by its MsgId first, in a commit of its own: WeChat's retry of a
push it got no answer to finds it and changes nothing. A crash between that record and the
reissue loses the request (the recipient writes again), never doubles it: at most once, as the
notices are.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from sqlmodel import Session

from cloud.core import parcels as core
from cloud.core.codes import RandBelow, issue_code
from cloud.core.errors import CoreError
from cloud.core.notices import resend_decision
from cloud.core.phones import mask_phone
from cloud.core.wechat_push import ResendSummary
from cloud.db.cabinets import cabinet_code_key, lock_cabinet, site_policy
from cloud.db.engine import write_session
from cloud.db.models import Site, WechatInbox
from cloud.db.notices import resend_history
from cloud.db.parcels import cabinets_holding, live_code_hashes, live_parcels
from cloud.db.rows import delete_older_than, insert_ignore
from cloud.db.wechat import phone_for_openid
from cloud.services.parcel_step import apply_parcel_event

log = logging.getLogger(__name__)

REISSUE_REASON = "asked for on WeChat"
INBOX_KEEP_S = 24 * 3600  # WeChat retries within seconds; a day also outlasts PUSH_MAX_AGE_S


def seen_before(*, session: Session, msg_id: str, openid: str, now: datetime) -> bool:
    """Record pushed message `msg_id`; commit; return True if it was recorded already."""
    write_session(session)
    try:
        added = insert_ignore(
            session=session,
            table=WechatInbox.__table__,
            rows=[{"msg_id": msg_id, "openid": openid, "received_at": now}],
            conflict_columns=["msg_id"],
            returning=["msg_id"],
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return not added


def resend_codes(
    *,
    session: Session,
    openid: str,
    now: datetime,
    seal_key: bytes,
    randbelow: RandBelow = secrets.randbelow,
) -> ResendSummary:
    """Reissue the live codes of the phone `openid` is bound to; commit per cabinet."""
    phone = phone_for_openid(session=session, openid=openid)
    if phone is None:
        session.rollback()
        log.info("WeChat: codes asked for by an unbound user")
        return ResendSummary(bound=False)
    cabinets = cabinets_holding(session=session, phone=phone)
    session.rollback()  # end the read: each cabinet takes its own write transaction
    resent = limited = offline = 0
    limited_until: list[datetime] = []
    for cab in cabinets:
        write_session(session)
        try:
            cabinet = lock_cabinet(session=session, cab=cab)
            site = session.get(Site, cabinet.site_id) if cabinet else None
            if cabinet is None or site is None:  # pragma: no cover - foreign keys forbid it
                session.rollback()
                continue
            policy = site_policy(site)
            live_hashes = live_code_hashes(session=session, cab=cab)
            for row in live_parcels(session=session, cab=cab, phone=phone):
                history = resend_history(session=session, parcel_row_id=row.id)
                decision = resend_decision(history, now, policy)
                if not decision.allowed:
                    limited += 1
                    if decision.retry_at is not None:  # shown in the site's local time
                        limited_until.append(decision.retry_at.astimezone(policy.zone))
                    continue
                code = issue_code(
                    length=policy.code_length,
                    live_hashes=live_hashes,
                    randbelow=randbelow,
                    code_key=cabinet_code_key(cabinet, seal_key=seal_key),
                )
                try:
                    with session.begin_nested():
                        apply_parcel_event(
                            session=session,
                            row=row,
                            event=core.ReissueCode(code=code, reason=REISSUE_REASON),
                            policy=policy,
                            seal_key=seal_key,
                            now=now,
                        )
                except CoreError as err:  # the cabinet is offline: the new hash could not reach it
                    log.info("WeChat resend of %s refused: %s", row.parcel_id, err)
                    offline += 1
                    continue
                live_hashes.add(code.code_hash)
                resent += 1
            session.commit()
        except BaseException:
            session.rollback()
            raise
    log.info(
        "WeChat: codes asked for by %s: %d resent, %d limited, %d offline",
        mask_phone(phone),
        resent,
        limited,
        offline,
    )
    return ResendSummary(
        bound=True,
        resent=resent,
        limited=limited,
        limited_until=min(limited_until, default=None),
        offline=offline,
    )


def forget_old_pushes(*, session: Session, now: datetime) -> int:
    """Delete pushed-message records older than INBOX_KEEP_S; commit; return how many."""
    return delete_older_than(
        session=session,
        column=WechatInbox.__table__.c.received_at,
        before=now - timedelta(seconds=INBOX_KEEP_S),
    )
