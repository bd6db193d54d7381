"""`locker cloud ...`: the cloud service: database, workers, API, registry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, NoReturn

import typer

from locker.cloud_registry_command import (
    account_app,
    cabinet_app,
    carrier_app,
    courier_app,
    erp_key_app,
    mosquitto_config,
    site_app,
)
from locker.cloud_serve_command import serve
from locker.cloud_statement_command import price_app, statement, statement_close

app = typer.Typer(help="The cloud service: database, workers, API, registry.", no_args_is_help=True)

db_app = typer.Typer(help="The cloud's database: migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(site_app, name="site")
import locker.cloud_enrol_command  # noqa: E402, F401  (adds enrol-code, config-push to cabinet)

app.add_typer(cabinet_app, name="cabinet")
app.add_typer(courier_app, name="courier")
app.add_typer(erp_key_app, name="erp-key")
app.add_typer(carrier_app, name="carrier")
app.add_typer(account_app, name="account")
app.add_typer(price_app, name="price")
app.command(name="statement")(statement)
app.command(name="statement-close")(statement_close)
app.command(name="serve")(serve)
app.command(name="mosquitto-config")(mosquitto_config)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help=(
            "SQLAlchemy URL of the database (sqlite:///PATH or postgresql+psycopg://...). "
            "Default: LOCKER_CLOUD_DATABASE_URL, else SQLite in the data dir."
        ),
        show_default=False,
    ),
]


def _database_url(url: str | None) -> str:
    if url:
        return url
    from locker.cloud_settings import cloud_settings

    return cloud_settings(need_secret=False).database_url


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _fail(what: str, err: Exception) -> NoReturn:
    reason = " ".join(str(err).split())[:300] or type(err).__name__
    typer.echo(f"error: {what}: {reason}", err=True)
    raise typer.Exit(1) from err


@db_app.command("upgrade")
def db_upgrade(
    database_url: DatabaseUrl = None,
    revision: Annotated[str, typer.Argument(help="Revision to upgrade to.")] = "head",
) -> None:
    """Create or upgrade the cloud's tables (Alembic migrations), printing each step.

    Sealing the cabinets' code keys (0007) needs LOCKER_CLOUD_SECRET_KEY if any cabinet exists.
    """
    from cloud.db.migrate import current_revision, upgrade
    from cloud.settings import SettingsError
    from locker.cloud_settings import EXIT_BAD_SETTINGS

    url = _database_url(database_url)
    typer.echo(f"database: {_shown(url)}")
    try:
        before = current_revision(url)
        typer.echo(f"at revision: {before or '(empty)'}")
        upgrade(url, revision, echo=typer.echo)
        after = current_revision(url)
    except SettingsError as err:  # a migration needs a setting: the whole paragraph, no cut
        typer.echo(f"error: upgrade stopped: {err}", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    except Exception as err:  # a CLI reports the reason in one line instead of a traceback
        _fail("upgrade failed", err)
    if after == before:
        typer.echo(f"already at {after}: nothing to do")
    else:
        typer.echo(f"now at revision: {after}")


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None) -> None:
    """Print the database's revision and the newest one this version ships."""
    from cloud.db.migrate import current_revision, head_revision

    url = _database_url(database_url)
    try:
        current = current_revision(url)
    except Exception as err:
        _fail("cannot read the revision", err)
    head = head_revision()
    state = "up to date" if current == head else "needs `locker cloud db upgrade`"
    typer.echo(f"database: {_shown(url)}")
    typer.echo(f"current: {current or '(empty)'}; head: {head} ({state})")


