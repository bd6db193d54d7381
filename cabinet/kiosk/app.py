"""The kiosk's HTTP adapter: the touchscreen page, its JSON API and its event stream.

    GET  /                         the page (static/index.html; plain JS, no reloads in a flow)
    POST /api/input                {"type": "<screen input>", ...its fields}
                                   200 {"screens": [{"type": "<screen>", ...its fields}]}
                                   422 {"error": ...}  the body is not a screen input (nothing done)
                                   409 {"error": ..., "state": ..., "action": ...}  not allowed
                                       now (a Confirm before the door shut...): re-read the status
                                   503 {"error": ...}  the cabinet is shutting down
    POST /api/keypad-active        the first digit of a code was typed (holds RS485 polls)
    GET  /api/status               cabinet id, cloud online, free doors by size, the courier;
                                   `seq` {boot, n}: n grows with every status of this boot
    GET  /api/events               server-sent events: `screen` (unasked screens: a door shut, an
                                   idle sign-out, a serial scan), `status` (when it changes)
    GET  /api/i18n                 the text of every screen in zh-CN and en, and the default
    GET  /api/scan-qr              the idle screen's scan-to-open QR (SVG), 503 while unavailable
    POST /api/maintenance/sign-in  {"pin": ...} -> {"token": ...}; 403 wrong (attempts_left),
                                   429 locked (seconds_left), 404 not set up
    GET  /api/maintenance/status   board and bus counters, every door's health   } header
    POST /api/maintenance/open     {"compartment": ...}: open an empty door      } X-Maintenance-
    POST /api/maintenance/sign-out                                               } Token

Only the kiosk's own page may call (guard.py: Host, Origin, and application/json for every POST);
a body over MAX_BODY_BYTES is a 413 before it is read, and JSON is parsed by the MQTT decoder's
strict rule (protocol.codec.strict_loads: no duplicate keys, at most 32 deep).

Every handler runs on the daemon's loop and hands inputs to `CabinetService.submit`, so the
service's one owner task stays the only writer of the cabinet.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cabinet.core.allocation import free_by_size
from cabinet.core.compartments import CompartmentState, Door, RemovalKind
from cabinet.core.effects import Show
from cabinet.core.errors import CoreError, IllegalTransition
from cabinet.core.inputs import CompartmentOpen, Input, QrScanned
from cabinet.core.lockout import locked_for_s
from cabinet.core.phones import mask_phone
from cabinet.core.reservations import unheld
from cabinet.core.screens import ReservationFound
from cabinet.core.state import CourierSession, Step
from cabinet.kiosk.feed import Feed
from cabinet.kiosk.guard import SameOrigin
from cabinet.kiosk.maintenance import Maintenance, MaintenanceRefused
from cabinet.kiosk.scan_qr import ScanQr
from cabinet.kiosk.wire import BadBody, parse_input, screen_json
from cabinet.service import CabinetService, ServiceStopped
from protocol.codec import strict_loads
from protocol.http_edge import BodyGuard

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
I18N = HERE / "i18n"
LANGUAGES = ("zh-CN", "en")
MAX_BODY_BYTES = 8 * 1024  # the largest input, a scanned QR, is under 3 KB (a QR holds 2953 bytes)
STATUS_EVERY_S = 1.0  # how often a change of status is looked for while a page listens
NO_STORE = {"Cache-Control": "no-store"}


def _reserved_screen(session: CourierSession) -> dict[str, Any] | None:
    """The announced parcel the courier is looking at (its ReservationFound screen), so a page
    that reloads at that step shows the masked phone and size again."""
    draft = session.draft
    if session.step is not Step.RESERVED or draft.phone is None or draft.size is None:
        return None
    found = ReservationFound(draft.tracking_no or "", mask_phone(draft.phone), draft.size)
    return screen_json(found)


def load_texts() -> dict[str, Any]:
    """Every language file, by language tag."""
    return {lang: json.loads((I18N / f"{lang}.json").read_text("utf-8")) for lang in LANGUAGES}


class Kiosk:
    """What the screen talks to: the service, the event feed, the scan QR, maintenance."""

    def __init__(
        self,
        service: CabinetService,
        *,
        language: str = "zh-CN",
        names: dict[str, str] | None = None,
        idle_s: int = 60,
        scan: ScanQr | None = None,
        maintenance: Maintenance | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if language not in LANGUAGES:
            raise ValueError(f"kiosk language {language!r}: one of {', '.join(LANGUAGES)}")
        self.service = service
        self.language = language
        # The cabinet's name by language, for the header ("" or missing: the cabinet id).
        self.names = {lang: name for lang, name in (names or {}).items() if name}
        self.idle_s = idle_s
        self.scan = scan
        self.maintenance = maintenance or Maintenance(None)
        self.feed = Feed()
        self.texts = load_texts()
        self._clock = clock
        self._tasks: list[asyncio.Task[None]] = []
        self._last_status: dict[str, Any] | None = None
        # Every status is numbered as it is computed: the page gets statuses by two roads (its
        # own GET /api/status, the event stream) that can overtake each other, and keeps only
        # the newest. The boot id tells a restarted daemon's count (from 1 again) from a stale one.
        self._boot = secrets.token_hex(4)
        self._status_seq = itertools.count(1)
        service.add_screen_listener(self._unasked)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._watch_status(), name="kiosk-status"))
        if self.scan is not None:
            self._tasks.append(asyncio.create_task(self.scan.run(), name="kiosk-scan-qr"))

    async def stop(self) -> None:
        self.feed.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # --- what the screen does -----------------------------------------------------------------

    async def submit(self, inp: Input) -> list[dict[str, Any]]:
        """Run a screen input; its screens as JSON (CoreError / ServiceStopped pass through)."""
        shows = await self.service.submit(inp)
        self.status_changed()
        return [screen_json(show.screen) for show in shows]

    async def scanned(self, payload: str) -> None:
        """A serial scanner read a QR: run it and tell the page, which asked for nothing."""
        try:
            screens = await self.submit(QrScanned(payload))
        except CoreError as err:  # a courier is signed in: the screen is theirs
            log.info("kiosk: a scan was refused: %s", err)
            return
        for screen in screens:
            self.feed.publish("screen", screen)

    def _unasked(self, show: Show) -> None:
        self.feed.publish("screen", screen_json(show.screen))
        self.status_changed()

    def status(self) -> dict[str, Any]:
        cabinet = self.service.cabinet
        session = cabinet.session
        link = self.service.link
        courier = None
        if session is not None:
            courier = {
                "courier_id": session.courier_id,
                "step": session.step.value,
                "deposited": session.deposited,
                "compartment": session.draft.compartment,
                "door_cycled": session.draft.door_cycled,
                "door_open": self._door_open(session.draft.compartment),
                "tracking_no": session.draft.tracking_no,
                "reserved": _reserved_screen(session),
            }
        code = self.scan.current() if self.scan is not None else None
        return {
            "cabinet_id": cabinet.cabinet_id,
            "cabinet_name": self.names,
            "remote_open": self._remote_open(),
            "online": link is not None and link.online.is_set(),
            "free_by_size": {
                size.value: count
                # A door held for an announced parcel is not free for anyone else's.
                for size, count in free_by_size(unheld(cabinet, self._clock())).items()
            },
            "courier_signed_in": session is not None,
            "courier": courier,
            "retrievals_due": sum(1 for p in cabinet.parcels.values() if p.retrieve),
            "keypad_locked_s": locked_for_s(cabinet.keypad, cabinet.config.keypad, self._clock()),
            "code_digits": cabinet.config.code_digits,
            "scan": {"available": code is not None, "version": code.version if code else 0},
            "language": self.language,
            "idle_s": self.idle_s,
            "maintenance": self.maintenance.configured,
            "seq": {"boot": self._boot, "n": next(self._status_seq)},
        }

    def _door_open(self, compartment: str | None) -> bool:
        door = self.service.cabinet.compartments.get(compartment) if compartment else None
        return door is not None and door.door is Door.OPEN

    def _remote_open(self) -> list[str]:
        """Doors opened from afar (a phone's scan-to-open, the dashboard) that stand open now."""
        return sorted(
            c.id
            for c in self.service.cabinet.compartments.values()
            if c.door is Door.OPEN
            and c.removal is not None
            and c.removal.kind is RemovalKind.REMOTE
        )

    def status_changed(self) -> None:
        """Publish the status if it differs from the last one published."""
        if not self.feed.subscribers:
            return
        status = self.status()
        # The lockout counts down by itself (the page counts too): not a change worth sending.
        # Nor is the status's own number.
        compared = {k: v for k, v in status.items() if k not in ("keypad_locked_s", "seq")}
        if compared != self._last_status:
            self._last_status = compared
            self.feed.publish("status", status)

    def _outside_steps(self) -> tuple[object, ...]:
        """What changes without a screen: the broker link, the scan QR's life, and the doors (a
        door opened from afar, or the courier's door seen open, shows no screen of its own)."""
        link = self.service.link
        code = self.scan.current() if self.scan is not None else None
        session = self.service.cabinet.session
        at_door = self._door_open(session.draft.compartment) if session is not None else False
        return (
            link is not None and link.online.is_set(),
            code.version if code else None,
            tuple(self._remote_open()),
            at_door,
        )

    async def _watch_status(self) -> None:
        # Steps publish their own changes; only the link and the QR need looking at, cheaply.
        seen = self._outside_steps()
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            now = self._outside_steps()
            if now != seen:
                seen = now
                try:
                    self.status_changed()
                except ServiceStopped:
                    return

    # --- maintenance --------------------------------------------------------------------------

    def doors(self) -> list[dict[str, Any]]:
        """Every door's health, for the maintenance screen."""
        cabinet = self.service.cabinet
        out_of_service = set(self.service.driver.health().get("out_of_service", ()))
        return [
            {
                "compartment": c.id,
                "size": c.size.value,
                "state": c.state.value,
                "door": c.door.value,
                "holds_parcel": c.parcel_id is not None,
                "unlock_pending": c.unlocked_at is not None,
                "board_faulted": c.id in out_of_service,
            }
            for c in cabinet.compartments.values()
        ]

    async def test_open(self, compartment: str) -> None:
        """Unlock an empty door for the technician. A full one is opened from the operations
        console (remote open: a reason, two steps, an audit row), never from the cabinet, so no
        parcel leaves a door without a record of who let it out and why."""
        cabinet = self.service.cabinet
        door = cabinet.compartment(compartment)
        if door.parcel_id is not None:
            raise IllegalTransition(
                f"door {compartment} holds a parcel: use the operations console's remote open, "
                "with a reason",
                state=door.state.value,
                action="maintenance.open",
            )
        if cabinet.session is not None or door.state in (
            CompartmentState.RESERVED,
            CompartmentState.OPENING,
        ):
            raise IllegalTransition(
                f"door {compartment} is in use ({door.state.value})",
                state=door.state.value,
                action="maintenance.open",
            )
        await self.service.submit(CompartmentOpen(compartment, "maintenance test", "technician"))


# --- the routes -------------------------------------------------------------------------------


def _error(status: int, message: str, **detail: Any) -> JSONResponse:
    return JSONResponse({"error": message, **detail}, status_code=status, headers=NO_STORE)


async def _json_body(request: Request) -> Any:
    # BodyGuard has already refused a body over MAX_BODY_BYTES and a JSON one off the rule; the
    # same rule again here, so a handler never depends on the middleware being mounted.
    try:
        return strict_loads(await request.body())
    except ValueError as err:
        raise BadBody(f"the body is not JSON: {err}") from None


def _refused(err: CoreError) -> JSONResponse:
    if isinstance(err, IllegalTransition):
        return _error(409, str(err), state=err.state, action=err.action)
    return _error(422, str(err))


def build_app(kiosk: Kiosk) -> Starlette:
    """The Starlette app serving `kiosk`."""

    async def page(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=NO_STORE)

    async def post_input(request: Request) -> Response:
        try:
            inp = parse_input(await _json_body(request))
        except BadBody as err:
            return _error(422, str(err))
        try:
            screens = await kiosk.submit(inp)
        except CoreError as err:
            return _refused(err)
        except ServiceStopped as err:
            return _error(503, str(err))
        return JSONResponse({"screens": screens}, headers=NO_STORE)

    async def keypad_active(_request: Request) -> Response:
        kiosk.service.keypad_active()
        return JSONResponse({"ok": True}, headers=NO_STORE)

    async def status(_request: Request) -> Response:
        try:
            return JSONResponse(kiosk.status(), headers=NO_STORE)
        except ServiceStopped as err:
            return _error(503, str(err))

    async def events(_request: Request) -> Response:
        return StreamingResponse(
            kiosk.feed.stream(),
            media_type="text/event-stream",
            headers={**NO_STORE, "X-Accel-Buffering": "no"},
        )

    async def i18n(_request: Request) -> Response:
        return JSONResponse({"default": kiosk.language, "languages": kiosk.texts})

    async def scan_qr(_request: Request) -> Response:
        code = kiosk.scan.current() if kiosk.scan is not None else None
        if code is None:
            reason = "no cloud_api_url in the config" if kiosk.scan is None else "cloud unreachable"
            return _error(503, f"scan unavailable: {reason}")
        return Response(
            code.svg,
            media_type="image/svg+xml",
            headers={**NO_STORE, "X-Scan-URL": code.url, "X-Scan-Version": str(code.version)},
        )

    async def maintenance_sign_in(request: Request) -> Response:
        try:
            body = await _json_body(request)
        except BadBody as err:
            return _error(422, str(err))
        pin = body.get("pin") if isinstance(body, dict) else None
        if not isinstance(pin, str) or not pin:
            return _error(422, 'the body must be {"pin": "<the technician PIN>"}')
        try:
            token = await kiosk.maintenance.sign_in(pin)
        except MaintenanceRefused as err:
            return _error(err.status, str(err), **err.detail)
        return JSONResponse({"token": token}, headers=NO_STORE)

    def _technician(request: Request) -> bool:
        return kiosk.maintenance.check(request.headers.get("X-Maintenance-Token"))

    async def maintenance_status(request: Request) -> Response:
        if not _technician(request):
            return _error(401, "sign in with the technician PIN first")
        return JSONResponse(
            {
                "status": kiosk.status(),
                "driver": kiosk.service.driver.health(),
                "doors": kiosk.doors(),
            },
            headers=NO_STORE,
        )

    async def maintenance_open(request: Request) -> Response:
        if not _technician(request):
            return _error(401, "sign in with the technician PIN first")
        try:
            body = await _json_body(request)
        except BadBody as err:
            return _error(422, str(err))
        compartment = body.get("compartment") if isinstance(body, dict) else None
        if not isinstance(compartment, str):
            return _error(422, 'the body must be {"compartment": "<door id>"}')
        try:
            await kiosk.test_open(compartment)
        except CoreError as err:
            return _refused(err)
        return JSONResponse({"ok": True, "compartment": compartment}, headers=NO_STORE)

    async def maintenance_sign_out(request: Request) -> Response:
        if not _technician(request):  # else any caller could end the technician's session
            return _error(401, "sign in with the technician PIN first")
        kiosk.maintenance.sign_out()
        return JSONResponse({"ok": True}, headers=NO_STORE)

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/input", post_input, methods=["POST"]),
            Route("/api/keypad-active", keypad_active, methods=["POST"]),
            Route("/api/status", status),
            Route("/api/events", events),
            Route("/api/i18n", i18n),
            Route("/api/scan-qr", scan_qr),
            Route("/api/maintenance/sign-in", maintenance_sign_in, methods=["POST"]),
            Route("/api/maintenance/status", maintenance_status),
            Route("/api/maintenance/open", maintenance_open, methods=["POST"]),
            Route("/api/maintenance/sign-out", maintenance_sign_out, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[
            Middleware(SameOrigin),  # outermost: a foreign request is refused before its body
            Middleware(BodyGuard, max_bytes=MAX_BODY_BYTES, render=_edge_error),
        ],
    )


def _edge_error(_status: int, message: str) -> dict[str, Any]:
    return {"error": message}
