"""Test-only entry point: the real daemon (`run_daemon`) plus a JSON control channel on stdin.

The kill -9 tests drive the daemon through this rather than the kiosk's HTTP API: each stdin
line is `{"input": "<kiosk input class>", "args": {...}}` or `{"query": "cabinet"}`; each answer
is one stdout line, `{"ok": true, "screens": [...]}` or `{"ok": false, "error": "..."}`. The
first line out is `{"ready": true}` once the service has started (after its reconcile step).

    python -m tests.cabinet.service.daemon_process CONFIG.toml
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
from typing import Any

from cabinet.config import load_config
from cabinet.core.errors import CoreError
from cabinet.kiosk.wire import SCREEN_INPUTS
from cabinet.service import CabinetService
from locker.cabinet_command import run_daemon


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, default=str) + "\n")
    sys.stdout.flush()


async def _answer(service: CabinetService, request: dict[str, Any]) -> dict[str, Any]:
    if request.get("query") == "cabinet":
        return {"ok": True, "cabinet": service.cabinet.to_dict()}
    cls = SCREEN_INPUTS[request["input"]]  # what the kiosk may send
    try:
        shows = await service.submit(cls(**request.get("args", {})))
    except CoreError as err:
        return {"ok": False, "error": str(err)}
    screens = [{"type": type(s.screen).__name__, **dataclasses.asdict(s.screen)} for s in shows]
    return {"ok": True, "screens": screens}


async def _serve_stdin(service: CabinetService) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    _say({"ready": True})
    while line := await reader.readline():
        _say(await _answer(service, json.loads(line)))


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = load_config(sys.argv[1])
    tasks: list[asyncio.Task[None]] = []  # a reference, or the loop may collect the task

    async def started(service: CabinetService) -> None:
        # In the background: run_daemon goes on to wait for SIGTERM.
        tasks.append(asyncio.get_running_loop().create_task(_serve_stdin(service)))

    asyncio.run(run_daemon(config, on_started=started))


if __name__ == "__main__":
    main()