BrokerOption = Annotated[
    str | None,
    typer.Option(
        "--broker",
        help=(
            "The MQTT broker, mqtt://HOST[:PORT] (port 1883 if left out). "
            "Default: LOCKER_CLOUD_MQTT_HOST and LOCKER_CLOUD_MQTT_PORT."
        ),
        show_default=False,
    ),
]
SharedOption = Annotated[
    bool,
    typer.Option(
        "--shared/--no-shared",
        help=(
            "Subscribe to events with the shared subscription $share/cloud/..., so any "
            "number of workers split the load (Mosquitto 2, EMQX). Use --no-shared with a "
            "broker without shared subscriptions (the embedded demo broker), and run one "
            "worker only."
        ),
    ),
]
MqttUsernameOption = Annotated[
    str | None,
    typer.Option(
        "--mqtt-username",
        help=(
            "This worker's broker user, one per worker (locker-cloud-1, locker-cloud-2, ... "
            "from `locker cloud mosquitto-config --workers N`); it is the client id too. "
            "Default: LOCKER_CLOUD_MQTT_USERNAME."
        ),
        show_default=False,
    ),
]
ClientIdOption = Annotated[
    str | None,
    typer.Option(
        "--client-id",
        help=(
            "MQTT client id, for a broker without users (the demo's); unique per worker. "
            "Default: the broker user, else PREFIX-HOSTNAME-PID."
        ),
        show_default=False,
    ),
]
ResendIntervalOption = Annotated[
    float,
    typer.Option(
        "--resend-interval-s",
        min=1,
        help="Resend a command the cabinet has not acked after this many seconds.",
    ),
]


MetricsPortOption = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=0,
        max=65535,
        help=(
            "Serve this worker's Prometheus metrics on http://METRICS_HOST:PORT/metrics "
            "(default: LOCKER_CLOUD_WORKER_METRICS_PORT; unset, none). Give each worker on a "
            "host its own port. No token guards it: it binds to LOCKER_CLOUD_METRICS_HOST "
            "(127.0.0.1)."
        ),
        show_default=False,
    ),
]


@app.command("worker")
def worker(
    database_url: DatabaseUrl = None,
    broker: BrokerOption = None,
    shared: SharedOption = True,
    mqtt_username: MqttUsernameOption = None,
    client_id: ClientIdOption = None,
    resend_interval_s: ResendIntervalOption = 30.0,
    metrics_port: MetricsPortOption = None,
) -> None:
    """Ingest cabinet events, track presence and send commands, until SIGINT or SIGTERM.

    Stores each event once by (cabinet, seq), applies them in seq order exactly once (any number
    of workers may run), and publishes event-ack only after the commit; tracks each cabinet's
    presence from its retained state; publishes the command outbox and resends each command
    until the cabinet acks it or it expires; sends the ERP webhooks (docs/webhooks.md). Run
    `locker cloud db upgrade` first. It refuses to start without LOCKER_CLOUD_SECRET_KEY (at
    least 32 random bytes). `--metrics-port 9101` serves its Prometheus counters (events,
    ingest lag, commands, notices, webhooks; docs/metrics.md); LOCKER_CLOUD_LOG_FORMAT=json
    logs one JSON object per line.
    """
    import logging
    import signal

    from cloud.logs import setup_logging
    from cloud.worker import MqttClient, Worker, subscriptions
    from cloud.worker.schedule import webhook_dispatcher_from_settings
    from locker.cloud_settings import cloud_settings

    # Refuse before anything opens: the worker seals pickup codes and unseals code keys with it.
    settings = cloud_settings(need_secret=True)
    url = database_url or settings.database_url
    host, port = _broker_address(broker, settings)
    username = mqtt_username or settings.mqtt_username
    client_id = _worker_client_id(username, client_id, settings)
    setup_logging(logging.INFO, json=settings.log_format == "json")
    engine = _open_upgraded_database(url, settings)
    password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
    client = MqttClient(
        host=host,
        port=port,
        client_id=client_id,
        subscriptions=subscriptions(shared=shared),
        username=username,
        password=password,
        tls=settings.mqtt_tls,
        ca_file=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
    )
    runner = Worker(
        engine=engine,
        client=client,
        seal_key=settings.secret_key_bytes,
        clock=_worker_clock(settings, client_id),
        resend_interval_s=resend_interval_s,
        linger_s=settings.worker_linger_ms / 1000,
        notices=_notice_dispatcher(engine, settings),
        webhooks=webhook_dispatcher_from_settings(engine=engine, settings=settings),
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: runner.stopping.set())
    mode = "shared" if shared else "plain (single worker)"
    typer.echo(f"worker {client_id}: database {_shown(url)}, broker {host}:{port}, {mode}")
    served = _serve_metrics(settings, metrics_port, client_id)
    try:
        runner.run()
    finally:
        if served is not None:
            served.stop()
        engine.dispose()
    typer.echo(f"worker {client_id}: stopped")


