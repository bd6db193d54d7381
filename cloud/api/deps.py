"""The routes' dependencies as `Annotated` aliases: settings, a session, the clock, the API key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.services import queries
from cloud.settings import CloudSettings

Clock = Callable[[], datetime]


def get_settings(request: Request) -> CloudSettings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_session(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Session]:
    # expire_on_commit=False: a route reads rows the service has just committed.
    with Session(engine, expire_on_commit=False) as session:
        yield session


def get_now(request: Request) -> datetime:
    clock: Clock = request.app.state.clock
    return clock()


SettingsDep = Annotated[CloudSettings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
NowDep = Annotated[datetime, Depends(get_now)]

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An ERP API key (`erp_api_keys`)."
)


def get_api_key(
    session: SessionDep, key: Annotated[str | None, Security(_api_key_header)]
) -> queries.ErpKey:
    if not key:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing X-API-Key header")
    row = queries.find_api_key(session=session, key=key)
    session.rollback()  # end the read: a service may open a write transaction next
    if row is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown or revoked X-API-Key")
    return row


ApiKeyDep = Annotated[queries.ErpKey, Depends(get_api_key)]
