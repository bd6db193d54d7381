"""The routes' dependencies as `Annotated` aliases: settings, a session, the clock, the API key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.settings import CloudSettings

Clock = Callable[[], datetime]


# The pure dependencies are `async def`: FastAPI runs a sync one in a worker thread, and that hop
# cost more CPU than the dependency itself (`locker bench queries`).
async def get_settings(request: Request) -> CloudSettings:
    return request.app.state.settings


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_session(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Session]:
    # expire_on_commit=False: a route reads rows the service has just committed.
    with Session(engine, expire_on_commit=False) as session:
        yield session


async def get_read_session(request: Request) -> AsyncIterator[Session]:
    """A session for a route that only reads: its statements run in autocommit, so a read is one
    round trip to PostgreSQL, with no BEGIN before it and no ROLLBACK after. The statements of
    one request then do not share a snapshot: only for reads that need none. Opening and closing
    it does no I/O (the connection is taken at the first statement, in the route's thread), so
    it is `async def`, sparing two thread hops."""
    with Session(request.app.state.read_engine, expire_on_commit=False) as session:
        yield session


async def get_now(request: Request) -> datetime:
    clock: Clock = request.app.state.clock
    return clock()


SettingsDep = Annotated[CloudSettings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
NowDep = Annotated[datetime, Depends(get_now)]

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An ERP API key (`erp_api_keys`)."
)


async def get_api_key(key: Annotated[str | None, Security(_api_key_header)]) -> str:
    """The request's X-API-Key as given; 401 if there is none (checked by the caller)."""
    if not key:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing X-API-Key header")
    return key


ApiKeyDep = Annotated[str, Depends(get_api_key)]