def _serve_metrics(settings: Any, port: int | None, client_id: str) -> Any:
    """Start the worker's /metrics server if a port is set; exit 1 if the port is taken."""
    from cloud.metrics import serve_worker_metrics

    port = settings.worker_metrics_port if port is None else port
    if port is None:
        return None
    try:
        served = serve_worker_metrics(settings.metrics_host, port)
    except OSError as err:
        _fail(f"cannot serve metrics on {settings.metrics_host}:{port}", err)
    typer.echo(
        f"worker {client_id}: metrics on http://{settings.metrics_host}:{served.port}/metrics"
    )
    return served


def _broker_address(broker: str | None, settings: Any) -> tuple[str, int]:
    """The broker's (host, port): `--broker`'s URL, else the settings'."""
    from cloud.worker import parse_broker_url

    if not broker:
        return settings.mqtt_host, settings.mqtt_port
    try:
        return parse_broker_url(broker)
    except ValueError as err:
        _fail("bad --broker", err)


def _worker_client_id(username: str | None, client_id: str | None, settings: Any) -> str:
    """The broker user (the broker pins the client id to it), else --client-id, else a made one."""
    import os
    import socket

    if username and client_id and client_id != username:
        # The broker replaces the client id by the user name (use_username_as_clientid): a
        # different one would only mislead whoever reads the logs.
        _fail(
            "bad --client-id",
            ValueError(
                f"with the broker user {username!r} the client id is the user name, "
                f"not {client_id!r}"
            ),
        )
    return (
        username
        or client_id
        or f"{settings.mqtt_client_id_prefix}-{socket.gethostname()}-{os.getpid()}"
    )


def _open_upgraded_database(url: str, settings: Any) -> Any:
    """An engine on `url`; exit 1 unless it is at the head revision and the secret opens it."""
    from cloud.db.engine import make_engine
    from cloud.db.migrate import current_revision_of, head_revision
    from locker.cloud_settings import check_secret_opens_the_database

    # No ping per checkout: the worker retries a transaction a dropped connection fails
    # (cloud.db.engine.make_engine).
    engine = make_engine(url, pool_pre_ping=False)
    try:
        current = current_revision_of(engine)
    except Exception as err:
        _fail(f"cannot open the database {_shown(url)}", err)
    if current != head_revision():
        typer.echo(
            f"error: the database {_shown(url)} is at revision {current or '(empty)'}, not "
            f"{head_revision()}: run `locker cloud db upgrade` first",
            err=True,
        )
        raise typer.Exit(1)
    check_secret_opens_the_database(engine, settings)
    return engine


def _notice_dispatcher(engine: Any, settings: Any) -> Any:
    """The notice dispatcher, or None (with a warning) where no SMS account is set."""
    if settings.twilio_account_sid:
        from cloud.worker.schedule import notice_dispatcher_from_settings

        return notice_dispatcher_from_settings(engine=engine, settings=settings)
    # Without an SMS account a notice cannot go anywhere: say so rather than fail silently.
    typer.echo(
        "warning: LOCKER_CLOUD_TWILIO_ACCOUNT_SID is not set: notices stay queued in the "
        "outbox until a worker with SMS settings runs",
        err=True,
    )
    return None


def _worker_clock(settings: Any, client_id: str) -> Callable[[], datetime]:
    """The wall clock, or (demos and end-to-end runs) one moved by the offset file."""
    from cloud.worker.clock import FileOffsetClock, utc_now

    if settings.clock_offset_file is None:
        return utc_now
    typer.echo(
        f"worker {client_id}: its clock runs ahead by the seconds in "
        f"{settings.clock_offset_file} (demo and end-to-end runs only)"
    )
    return FileOffsetClock(settings.clock_offset_file)
