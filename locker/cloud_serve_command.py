"""`locker cloud serve`: run the cloud's HTTP API (FastAPI under uvicorn)."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help=(
                "SQLAlchemy URL of the database (sqlite:///PATH or postgresql+psycopg://...). "
                "Default: LOCKER_CLOUD_DATABASE_URL, else SQLite in the data dir."
            ),
            show_default=False,
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 8000,
    follow_clock_offset: Annotated[
        bool,
        typer.Option(
            "--follow-clock-offset",
            help=(
                "Live on the workers' moved clock (LOCKER_CLOUD_CLOCK_OFFSET_FILE), as one cloud "
                "whose servers agree on the time. Demo and end-to-end runs only."
            ),
        ),
    ] = False,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="A log line per request (uvicorn's). Off where the proxy logs requests: the "
            "line costs about a tenth of the API's CPU per request (docs/benchmarks.md).",
        ),
    ] = True,
) -> None:
    """Serve the API at /api/v1 (OpenAPI at /api/v1/openapi.json), until SIGINT or SIGTERM.

    Stateless: run as many as you like against one database. Run `locker cloud db upgrade`
    first. Settings (base URL, secret key, Twilio) come from LOCKER_CLOUD_* variables; it
    refuses to start without LOCKER_CLOUD_SECRET_KEY (at least 32 random bytes).
    With LOCKER_CLOUD_METRICS_TOKEN set it serves Prometheus metrics on /metrics to that bearer
    token; LOCKER_CLOUD_LOG_FORMAT=json logs one JSON object per line.

    The API keeps real time even where a demo moves the workers' clock, unless
    --follow-clock-offset: `locker chaos` moves the workers days ahead every round while
    recipients keep opening doors from their phones, and a one-time code the API gives out must
    not look expired to the worker that texts it.
    """
    import gc
    import logging

    import uvicorn
    from sqlalchemy.engine import make_url

    from cloud.api import create_app
    from cloud.api.admission import pool_capacity
    from cloud.db.engine import make_engine
    from cloud.db.migrate import current_revision_of, head_revision
    from cloud.logs import quiet_chatty_libraries, setup_logging
    from locker.cloud_settings import check_secret_opens_the_database, cloud_settings

    # Refuse before anything opens: without a strong secret key anyone could sign a session.
    settings = cloud_settings(need_secret=True)
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    engine = make_engine(settings.database_url)
    try:
        current = current_revision_of(engine)
    except Exception as err:  # a CLI reports the reason in one line instead of a traceback
        typer.echo(f"error: cannot open the database {shown}: {err}", err=True)
        raise typer.Exit(1) from err
    if current != head_revision():
        typer.echo(
            f"error: the database {shown} is at revision {current or '(empty)'}, not "
            f"{head_revision()}: run `locker cloud db upgrade` first",
            err=True,
        )
        raise typer.Exit(1)
    check_secret_opens_the_database(engine, settings)
    typer.echo(f"API on http://{host}:{port}/api/v1 (database {shown})")
    json_logs = settings.log_format == "json"
    if json_logs:
        # uvicorn's own records (start-up, access log) go through the root's JSON handler.
        setup_logging(logging.INFO, json=True)
    else:
        quiet_chatty_libraries()
    if settings.metrics_token is not None:
        typer.echo(f"metrics on http://{host}:{port}/metrics (bearer LOCKER_CLOUD_METRICS_TOKEN)")
    clock = {}
    if follow_clock_offset and settings.clock_offset_file is not None:
        from cloud.worker.clock import FileOffsetClock

        typer.echo(f"its clock runs ahead by the seconds in {settings.clock_offset_file}")
        clock["clock"] = FileOffsetClock(settings.clock_offset_file)
    app = create_app(settings, engine=engine, **clock)
    # What start-up made (modules, the app, its routes and models: most of the heap) lives as
    # long as the process. Frozen, the collector no longer walks it: a full collection under
    # load took 200-235 ms instead of a few (the tracking read's p99, docs/benchmarks.md).
    gc.collect()
    gc.freeze()
    # Open the pool's connections now (after the freeze: a connection is dropped some day), not
    # under the first burst: at 500 reads a second a cold process forked its PostgreSQL
    # backends while requests queued behind them (docs/benchmarks.md).
    opened = [engine.connect() for _ in range(pool_capacity(engine) or 0)]
    for connection in opened:
        connection.close()
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            access_log=access_log,
            **({"log_config": None} if json_logs else {}),
        )
    finally:
        engine.dispose()
