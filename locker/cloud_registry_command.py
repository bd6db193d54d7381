"""`locker cloud site|cabinet|courier|carrier|erp-key|account`: the registry from the command line.

Whoever runs these holds the database's credentials: each change is recorded in the audit log
as an operator admin's act, named `cli:<OS user>` (cloud.services.audit.cli_principal).
"""

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
carrier_app = typer.Typer(help="Carriers (courier companies).", no_args_is_help=True)
account_app = typer.Typer(
    help="Console accounts: operator admins, site managers, carriers.", no_args_is_help=True
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
    from locker.cloud_settings import cloud_settings

    engine = make_engine(database_url or cloud_settings(need_secret=False).database_url)
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
    quiet_hours: Annotated[
        str,
        typer.Option(
            "--quiet-hours",
            metavar="HH:MM-HH:MM|none",
            help="Local times between which reminders and expiry texts wait (the deposit "
            "notice and a code resend never do); `none` for no quiet hours.",
        ),
    ] = "22:00-08:00",
    sms_signature: Annotated[
        str,
        typer.Option(
            "--sms-signature",
            help="The sender's name Chinese texts start with, as 【滨江快递柜】 (give it without "
            "the brackets; Chinese carriers require one). Default: none.",
        ),
    ] = "",
    sms_signature_en: Annotated[
        str,
        typer.Option(
            "--sms-signature-en",
            help="The same for English texts, as [Riverside Lockers] (plain letters). "
            "Default: none.",
        ),
    ] = "",
    offline_alarm_min: Annotated[
        float,
        typer.Option(
            "--offline-alarm-min",
            min=1,
            max=7 * 24 * 60,
            help="A cabinet offline this many minutes raises a critical alarm (its managers "
            "are told, after the quiet hours).",
        ),
    ] = 10,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a site with its pickup policy; `site show` prints it back."""
    from cloud.core.errors import PolicyError
    from cloud.core.policies import parse_quiet_hours
    from cloud.db.models import SiteCreate
    from cloud.services.registry import add_site

    reminder_s = round(reminder_before_h * 3600) or None
    try:
        quiet_start, quiet_end = parse_quiet_hours(quiet_hours)
        site_create = SiteCreate(
            id=site_id,
            name=name,
            timezone=timezone,
            language=language,
            pickup_window_s=round(pickup_window_h * 3600),
            reminder_before_s=reminder_s,
            code_length=code_length,
            quiet_start=quiet_start,
            quiet_end=quiet_end,
            sms_signature=sms_signature,
            sms_signature_en=sms_signature_en,
            offline_alarm_s=round(offline_alarm_min * 60),
        )
    except (PolicyError, ValueError) as err:
        _bad_input(err)
    with _registry(database_url) as session:
        add_site(session=session, site_create=site_create, now=_now())
    typer.echo(f"site {site_id} added")


@site_app.command("show")
def site_show(
    site_id: Annotated[str, typer.Argument(metavar="ID", help="The site's id.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Print a site's policy as it is stored (what its cabinets and notices run by)."""
    from cloud.core.policies import format_quiet_hours
    from cloud.db.models import Site

    with _registry(database_url) as session:
        site = session.get(Site, site_id)
        if site is None:
            _bad_input(f"no site {site_id!r}")
        reminder = (
            "none" if site.reminder_before_s is None else f"{site.reminder_before_s / 3600:g} h"
        )
        rows = {
            "site": site.id,
            "name": site.name,
            "timezone": site.timezone,
            "language": site.language,
            "pickup window": f"{site.pickup_window_s / 3600:g} h",
            "reminder before": reminder,
            "quiet hours": format_quiet_hours(site.quiet_start, site.quiet_end),
            "code length": str(site.code_length),
            "SMS signature": f"【{site.sms_signature}】" if site.sms_signature else "none",
            "SMS signature (en)": (
                f"[{site.sms_signature_en}]" if site.sms_signature_en else "none"
            ),
            "offline alarm": f"{site.offline_alarm_s / 60:g} min",
        }
    width = max(map(len, rows))
    for label, value in rows.items():
        typer.echo(f"{label + ':':<{width + 1}} {value}")


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
    name_en: Annotated[
        str,
        typer.Option("--name-en", help="Its name in English texts and pages (default: --name)."),
    ] = "",
    address_en: Annotated[
        str, typer.Option("--address-en", help="Its address in English (default: --address).")
    ] = "",
    broker_host: Annotated[
        str | None, typer.Option("--broker-host", help="The broker the cabinet connects to.")
    ] = None,
    broker_port: Annotated[int | None, typer.Option("--broker-port", min=1, max=65535)] = None,
    enrol: Annotated[
        bool,
        typer.Option(
            "--enrol",
            help="Print a one-time enrolment code and its QR instead of the daemon config: the "
            "cabinet fetches its credentials and config itself (`locker cabinet enrol`).",
        ),
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a cabinet and its compartments; print its daemon config, password and ACL lines.

    The secrets are printed once and kept by the cloud only as it needs them: the code key
    (to hash pickup codes), sealed under LOCKER_CLOUD_SECRET_KEY, and the MQTT password's hash.
    With --enrol no secret is printed: a one-time code is (docs/enrolment.md).
    """
    from cloud.db.models import CabinetCreate
    from cloud.services.registry import (
        add_cabinet,
        layout_compartments,
        mosquitto_acl_lines,
    )
    from locker.cloud_settings import cloud_settings

    seal_key = cloud_settings(need_secret=True).require_secret_key()

    try:
        parsed = tomllib.loads(layout.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        _bad_input(f"cannot read the layout {layout}: {err}")
    with _registry(database_url) as session:
        compartments = layout_compartments(parsed)
        cabinet_create = CabinetCreate(
            id=cabinet_id,
            site_id=site,
            name=name or cabinet_id,
            address=address,
            name_en=name_en,
            address_en=address_en,
        )
        credentials = add_cabinet(
            session=session,
            cabinet_create=cabinet_create,
            compartments=compartments,
            now=_now(),
            seal_key=seal_key,
        )
    if enrol:
        from locker.cloud_enrol_command import issue_and_print, layout_body

        body = layout_body(
            parsed, cabinet_id=cabinet_id, broker_host=broker_host, broker_port=broker_port
        )
        issue_and_print(
            cabinet_id=cabinet_id, database_url=database_url, body=body, expires_h=7 * 24
        )
        return
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
    from locker.cloud_settings import cloud_settings

    settings = cloud_settings(need_secret=False)
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
    site: Annotated[
        list[str] | None,
        typer.Option("--site", help="A site it may announce for and see (repeat for more)."),
    ] = None,
    carrier: Annotated[
        str | None,
        typer.Option("--carrier", help="The carrier it acts for.", show_default=False),
    ] = None,
    merchant: Annotated[
        str | None,
        typer.Option("--merchant", help="Or the merchant it acts for (an id).", show_default=False),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Add an ERP API key bound to one carrier or merchant and its sites; print it once.

    The key sees and changes only its own shipments (announced under its carrier or merchant)
    and the cabinets of its sites. The ERP sends it in the X-API-Key header, e.g. to
    `POST /api/v1/shipments`. The cloud keeps only its hash.
    """
    from cloud.services.registry import add_erp_key

    with _registry(database_url) as session:
        credentials = add_erp_key(
            session=session,
            key_id=key_id,
            name=name,
            now=_now(),
            carrier_id=carrier,
            merchant_id=merchant,
            site_ids=site or (),
        )
    typer.echo(f"ERP key {key_id} added; it is shown only now:")
    typer.echo(credentials.key)


@erp_key_app.command("revoke")
def erp_key_revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke an ERP API key: the API refuses it from now on."""
    from cloud.services.registry import revoke_erp_key

    with _registry(database_url) as session:
        revoke_erp_key(session=session, key_id=key_id, reason=reason, now=_now())
    typer.echo(f"ERP key {key_id} revoked")


# --- carriers -------------------------------------------------------------------------------------


@carrier_app.command("add")
def carrier_add(
    carrier_id: Annotated[
        str, typer.Argument(metavar="ID", help="As its couriers' --carrier names it.")
    ],
    name: Annotated[str, typer.Option("--name", help="Default: the id.")] = "",
    database_url: DatabaseUrl = None,
) -> None:
    """Add a carrier (a courier's first registration adds its carrier too)."""
    from cloud.services.registry import add_carrier

    with _registry(database_url) as session:
        add_carrier(session=session, carrier_id=carrier_id, name=name, now=_now())
    typer.echo(f"carrier {carrier_id} added")


# --- console accounts -----------------------------------------------------------------------------


@account_app.command("add")
def account_add(
    username: Annotated[str, typer.Argument(metavar="USERNAME")],
    role: Annotated[
        str,
        typer.Option("--role", help="operator_admin, site_manager or carrier."),
    ],
    site: Annotated[
        list[str] | None,
        typer.Option("--site", help="A site manager's site (repeat for more)."),
    ] = None,
    carrier: Annotated[
        str | None,
        typer.Option("--carrier", help="A carrier account's carrier.", show_default=False),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from standard input's first line."
        ),
    ] = False,
    phone: Annotated[
        str | None,
        typer.Option(
            "--phone",
            help="A site manager's mobile: new critical alarms are sent there (WeChat if the "
            "phone is bound, else SMS), outside the site's quiet hours.",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a console account. The password is asked for (hidden) or read from stdin, never
    taken from the command line, where `ps` and the shell history would show it."""
    import sys

    from cloud.services.accounts import add_account

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with _registry(database_url) as session:
        account = add_account(
            session=session,
            username=username,
            role=role,
            password=password,
            now=_now(),
            site_ids=site or (),
            carrier_id=carrier,
            phone=phone,
        )
    bound = ""
    if account.site_ids:
        bound = f" for site(s) {', '.join(account.site_ids)}"
    elif account.carrier_id:
        bound = f" for carrier {account.carrier_id}"
    typer.echo(f"account {username} added: {account.role}{bound}")


Reason = Annotated[
    str, typer.Option("--reason", help="Why (kept in the audit log).", show_default=False)
]


@account_app.command("set-role")
def account_set_role(
    username: Annotated[str, typer.Argument(metavar="USERNAME")],
    role: Annotated[str, typer.Option("--role", help="operator_admin, site_manager or carrier.")],
    reason: Reason,
    site: Annotated[
        list[str] | None, typer.Option("--site", help="A site manager's site (repeatable).")
    ] = None,
    carrier: Annotated[
        str | None,
        typer.Option("--carrier", help="A carrier account's carrier.", show_default=False),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Give an account another role and binding (its sites or carrier are replaced)."""
    from cloud.services.accounts import change_account

    with _registry(database_url) as session:
        account = change_account(
            session=session,
            username=username,
            now=_now(),
            role=role,
            site_ids=site or (),
            carrier_id=carrier,
            reason=reason,
        )
    scope = ", ".join(account.site_ids) or account.carrier_id or "everything"
    typer.echo(f"account {username} is now {account.role} ({scope})")


def _set_disabled(username: str, disabled: bool, reason: str, database_url: str | None) -> None:
    from cloud.services.accounts import change_account

    with _registry(database_url) as session:
        change_account(
            session=session, username=username, now=_now(), disabled=disabled, reason=reason
        )
    typer.echo(f"account {username} {'disabled' if disabled else 'enabled'}")


@account_app.command("disable")
def account_disable(
    username: Annotated[str, typer.Argument(metavar="USERNAME")],
    reason: Reason,
    database_url: DatabaseUrl = None,
) -> None:
    """Disable an account: it can no longer sign in (kept for the audit log)."""
    _set_disabled(username, True, reason, database_url)


@account_app.command("enable")
def account_enable(
    username: Annotated[str, typer.Argument(metavar="USERNAME")],
    reason: Reason,
    database_url: DatabaseUrl = None,
) -> None:
    """Enable a disabled account again."""
    _set_disabled(username, False, reason, database_url)


@account_app.command("totp")
def account_totp(
    username: Annotated[str, typer.Argument(metavar="USERNAME")],
    database_url: DatabaseUrl = None,
) -> None:
    """Give an account a second factor (TOTP, RFC 6238) and print its provisioning URI and QR.

    Scan the QR (or paste the URI) into an authenticator app; from then on the console's
    sign-in asks for the app's 6-digit code. Running it again replaces the secret (a lost
    phone): the old app's codes stop working. The secret is kept sealed under the secret key.
    """
    import io

    import qrcode

    from cloud.errors import NotFound
    from cloud.services.audit import cli_principal
    from cloud.services.console_auth import enrol_totp
    from locker.cloud_settings import cloud_settings

    secret_key = cloud_settings(need_secret=True).require_secret_key()
    with _registry(database_url) as session:
        try:
            uri = enrol_totp(
                session=session, username=username, secret_key=secret_key, now=_now(),
                actor=cli_principal(),
            )  # fmt: skip
        except NotFound as err:
            _bad_input(err)
    qr = qrcode.QRCode(border=1)
    qr.add_data(uri)
    drawn = io.StringIO()
    qr.print_ascii(out=drawn, invert=True)
    typer.echo(drawn.getvalue())
    typer.echo(uri)
    typer.echo(
        f"account {username}: scan this into an authenticator app; sign-in now asks for its code"
    )


@account_app.command("list")
def account_list(database_url: DatabaseUrl = None) -> None:
    """List the console accounts: username, role, sites or carrier, enabled or not."""
    from cloud.services.accounts import list_accounts

    with _registry(database_url) as session:
        accounts = list_accounts(session=session)
    if not accounts:
        typer.echo("no accounts")
    for a in accounts:
        scope = ",".join(a.site_ids) or a.carrier_id or "-"
        state = "disabled" if a.disabled else "enabled"
        typer.echo(f"{a.username}\t{a.role}\t{scope}\t{state}")


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
