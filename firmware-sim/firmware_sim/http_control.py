"""A small HTTP JSON server on 127.0.0.1 that drives the simulator's person and faults.

    GET  /state                            every board and door (bus.snapshot())
    GET  /log                              what every board saw and did, oldest first
    POST /doors/{board}/{channel}/{action} action: open, close, force, put, take
    POST /faults/{board}                   body: {"fault": "<name>", ...its arguments}
    POST /faults/{board}/clear             undo every fault of that board, power included
    POST /faults/line                      body: {"fault": "garbage", "hex": "00ff", "count": 1}
                                              or {"fault": "inject", "hex": "00ff"}
    POST /faults/line/clear                stop the line's noise

Board faults (arguments in brackets are optional):
    jam {channel, [jammed=true]}         stick_sensor {channel, latched: true|false|null}
    sticky_door {channel, [sticky=true]} silence {[silent=true]}
    stick_occupancy {channel, occupied: true|false|null}   (KR-CU boards' occupancy sensors)
    corrupt {[mode="checksum"|"flip"|"truncate"], [count=null]}
    slow {delay_s}                       byte_at_a_time {gap_s|null}
    power_off {}                         power_on {}

Boards are named by address, in decimal or 0x hex. Replies are JSON: {"ok": true, ...} on
success; 400 {"ok": false, "error": ...} for bad input (unknown board, channel, action, fault or
argument) and 409 when the door cannot do it (opening a latched door by hand). Either way
nothing changed.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from firmware_sim.bus import SimulatedBus
from firmware_sim.errors import ConfigError, RefusedError, SimulatorError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
SHUTDOWN_POLL_S = 0.05  # how often serve_forever looks for a shutdown request
DOOR_ACTIONS = ("open", "close", "force", "put", "take")


class BadRequest(SimulatorError):
    """The request is malformed: no such route, not JSON, a missing or mistyped argument."""


class ControlServer:
    """Serve the control endpoints for `bus` on 127.0.0.1:`port` (0: any free port)."""

    def __init__(self, bus: SimulatedBus, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.bus = bus
        self._httpd = _ControlHTTPServer((host, port), _Handler)
        self._httpd.bus = bus
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name="firmware-sim-control",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self._httpd.server_address[0]
        return f"http://{host}:{self.port}"

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _ControlHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    bus: SimulatedBus


class _Handler(BaseHTTPRequestHandler):
    server: _ControlHTTPServer

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, route: Any) -> None:
        try:
            status, body = HTTPStatus.OK, {"ok": True, **route()}
        except (BadRequest, ConfigError, LookupError) as err:
            status, body = HTTPStatus.BAD_REQUEST, {"ok": False, "error": _reason(err)}
        except RefusedError as err:
            status, body = HTTPStatus.CONFLICT, {"ok": False, "error": str(err)}
        except _NotFound as err:
            status, body = HTTPStatus.NOT_FOUND, {"ok": False, "error": str(err)}
        except Exception as err:  # a bug: say so, and keep serving
            log.exception("control request %s %s failed", self.command, self.path)
            status, body = HTTPStatus.INTERNAL_SERVER_ERROR, {"ok": False, "error": repr(err)}
        payload = json.dumps(body, indent=1).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _get(self) -> dict[str, Any]:
        bus = self.server.bus
        match self._parts():
            case ["state"]:
                return bus.snapshot()
            case ["log"]:
                return {"log": bus.log()}
        raise _NotFound(f"no GET route {self.path}; try /state or /log")

    def _post(self) -> dict[str, Any]:
        bus = self.server.bus
        body = self._json_body()
        match self._parts():
            case ["doors", board, channel, action]:
                address, number = _address(board), _whole("channel", channel)
                _door_action(bus, address, number, action)
                return {"door": bus.board(address).door(number).as_dict()}
            case ["faults", "line"]:
                _line_fault(bus, body)
                return {"line": bus.line.as_dict()}
            case ["faults", "line", "clear"]:
                bus.faults.clear_line()
                return {"line": bus.line.as_dict()}
            case ["faults", board]:
                address = _address(board)
                _board_fault(bus, address, body)
                return {"board": bus.board(address).as_dict()}
            case ["faults", board, "clear"]:
                address = _address(board)
                bus.faults.clear(address)
                return {"board": bus.board(address).as_dict()}
        raise _NotFound(f"no POST route {self.path}")

    def _parts(self) -> list[str]:
        path = self.path.split("?", 1)[0]
        return [part for part in path.split("/") if part]

    def _json_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise BadRequest(f"body is over {MAX_BODY_BYTES} bytes")
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise BadRequest(f"body is not JSON: {err}") from None
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        return body

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("control: " + format, *args)


class _NotFound(Exception):
    pass


def _reason(err: Exception) -> str:
    # KeyError's str() is the repr of its argument; the others read as written.
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)


def _door_action(bus: SimulatedBus, board: int, channel: int, action: str) -> None:
    person = bus.person
    actions = {
        "open": person.open_door,
        "close": person.close_door,
        "force": person.force_door,
        "put": person.put_parcel,
        "take": person.take_parcel,
    }
    if action not in actions:
        raise BadRequest(f"door action is one of {', '.join(DOOR_ACTIONS)}, not {action!r}")
    actions[action](board, channel)


def _board_fault(bus: SimulatedBus, board: int, body: dict[str, Any]) -> None:
    bus.board(board)  # an unknown board is the first thing to report
    args = dict(body)
    fault = args.pop("fault", None)
    faults = bus.faults
    match fault:
        case "jam":
            _only(args, "channel", "jammed")
            faults.jam(board, _channel(args), _flag(args, "jammed"))
        case "stick_sensor":
            _only(args, "channel", "latched")
            if "latched" not in args or args["latched"] not in (True, False, None):
                raise BadRequest('stick_sensor needs "latched": true, false or null')
            faults.stick_sensor(board, _channel(args), args["latched"])
        case "stick_occupancy":
            _only(args, "channel", "occupied")
            if "occupied" not in args or args["occupied"] not in (True, False, None):
                raise BadRequest('stick_occupancy needs "occupied": true, false or null')
            faults.stick_occupancy(board, _channel(args), args["occupied"])
        case "sticky_door":
            _only(args, "channel", "sticky")
            faults.sticky_door(board, _channel(args), _flag(args, "sticky"))
        case "silence":
            _only(args, "silent")
            faults.silence(board, _flag(args, "silent"))
        case "corrupt":
            _only(args, "mode", "count")
            faults.corrupt(board, args.get("mode", "checksum"), args.get("count"))
        case "slow":
            _only(args, "delay_s")
            faults.slow(board, _required(args, "delay_s"))
        case "byte_at_a_time":
            _only(args, "gap_s")
            faults.byte_at_a_time(board, _required(args, "gap_s"))
        case "power_off":
            _only(args)
            faults.power_off(board)
        case "power_on":
            _only(args)
            faults.power_on(board)
        case _:
            names = (
                "jam, stick_sensor, stick_occupancy, sticky_door, silence, corrupt, slow, "
                "byte_at_a_time, "
            )
            raise BadRequest(f'"fault" is one of {names}power_off, power_on; not {fault!r}')


def _line_fault(bus: SimulatedBus, body: dict[str, Any]) -> None:
    args = dict(body)
    fault = args.pop("fault", None)
    match fault:
        case "garbage":
            _only(args, "hex", "count")
            bus.faults.garbage(_hex(args), args.get("count", 1))
        case "inject":
            _only(args, "hex")
            bus.faults.inject(_hex(args))
        case _:
            raise BadRequest(f'"fault" on the line is garbage or inject, not {fault!r}')


def _only(args: dict[str, Any], *allowed: str) -> None:
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) or "no arguments"
        raise BadRequest(f"unknown argument(s) {', '.join(unknown)}; this fault takes {takes}")


def _required(args: dict[str, Any], name: str) -> Any:
    if name not in args:
        raise BadRequest(f'missing "{name}"')
    return args[name]


def _channel(args: dict[str, Any]) -> int:
    channel = _required(args, "channel")
    if isinstance(channel, bool) or not isinstance(channel, int):
        raise BadRequest(f'"channel" is a whole number, not {channel!r}')
    return channel


def _flag(args: dict[str, Any], name: str) -> bool:
    value = args.get(name, True)
    if not isinstance(value, bool):
        raise BadRequest(f'"{name}" is true or false, not {value!r}')
    return value


def _hex(args: dict[str, Any]) -> bytes:
    text = _required(args, "hex")
    try:
        return bytes.fromhex(text)
    except (TypeError, ValueError):
        raise BadRequest(f'"hex" is bytes in hex ("00 ff 13"), not {text!r}') from None


def _whole(name: str, text: str) -> int:
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise BadRequest(f"{name} is a number, not {text!r}") from None


def _address(text: str) -> int:
    return _whole("board", text)
