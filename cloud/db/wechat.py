"""WeChat bindings: which openid a phone is bound to."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from cloud.db.models import WechatBinding


def bind_wechat(*, session: Session, openid: str, phone: str, now: datetime) -> WechatBinding:
    """Bind `openid` to `phone` (E.164), replacing what it was bound to before."""
    row = session.get(WechatBinding, openid)
    if row is None:
        row = WechatBinding(openid=openid, phone=phone, created_at=now)
    row.phone, row.created_at = phone, now
    session.add(row)
    return row


def phone_for_openid(*, session: Session, openid: str) -> str | None:
    """Return the phone a WeChat user is bound to, if any."""
    row = session.get(WechatBinding, openid)
    return row.phone if row else None


def openid_for_phone(*, session: Session, phone: str) -> str | None:
    """Return the WeChat user a phone is bound to (the latest binding if several), if any."""
    statement = (
        select(WechatBinding.openid)
        .where(WechatBinding.phone == phone)
        .order_by(col(WechatBinding.created_at).desc())
        .limit(1)
    )
    return session.exec(statement).first()
