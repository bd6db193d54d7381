"""`locker cloud site|cabinet|courier add`: the registry from the command line."""

from __future__ import annotations

import copy
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

site_app = typer.Typer(help="Sites and the policies their cabinets run by.", no_args_is_help=True)
cabinet_app = typer.Typer(help="Cabinets: compartments and credentials.", no_args_is_help=True)
courier_app = typer.Typer(help="Couriers who log in at the cabinets.", no_args_is_help=True)
erp_key_app = typer.Typer(
    help="API keys of the ERPs that announce shipments.", no_args_is_help=True
)

# Bad input (an unknown site, a bad layout) exits with 2, like a usage error: nothing is written.
BAD_INPUT = 2
# Headers of the three parts `cabinet add` prints: TOML comments, so the first part parses as is.
CONFIG_HEADER = "# --- cabinet daemon config (holds secrets: install it mode 0600) ---"
PASSWORD_HEADER = "# --- Mosquitto password_file line ---"
ACL_HEADER = "# --- Mosquitto acl_file lines ---"

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL of the database. Default: LOCKER_CLOUD_DATABASE_URL, else SQLite.",
        show_default=False,
    ),
]


def _bad_input(reason: object) -> NoReturn:
    typer.echo(f"error: {reason}", err=True)
    raise typer.Exit(BAD_INPUT)


@contextmanager
def _registry(database_url: str | None) -> Iterator[Any]:
    """Yield a session; exit 2 on bad input (RegistryError), 1 if the database fails."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session

    from cloud.db.engine import make_engine
    from cloud.services.registry import RegistryError
    from cloud.settings import CloudSettings

    engine = make_engine(database_url or CloudSettings().database_url)
    try:
        with Session(engine) as session:
            yield session
    except (RegistryError, ValueError) as err:
        _bad_input(err)
    except SQLAlchemyError as err:
        reason = " ".join(str(err).split())[:300]
        typer.echo(
            f"error: database: {reason} (is it upgraded? `locker cloud db upgrade`)", err=True
        )
        raise typer.Exit(1) from err
    finally:
        engine.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


# --- sites ----------------------------------------------------------------------------------------


@site_app.command("add")
def site_add(
    site_id: Annotated[str, typer.Argument(metavar="ID", help="The site's id.")],
    name: Annotated[str, typer.Option("--name", help="The site's name.")],
    timezone: Annotated[str, typer.Option("--timezone", help="IANA zone.")] = "Asia/Shanghai",
    language: Annotated[str, typer.Option("--language", help="zh-CN or en.")] = "zh-CN",
    pickup_window_h: Annotated[
        float, typer.Option("--pickup-window-h", min=0.01, help="Hours to pick a parcel up.")
    ] = 72,
    reminder_before_h: Annotated[
        float,
        typer.Option("--reminder-before-h", min=0, help="Remind this long before (0: never)."),
    ] = 24,
    code_length: Annotated[int, typer.Option("--code-length", help="Pickup code digits.")] = 8,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a site with its pickup policy."""
    from cloud.db.models import SiteCreate
    from cloud.services.registry import add_site

    reminder_s = round(reminder_before_h * 3600) or None
    try:
        site_create = SiteCreate(
            id=site_id,
            name=name,
            timezone=timezone,
            language=language,
            pickup_window_s=round(pickup_window_h * 3600),
            reminder_before_s=reminder_s,
            code_length=code_length,
        )
    except ValueError as err:
        _bad_input(err)
    with _registry(database_url) as session:
        add_site(session=session, site_create=site_create, now=_now())
    typer.echo(f"site {site_id} added")


# --- cabinets -------------------------------------------------------------------------------------


