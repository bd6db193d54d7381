"""WeChat bindings read from the `wechat_bindings` table: the dispatcher's production directory."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session

from cloud.db import repo


class DbBindings:
    """Tell which WeChat user a phone is bound to, from the database (`repo.openid_for_phone`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def openid_for(self, phone: str) -> str | None:
        with Session(self.engine) as session:
            return repo.openid_for_phone(session=session, phone=phone)
