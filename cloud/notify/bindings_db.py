"""The dispatcher's production directories, read from the database: WeChat bindings, couriers."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session

from cloud.db.wechat import openid_for_phone
from cloud.services import registry


class DbBindings:
    """Tell which WeChat user a phone is bound to, from the database (`openid_for_phone`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def openid_for(self, phone: str) -> str | None:
        with Session(self.engine) as session:
            return openid_for_phone(session=session, phone=phone)


class DbCourierPhones:
    """Tell a courier's phone from the registry (`couriers.phone`), for courier notices."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self, courier_id: str) -> str | None:
        with Session(self.engine) as session:
            return registry.courier_phone(session=session, courier_id=courier_id)
