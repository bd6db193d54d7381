"""`locker cloud cabinet enrol-code|config-push`: zero-touch enrolment and config push.

`cabinet add --enrol` (locker/cloud_registry_command.py) ends here too: instead of a TOML full
of secrets for an installer to copy, the operator gets a one-time code and its QR.
"""

from __future__ import annotations

import io
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from locker.cloud_registry_command import (
    DatabaseUrl,
    _bad_input,
    _now,
    _registry,
    cabinet_app,
    daemon_config,
)

ExpiresH = Annotated[
    float,
    typer.Option(
        "--expires-h", min=0.02, max=90 * 24, help="Hours the code stays valid (default a week)."
    ),
]


def read_layout(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        _bad_input(f"cannot read the layout {path}: {err}")


def layout_body(
    parsed: Mapping[str, Any], *, cabinet_id: str, broker_host: str | None, broker_port: int | None
) -> dict[str, Any]:
    """The config body a layout file makes: `cabinet add`'s daemon config less its secrets."""
    from protocol.config_push import config_body

    config = daemon_config(
        parsed,
        cabinet_id=cabinet_id,
        code_key="",
        mqtt_password="",
        broker_host=broker_host,
        broker_port=broker_port,
    )
    return config_body(config)


def qr_text(text: str) -> str:
    """`text` as a QR drawn with block characters, for a terminal (dark modules on light)."""
    import qrcode

    qr = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(text)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


def print_code(cabinet_id: str, code: str, expires_at: Any, cloud_url: str | None) -> None:
    typer.echo(
        f"enrolment code for cabinet {cabinet_id} "
        f"(one use; valid until {expires_at:%Y-%m-%d %H:%M} UTC):"
    )
    typer.echo("")
    typer.echo(f"    {code}")
    typer.echo("")
    typer.echo(qr_text(code))
    cloud = cloud_url or "https://YOUR-CLOUD"
    typer.echo("on the cabinet:")
    typer.echo(f"    locker cabinet enrol --cloud {cloud} --code {code} \\")
    typer.echo("        --config /etc/locker/cabinet.toml")
    typer.echo(
        "then reload the broker's users: `locker cloud mosquitto-config --out DIR` and "
        "kill -HUP <mosquitto's pid> (the cabinet's new MQTT password is in them already)"
    )


def issue_and_print(
    *,
    cabinet_id: str,
    database_url: str | None,
    body: Mapping[str, Any] | None,
    expires_h: float,
) -> None:
    from cloud.services.enrolment import issue_code
    from locker.cloud_settings import cloud_settings

    settings = cloud_settings(need_secret=True)
    seal_key = settings.require_secret_key()
    with _registry(database_url) as session:
        issued = issue_code(
            session=session,
            cab=cabinet_id,
            seal_key=seal_key,
            now=_now(),
            body=body,
            lifetime=timedelta(hours=expires_h),
        )
    print_code(issued.cabinet_id, issued.code, issued.expires_at, settings.base_url)


@cabinet_app.command("enrol-code")
def enrol_code(
    cabinet_id: Annotated[str, typer.Argument(metavar="ID", help="The cabinet's id.")],
    layout: Annotated[
        Path | None,
        typer.Option(
            "--layout",
            help="Its layout file, if the cabinet has no config in the cloud yet (one added "
            "without --enrol).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    broker_host: Annotated[
        str | None, typer.Option("--broker-host", help="With --layout: the broker's host.")
    ] = None,
    broker_port: Annotated[int | None, typer.Option("--broker-port", min=1, max=65535)] = None,
    expires_h: ExpiresH = 7 * 24,
    database_url: DatabaseUrl = None,
) -> None:
    """Print a new one-time enrolment code (and its QR) for a registered cabinet.

    The cabinet's daemon, started with only this code and the cloud's address (`locker cabinet
    enrol`), receives its MQTT credentials, pickup-code key and config over HTTPS and keeps them
    in a 0600 file. The code works once; a new code retires the cabinet's older ones and mints a
    new MQTT password (so it also serves to re-enrol a cabinet whose computer was replaced):
    regenerate the broker's password file afterwards (`locker cloud mosquitto-config`).
    """
    body = None
    if layout is not None:
        body = layout_body(
            read_layout(layout),
            cabinet_id=cabinet_id,
            broker_host=broker_host,
            broker_port=broker_port,
        )
    issue_and_print(
        cabinet_id=cabinet_id, database_url=database_url, body=body, expires_h=expires_h
    )


@cabinet_app.command("config-push")
def config_push(
    cabinet_id: Annotated[str, typer.Argument(metavar="ID", help="The cabinet's id.")],
    layout: Annotated[
        Path,
        typer.Option(
            "--layout",
            help="The new config: a layout file as for `cabinet add` (no secrets in it).",
            exists=True,
            dir_okay=False,
        ),
    ],
    broker_host: Annotated[str | None, typer.Option("--broker-host")] = None,
    broker_port: Annotated[int | None, typer.Option("--broker-port", min=1, max=65535)] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Push a new config (layout, buses, boards, settings) to an enrolled cabinet.

    It is stored as the cabinet's next version and sent as `config.put` with its SHA-256. The
    daemon checks it, writes it atomically (temporary file and rename), restarts on it, and
    goes back to the last good config if its doors do not come up; its birth names the hash it
    runs (`config_sha256`), so `locker cloud ...` and the console can tell whether it took.
    """
    from cloud.services.enrolment import push_config

    body = layout_body(
        read_layout(layout), cabinet_id=cabinet_id, broker_host=broker_host, broker_port=broker_port
    )
    with _registry(database_url) as session:
        version, sha = push_config(session=session, cab=cabinet_id, body=body, now=_now())
    typer.echo(f"config v{version} ({sha}) queued for cabinet {cabinet_id}")
