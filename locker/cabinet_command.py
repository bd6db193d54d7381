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
    from cabinet.config_store import ConfigStore

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
    from cabinet.config_store import ConfigStore

    store = ConfigStore(config_path)
    logging_set = False
    while True:
        config = _load_or_roll_back(config_path, store)
        if not logging_set:
            _set_up_logging(config, verbose)
            logging_set = True
        try:
            restart = asyncio.run(run_daemon(config, store=store))
        except Exception as err:
            if store.is_pending() and store.roll_back():
                log.exception(
                    "cabinet %s: the pushed config failed; rolled back", config.cabinet_id
                )
                continue
            log.exception("cabinet %s: the daemon failed", config.cabinet_id)
            typer.echo(f"error: cabinet {config.cabinet_id}: {err}", err=True)
            raise typer.Exit(EXIT_FAILED) from None
        if not restart:
            return
        log.info("cabinet %s: restarting on the pushed config", config.cabinet_id)


def _load_or_roll_back(config_path: Path, store: Any) -> CabinetConfig:
    from cabinet.config import load_config
    from cabinet.errors import ConfigError

    try:
        return load_config(config_path)
    except ConfigError as err:
        if store.is_pending() and store.roll_back():
            log.error("the pushed config is bad (%s): rolled back to the last good one", err)
            return _load_or_roll_back(config_path, store)
        typer.echo(f"error: bad config {config_path}: {err}", err=True)
        raise typer.Exit(EXIT_BAD_CONFIG) from None


