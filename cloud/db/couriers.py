"""Couriers: finding one by its id compared case-insensitively (protocol.courier_ids)."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, col, select

from cloud.db.models import Courier
from protocol.courier_ids import courier_key


def courier_with_key(*, session: Session, courier_id: str) -> Courier | None:
    """The courier whose id equals `courier_id` but for case, or None."""
    query = select(Courier).where(func.upper(col(Courier.id)) == courier_key(courier_id))
    return session.exec(query).first()
