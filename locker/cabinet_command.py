"""`locker cabinet ...`: run and inspect the edge daemon of one cabinet."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from cabinet.config import CabinetConfig

app = typer.Typer(help="The edge daemon of one cabinet.", no_args_is_help=True)

log = logging.getLogger("locker.cabinet")

# Exit codes: 2 is a bad config (as for a bad command line: fix the input, do not retry), 1 is
# anything that failed while starting or running (systemd restarts it).
EXIT_BAD_CONFIG = 2
EXIT_FAILED = 1


@app.callback()
def cabinet() -> None:
    """The edge daemon of one cabinet: doors, journal, MQTT link."""


@app.command("run")
def run(
    config_path: Annotated[
        Path,
        typer.Option(
            "--config",
            "-c",
            help=(
                "The cabinet's TOML config (see deploy/cabinet-rs485-24.toml and "
                "deploy/cabinet-gpio-small.toml). Any key can be overridden from the "
                "environment: LOCKER_ prefix, nested keys joined by __ (LOCKER_CODE_KEY, "
                "LOCKER_MQTT__PASSWORD, LOCKER_BUSES__MAIN__PORT)."
            ),
            show_default=False,
        ),
    ],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False,
) -> None:
    """Run the cabinet daemon until SIGINT or SIGTERM.

    It checks the whole config first (a bad one exits with status 2 and names the key, before
    any door or port is touched), then opens the journal, starts the door drivers, reads every
    door and reconciles it with the journal (so it resumes exactly where a crash or power cut
    left it), connects to the broker and serves deposits, pickups and the cloud's commands.
    Deposits and pickups go on while the broker is unreachable; every event is kept in the
    journal and sent, in order, once the link is back.

    On SIGTERM it finishes the step in hand, publishes its offline state and exits 0.

    Example, against the simulator:

        locker sim --link /tmp/ttyLOCK &

        LOCKER_CODE_KEY=dev-key LOCKER_BUSES__MAIN__PORT=/tmp/ttyLOCK \\
        locker cabinet run --config deploy/cabinet-rs485-24.toml
    """
    from cabinet.config import load_config
    from cabinet.errors import ConfigError

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_config(config_path)
    except ConfigError as err:
        typer.echo(f"error: bad config {config_path}: {err}", err=True)
        raise typer.Exit(EXIT_BAD_CONFIG) from None
    try:
        asyncio.run(run_daemon(config))
    except Exception as err:
        log.exception("cabinet %s: the daemon failed", config.cabinet_id)
        typer.echo(f"error: cabinet {config.cabinet_id}: {err}", err=True)
        raise typer.Exit(EXIT_FAILED) from None


async def run_daemon(
    config: CabinetConfig,
    *,
    on_started: Callable[[Any], Awaitable[None] | None] | None = None,
) -> None:
    """Build and start the service for a checked config; run until SIGINT/SIGTERM, then stop.

    `on_started(service)` runs once the service is up (tests attach a control channel there).
    """
    from cabinet.sd_notify import supervised
    from cabinet.service import from_config

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    service = from_config(config)
    try:
        await service.start()
        # Under systemd (Type=notify): READY=1 now, watchdog pings earned by the owner task,
        # STOPPING=1 on the way out; nothing without NOTIFY_SOCKET.
        async with supervised(service, config.cabinet_id):
            log.info("cabinet %s: running; SIGTERM or Ctrl-C stops it", config.cabinet_id)
            if on_started is not None:
                started = on_started(service)
                if started is not None:
                    await started
            await stop.wait()
            log.info("cabinet %s: stopping", config.cabinet_id)
    finally:
        await service.stop()
        service.journal.close()
    log.info("cabinet %s: stopped", config.cabinet_id)