def _set_up_logging(config: CabinetConfig, verbose: bool) -> None:
    from protocol.json_logs import log_to_stderr

    log_to_stderr(
        logging.DEBUG if verbose else logging.INFO,
        json=config.log_format == "json",
        text_format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def run_daemon(
    config: CabinetConfig,
    *,
    on_started: Callable[[Any], Awaitable[None] | None] | None = None,
    store: ConfigStore | None = None,
) -> bool:
    """Build and start the service for a checked config; run until SIGINT/SIGTERM, then stop.

    `on_started(service)` runs once the service is up (tests attach a control channel there).
    With a config `store`, a pushed config body (`config.put`) is written to it and the daemon
    stops to restart on it: return True then (False on SIGINT/SIGTERM). A pushed config that is
    still pending must bring the doors up: a start that fails, or leaves every door faulted,
    raises DoorsDown and the caller rolls back.
    """
    from cabinet.kiosk import RunningKiosk, start_kiosk
    from cabinet.sd_notify import supervised
    from cabinet.service import from_config

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    service = from_config(config, **_clock_override())
    kiosk: RunningKiosk | None = None
    metrics: Any = None
    restart = False
    try:
        await service.start()
        if store is not None:
            if store.is_pending():
                _check_doors_up(service)
                store.confirm()
            service.on_config_push = store.apply_push
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
            stopped = asyncio.create_task(stop.wait())
            restarting = asyncio.create_task(service.restart_requested.wait())
            await asyncio.wait({stopped, restarting}, return_when=asyncio.FIRST_COMPLETED)
            restart = not stop.is_set()
            for task in (stopped, restarting):
                task.cancel()
            log.info("cabinet %s: stopping", config.cabinet_id)
    finally:
        if metrics is not None:
            metrics.stop()
        if kiosk is not None:
            await kiosk.stop()  # first: no tap may start a step the service cannot finish
        await service.stop()
        service.journal.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    log.info("cabinet %s: stopped", config.cabinet_id)
    return restart


CLOCK_OFFSET_ENV = "LOCKER_CABINET_CLOCK_OFFSET_FILE"
CLOCK_FILE_ENV = "LOCKER_CABINET_CLOCK_FILE"


def _clock_override() -> dict[str, Any]:
    """A clock a test run controls, when it names one; else the daemon reads the plain wall
    clock, as deployed.

    `LOCKER_CABINET_CLOCK_OFFSET_FILE`: the wall clock plus an offset (`locker chaos` skews a
    cabinet's clock that way), checked against the monotonic clock, as the plain wall clock is,
    so a moved offset is a step. `LOCKER_CABINET_CLOCK_FILE`: the time written in the file,
    standing still until the test writes another (the kiosk's browser tests); the cabinet's
    timers run on it alone (no monotonic check), so moving it forward is time passing.
    """
    import os

    from protocol.offset_clock import FileClock, FileOffsetClock

    if path := os.environ.get(CLOCK_FILE_ENV):
        log.warning("the cabinet's clock is the time in the file %s (a test run)", path)
        return {"clock": FileClock(Path(path))}
    path = os.environ.get(CLOCK_OFFSET_ENV)
    if not path:
        return {}
    import time

    log.warning("the cabinet's clock is moved by the offset file %s (a test run)", path)
    # Checked against the monotonic clock, as the plain wall clock is: a moved offset is a step.
    return {"clock": FileOffsetClock(Path(path)), "ticks": time.monotonic}


class DoorsDown(Exception):
    """A pushed config's doors did not come up: every door reads faulted."""


def _check_doors_up(service: Any) -> None:
    from cabinet.core.compartments import CompartmentState

    states = [c.state for c in service.cabinet.compartments.values()]
    if states and all(state is CompartmentState.FAULTED for state in states):
        raise DoorsDown(f"none of the {len(states)} doors answers under the pushed config")


@app.command("enrol")
def enrol(
    code: Annotated[
        str,
        typer.Option(
            "--code",
            envvar="LOCKER_ENROL_CODE",
            help="The one-time enrolment code the operator gave (`locker cloud cabinet "
            "enrol-code`); dashes and spaces do not matter. Also LOCKER_ENROL_CODE.",
            show_default=False,
        ),
    ],
    cloud: Annotated[
        str,
        typer.Option(
            "--cloud",
            envvar="LOCKER_ENROL_CLOUD",
            help="The cloud's address, https://HOST (plain http only to localhost).",
            show_default=False,
        ),
    ],
    config_path: Annotated[
        Path,
        typer.Option(
            "--config",
            "-c",
            help="Where to write the cabinet's config (mode 0600; `run --config` reads it).",
        ),
    ] = Path("/etc/locker/cabinet.toml"),
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing config (re-enrolment).")
    ] = False,
    then_run: Annotated[
        bool, typer.Option("--run", help="Run the daemon on the new config at once.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False,
) -> None:
    """Enrol this cabinet with the cloud: trade a one-time code for its config and credentials.

    The cabinet needs nothing but the code and the cloud's address. The cloud answers, over
    HTTPS, with the cabinet's id, its MQTT user and password, its pickup-code key and its config
    (layout, buses, boards, settings, the broker's address); they are written to --config, mode
    0600, atomically. The code then stops working. Afterwards the cloud may push new configs
    (`config.put`); the daemon keeps the last good one beside it (`.good`) to roll back to.

        locker cabinet enrol --cloud https://lockers.example --code K7QF-2MXA-... \\
            --config /etc/locker/cabinet.toml --run

    Environment overrides (LOCKER_BUSES__MAIN__PORT, LOCKER_JOURNAL_PATH, ...) apply to the
    check of the new config as to `run`.
    """
    from cabinet.config_store import ConfigStore
    from cabinet.enrolment import EnrolmentFailed, fetch_enrolment
    from cabinet.errors import ConfigError

    if config_path.exists() and not force:
        typer.echo(
            f"error: {config_path} exists: this cabinet is configured already "
            "(--force to replace it with a new enrolment)",
            err=True,
        )
        raise typer.Exit(EXIT_BAD_CONFIG)
    try:
        answer = fetch_enrolment(cloud, code)
    except EnrolmentFailed as err:
        typer.echo(f"error: enrolment failed: {err}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    store = ConfigStore(config_path)
    try:
        config = store.write_enrolled(answer)
    except (ConfigError, KeyError, TypeError) as err:
        typer.echo(
            f"error: the cloud's config for this cabinet does not fit it ({err}); the code is "
            "spent: fix the layout in the cloud and ask for a new code",
            err=True,
        )
        raise typer.Exit(EXIT_BAD_CONFIG) from None
    except OSError as err:
        typer.echo(f"error: cannot write {config_path}: {err}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(
        f"enrolled as cabinet {config.cabinet_id} (config v{config.config_version}, "
        f"{config.config_sha256}); wrote {config_path} (0600)"
    )
    if then_run:
        run(config_path, verbose)


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