@cabinet_app.command("add")
def cabinet_add(
    cabinet_id: Annotated[str, typer.Argument(metavar="ID", help="The cabinet's id.")],
    site: Annotated[str, typer.Option("--site", help="The site it stands in.")],
    layout: Annotated[
        Path,
        typer.Option(
            "--layout",
            help="A TOML file with [[layout.compartments]] (a cabinet config will do).",
            exists=True,
            dir_okay=False,
        ),
    ],
    name: Annotated[str | None, typer.Option("--name", help="Default: the id.")] = None,
    address: Annotated[str, typer.Option("--address", help="Where recipients find it.")] = "",
    broker_host: Annotated[
        str | None, typer.Option("--broker-host", help="The broker the cabinet connects to.")
    ] = None,
    broker_port: Annotated[int | None, typer.Option("--broker-port", min=1, max=65535)] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a cabinet and its compartments; print its daemon config, password and ACL lines.

    The secrets are printed once and kept by the cloud only as it needs them: the code key
    (to hash pickup codes) and the MQTT password's hash.
    """
    from cloud.db.models import CabinetCreate
    from cloud.services.registry import (
        add_cabinet,
        layout_compartments,
        mosquitto_acl_lines,
    )

    try:
        parsed = tomllib.loads(layout.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        _bad_input(f"cannot read the layout {layout}: {err}")
    with _registry(database_url) as session:
        compartments = layout_compartments(parsed)
        cabinet_create = CabinetCreate(
            id=cabinet_id, site_id=site, name=name or cabinet_id, address=address
        )
        credentials = add_cabinet(
            session=session, cabinet_create=cabinet_create, compartments=compartments, now=_now()
        )
    config = daemon_config(
        parsed,
        cabinet_id=cabinet_id,
        code_key=credentials.code_key,
        mqtt_password=credentials.mqtt_password,
        broker_host=broker_host,
        broker_port=broker_port,
    )
    typer.echo(CONFIG_HEADER)
    typer.echo(to_toml(config))
    typer.echo(PASSWORD_HEADER)
    typer.echo(credentials.password_file_line)
    typer.echo(ACL_HEADER)
    typer.echo(mosquitto_acl_lines(cabinet_id))


@cabinet_app.command("cloud-acl")
def cabinet_cloud_acl(
    user: Annotated[
        str,
        typer.Option(
            "--user",
            help="The stem of the workers' broker users: STEM-1, STEM-2, ...",
        ),
    ] = "locker-cloud",
    workers: Annotated[
        int,
        typer.Option("--workers", min=1, help="How many workers get a user of their own."),
    ] = 2,
) -> None:
    """Print the ACL blocks of the cloud workers' users (once per broker, beside the cabinets').

    Each worker has a user of its own (STEM-1 ... STEM-N): the broker pins the client id to the
    user name, so a shared user would let one worker's connection close another's.
    """
    from cloud.services.registry import (
        RegistryError,
        mosquitto_cloud_acl_lines,
        worker_mqtt_users,
    )

    try:
        users = worker_mqtt_users(user, workers)
    except RegistryError as err:
        _bad_input(err)
    typer.echo("\n\n".join(mosquitto_cloud_acl_lines(name) for name in users))


def mosquitto_config(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Folder to write `passwd` and `acl` into (made if missing; files replaced).",
            file_okay=False,
        ),
    ],
    cloud_user: Annotated[
        str,
        typer.Option(
            "--cloud-user",
            help="The stem of the workers' broker users: STEM-1, STEM-2, ...",
        ),
    ] = "locker-cloud",
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="How many workers get a user of their own (worker n: --mqtt-username STEM-n).",
        ),
    ] = 2,
    database_url: DatabaseUrl = None,
) -> None:
    """Write Mosquitto's password file and ACL for every cabinet in the registry.

    Each cabinet gets the user, password hash and ACL block `cabinet add` printed for it (its
    own topics only); each of the cloud's workers gets a user of its own, STEM-1 ... STEM-N,
    for every cabinet's topics (shared subscriptions included), with the password from
    LOCKER_CLOUD_MQTT_PASSWORD, the one the workers log in with. The broker pins each client id
    to its user name (`use_username_as_clientid`), so workers must not share a user. Point
    mosquitto.conf's `password_file` and `acl_file` at the two files (deploy/compose/mosquitto.conf
    does) and send the broker SIGHUP to reload them after adding a cabinet. `passwd` is written
    mode 0600: give it to the broker's user (uid 1883 in the eclipse-mosquitto image).
    """
    from cloud.services.registry import RegistryError, mosquitto_auth, worker_mqtt_users
    from cloud.settings import CloudSettings

    settings = CloudSettings()
    try:
        users = worker_mqtt_users(cloud_user, workers)
    except RegistryError as err:
        _bad_input(err)
    shown = ", ".join(repr(user) for user in users)
    if settings.mqtt_password is None or not settings.mqtt_password.get_secret_value():
        _bad_input(
            "set LOCKER_CLOUD_MQTT_PASSWORD to the workers' broker password: the workers' users "
            f"{shown} go into the password file with it"
        )
    password = settings.mqtt_password.get_secret_value()
    with _registry(database_url) as session:
        auth = mosquitto_auth(session=session, cloud_users=users, cloud_password=password)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_replacing(out / "passwd", auth.password_file, mode=0o600)
        _write_replacing(out / "acl", auth.acl_file, mode=0o644)
    except OSError as err:
        typer.echo(f"error: cannot write into {out}: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(
        f"wrote {out / 'passwd'} and {out / 'acl'}: the workers' users {shown} and "
        f"{len(auth.cabinets)} cabinet(s)"
    )
    if auth.without_password:
        typer.echo(
            f"warning: left out {len(auth.without_password)} cabinet(s) with no MQTT password: "
            f"{', '.join(auth.without_password)}",
            err=True,
        )
    typer.echo("reload the broker to apply them: kill -HUP <mosquitto's pid>")


def _write_replacing(path: Path, text: str, *, mode: int) -> None:
    """Write `text` to `path` through a temporary file and a rename, so a broker reloading at
    that moment reads the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.chmod(tmp, mode)  # the umask may have taken bits off
    os.replace(tmp, path)


