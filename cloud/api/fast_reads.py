"""The tracking read's fast path: `GET /api/v1/tracking/{tracking_no}` without FastAPI's
routing and dependency solving, for the one answer that is most of the API's traffic.

At 500 reads a second, matching the route among ~80, solving its five dependencies and closing
the session they open cost about as much CPU as the read itself (`locker bench queries`). This
ASGI middleware answers only the plain case: a GET whose X-API-Key's principal is still in the
key cache (cloud/api/key_cache.py, filled only by `get_erp_principal`, the one place a key becomes
a principal) and whose parcel the key may see. The principal's scope is the same WHERE clause
(`parcel_scope`) and the body the same model (`tracking_public`), so the answer is the route's
byte for byte. Anything else (no key, a key not in the cache, a tracking number out of bounds, a
parcel not found, another method) goes on to the app, which answers it as before: the route
stays in the OpenAPI document and is the only one that refuses.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from starlette.concurrency import run_in_threadpool

from cloud.api.access import cached_erp_principal, iter_routes, read_erp_principal
from cloud.api.routes.parcels import tracking_public
from cloud.core.access import Principal, parcel_scope
from cloud.services import queries
from protocol.http_edge import header

Scope = dict[str, Any]

MAX_TRACKING_NO = 64  # the route's Path(max_length=64)


class TrackingFastPath:
    """ASGI middleware: answer a cached key's tracking read of a parcel it may see."""

    def __init__(self, app: Any, *, api: FastAPI, prefix: str) -> None:
        self.app, self.api = app, api
        self.prefix = prefix + "/tracking/"
        self.route: Any = None  # the route the answer is timed under (metrics.HttpTimer)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        answer = await self._answer(scope) if scope["type"] == "http" else None
        if answer is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self._tracking_route()
        headers = [
            (b"content-length", str(len(answer)).encode()),
            (b"content-type", b"application/json"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    async def _answer(self, scope: Scope) -> bytes | None:
        path: str = scope["path"]
        if scope["method"] != "GET" or not path.startswith(self.prefix):
            return None
        tracking_no = path[len(self.prefix) :]
        if not 0 < len(tracking_no) <= MAX_TRACKING_NO or "/" in tracking_no:
            return None
        key = header(scope, b"x-api-key")
        if not key:
            return None
        principal, refresh = cached_erp_principal(self.api.state.principals, key)
        if principal is None:
            return None
        return await run_in_threadpool(self._read, tracking_no, principal, key if refresh else None)

    def _read(
        self, tracking_no: str, principal: Principal, refresh_key: str | None
    ) -> bytes | None:
        state = self.api.state
        if refresh_key is not None:
            # This request was picked to re-read the key (the cache's refresh-ahead); the others
            # meanwhile use the entry. A refusal goes to the route, which reads it and refuses.
            try:
                principal = read_erp_principal(state.principals, state.read_engine, refresh_key)
            except HTTPException:
                return None
        # A connection, not a session: nothing to track, so nothing to close but the connection.
        with state.read_engine.connect() as connection:
            found = queries.tracking(
                connection=connection,
                tracking_no=tracking_no,
                now=state.clock(),
                scope=parcel_scope(principal),
            )
        if found is None:
            return None
        model = tracking_public(found)
        return model.__pydantic_serializer__.to_json(model)

    def _tracking_route(self) -> Any:
        if self.route is None:
            template = self.prefix + "{tracking_no}"
            for method, path, route in iter_routes(self.api.routes):
                if (method, path) == ("GET", template):
                    self.route = route
        return self.route
