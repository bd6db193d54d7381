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
    """The edge daemon of one cabinet: doors, journal, MQTT link, touchscreen kiosk."""


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

    With `metrics_port` set it serves Prometheus metrics on http://metrics_host:PORT/metrics
    (journal backlog, link, compartments by state, RS485 errors per board); `log_format =
    "json"` logs one JSON object per line.

    Example, against the simulator:

        locker sim --link /tmp/ttyLOCK &

        LOCKER_CODE_KEY=dev-key LOCKER_BUSES__MAIN__PORT=/tmp/ttyLOCK \\
        locker cabinet run --config deploy/cabinet-rs485-24.toml
    """
    from cabinet.config import load_config
    from cabinet.errors import ConfigError
    from protocol.json_logs import log_to_stderr

    try:
        config = load_config(config_path)
    except ConfigError as err:
        typer.echo(f"error: bad config {config_path}: {err}", err=True)
        raise typer.Exit(EXIT_BAD_CONFIG) from None
    log_to_stderr(
        logging.DEBUG if verbose else logging.INFO,
        json=config.log_format == "json",
        text_format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
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
    from cabinet.kiosk import RunningKiosk, start_kiosk
    from cabinet.sd_notify import supervised
    from cabinet.service import from_config

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    service = from_config(config)
    kiosk: RunningKiosk | None = None
    metrics: Any = None
    try:
        await service.start()
        kiosk = await start_kiosk(config, service)
        if config.metrics_port is not None:
            from cabinet.metrics import serve_metrics

            metrics = serve_metrics(service, config.metrics_host, config.metrics_port)
        # Under systemd (Type=notify): READY=1 now, watchdog pings earned by the owner task,
        # STOPPING=1 on the way out; nothing without NOTIFY_SOCKET.
        async with supervised(service, config.cabinet_id):
            log.info(
                "cabinet %s: running, kiosk on %s; SIGTERM or Ctrl-C stops it",
                config.cabinet_id,
                kiosk.url,
            )
            if on_started is not None:
                started = on_started(service)
                if started is not None:
                    await started
            await stop.wait()
            log.info("cabinet %s: stopping", config.cabinet_id)
    finally:
        if metrics is not None:
            metrics.stop()
        if kiosk is not None:
            await kiosk.stop()  # first: no tap may start a step the service cannot finish
        await service.stop()
        service.journal.close()
    log.info("cabinet %s: stopped", config.cabinet_id)


@app.command("pin-hash")
def pin_hash_command(
    pin: Annotated[
        str,
        typer.Option(
            prompt="Technician PIN",
            hide_input=True,
            confirmation_prompt=True,
            help="The PIN (asked for, unechoed, when not given; give it here only in scripts).",
        ),
    ],
) -> None:
    """Print the hash of a technician PIN, for the config's `technician_pin_hash`.

    The maintenance screen (test a door, read the bus's error counters) asks for this PIN. The
    config keeps only its salted scrypt hash, so whoever reads the config cannot learn the PIN:

        locker cabinet pin-hash        # asks twice, prints scrypt$16384$8$1$...

    then put `technician_pin_hash = "scrypt$..."` in the cabinet's TOML (or give it in
    LOCKER_TECHNICIAN_PIN_HASH).
    """
    import os

    from protocol.hashing import pin_hash

    if not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12):
        typer.echo("error: the PIN must be 4 to 12 digits (it is typed on the screen's keypad)")
        raise typer.Exit(EXIT_BAD_CONFIG)
    typer.echo(pin_hash(pin, os.urandom(16)))


def _register_doctor() -> None:
    # The doctor lives in its own module (it is long); it is a `locker cabinet` command.
    from locker.doctor_command import doctor

    app.command("doctor")(doctor)


_register_doctor()