def daemon_config(
    layout: Mapping[str, Any],
    *,
    cabinet_id: str,
    code_key: str,
    mqtt_password: str,
    broker_host: str | None = None,
    broker_port: int | None = None,
) -> dict[str, Any]:
    """Return the cabinet daemon's config: the layout file's settings with its identity added."""
    config = copy.deepcopy(dict(layout))
    config.pop("code_key_file", None)  # the key is given here; two sources would be ambiguous
    config["cabinet_id"] = cabinet_id
    config["code_key"] = code_key
    mqtt = config.setdefault("mqtt", {})
    mqtt["username"] = cabinet_id
    mqtt["password"] = mqtt_password
    if broker_host:
        mqtt["host"] = broker_host
    if broker_port:
        mqtt["port"] = broker_port
    mqtt.setdefault("host", "localhost")
    if "port" not in mqtt and not _loopback(mqtt["host"]):
        # A broker on another host is reached over TLS only (deploy/compose publishes 8883 and
        # keeps 1883 on its own host): the system's CAs unless the layout names `[mqtt.tls] ca`.
        mqtt["port"] = 8883
        mqtt.setdefault("tls", {})
    mqtt.setdefault("port", 1883)
    return config


def _loopback(host: str) -> bool:
    return host == "localhost" or host == "::1" or host.startswith("127.")


# --- couriers -------------------------------------------------------------------------------------


@courier_app.command("add")
def courier_add(
    courier_id: Annotated[str, typer.Argument(metavar="ID", help="The courier's id.")],
    carrier: Annotated[str, typer.Option("--carrier", help="Who they deliver for.")],
    site: Annotated[str, typer.Option("--site", help="Their cabinets get the courier.")],
    name: Annotated[str, typer.Option("--name")] = "",
    pin: Annotated[
        str | None,
        typer.Option("--pin", help="4-12 digits. Default: asked for, hidden.", show_default=False),
    ] = None,
    phone: Annotated[
        str | None,
        typer.Option(
            "--phone",
            help=(
                "The courier's mobile, told by SMS when a parcel of theirs expires and must be "
                "taken back (E.164, or a Chinese national number). Default: none, not told."
            ),
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a courier and push them (`couriers.put`) to every cabinet of the site."""
    from cloud.core.phones import mask_phone
    from cloud.services.registry import add_courier, courier_phone

    if pin is None:
        pin = typer.prompt("PIN", hide_input=True, confirmation_prompt=True)
    with _registry(database_url) as session:
        cabinets = add_courier(
            session=session,
            courier_id=courier_id,
            carrier=carrier,
            name=name,
            pin=pin,
            site_id=site,
            now=_now(),
            phone=phone,
        )
        stored = courier_phone(session=session, courier_id=courier_id)
    told = f", told at {mask_phone(stored)} when a parcel expires" if stored else ""
    typer.echo(f"courier {courier_id} added{told}; pushed to {len(cabinets)} cabinet(s)")


# --- ERP API keys ---------------------------------------------------------------------------------


@erp_key_app.command("add")
def erp_key_add(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key id.")],
    name: Annotated[str, typer.Option("--name", help="Who holds the key.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Add an ERP API key and print it once (the cloud keeps only its hash).

    The ERP sends it in the X-API-Key header, e.g. to `POST /api/v1/shipments`.
    """
    from cloud.services.registry import add_erp_key

    with _registry(database_url) as session:
        credentials = add_erp_key(session=session, key_id=key_id, name=name, now=_now())
    typer.echo(f"ERP key {key_id} added; it is shown only now:")
    typer.echo(credentials.key)


# --- a small TOML writer (the standard library only reads TOML) -----------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def to_toml(data: Mapping[str, Any]) -> str:
    """Return `data` as TOML: scalars, lists of scalars, tables and arrays of tables."""
    return "\n".join(_table(data, ())).strip() + "\n"


def _table(data: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[str]:
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    arrays = {k: v for k, v in data.items() if _is_array_of_tables(v)}
    for key, value in data.items():
        if key not in tables and key not in arrays:
            yield f"{_key(key)} = {_value(value)}"
    for key, value in tables.items():
        sub = (*path, key)
        if not value or any(
            not isinstance(v, Mapping) and not _is_array_of_tables(v) for v in value.values()
        ):
            yield ""
            yield f"[{'.'.join(map(_key, sub))}]"
        yield from _table(value, sub)
    for key, items in arrays.items():
        sub = (*path, key)
        for item in items:
            yield ""
            yield f"[[{'.'.join(map(_key, sub))}]]"
            yield from _table(item, sub)


def _is_array_of_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
