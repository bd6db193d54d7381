"""The `locker` command: one entry point that wires the cabinet, the cloud and the simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from locker import bench_command, cabinet_command, cloud_command
from locker.chaos_command import chaos
from locker.demo_command import demo
from locker.sim_command import sim

app = typer.Typer(
    help=(
        "Smart parcel lockers, edge and cloud.\n\n"
        "Each locker cabinet runs a daemon that drives its doors (RS485 lock boards or GPIO), "
        "shows a touchscreen kiosk and keeps a local journal, so deposits and pickups work "
        "offline. Cabinets talk to the cloud over MQTT (topics `lockers/v1/{cab}/...`). The "
        "cloud issues pickup codes, sends SMS / WeChat notices, handles expiry and returns, "
        "serves the ERP and the property managers' dashboard.\n\n"
        "Start with `locker demo`: the whole system on this machine (cloud, broker, simulated "
        "cabinets with their kiosks), with every URL and credential printed; `locker demo "
        "--story` plays a scripted day end to end. `locker protocol schema DIR` exports the "
        "cabinet-cloud contract."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

protocol_app = typer.Typer(
    help="The wire contracts: the MQTT messages between cabinet and cloud.",
    no_args_is_help=True,
)
app.add_typer(protocol_app, name="protocol")
app.command(name="demo")(demo)
app.command(name="sim")(sim)
app.command(name="chaos")(chaos)
app.add_typer(cabinet_command.app, name="cabinet")
app.add_typer(cloud_command.app, name="cloud")
app.add_typer(bench_command.app, name="bench")


@protocol_app.command("schema")
def protocol_schema(
    out_dir: Annotated[
        Path,
        typer.Argument(help="Folder to write the JSON Schema files into (created if missing)."),
    ],
) -> None:
    """Write the JSON Schema of every cabinet-cloud message into OUT_DIR.

    One file per event type, command type and payload (state, ack, event-ack), plus index.json
    naming the MQTT topic each travels on, so firmware written in another language can follow
    the contract and validate what it sends.
    """
    from protocol.schema import write_schemas

    written = write_schemas(out_dir)
    typer.echo(f"wrote {len(written)} schema files to {out_dir}")


@protocol_app.command("asyncapi")
def protocol_asyncapi(
    out_file: Annotated[
        Path,
        typer.Argument(
            help="File to write the AsyncAPI document to (JSON), e.g. docs/asyncapi.json."
        ),
    ],
    schemas_ref: Annotated[
        str,
        typer.Option(help="Where the JSON Schema files are, relative to OUT_FILE."),
    ] = "schemas/",
) -> None:
    """Write the AsyncAPI 3.0 document of the cabinet-cloud MQTT contract to OUT_FILE.

    Channels, operations (from the cloud's side), QoS and retain bindings; each message's
    payload refers to its JSON Schema file (`locker protocol schema`), so write those beside it.
    """
    from protocol.asyncapi import write_asyncapi

    typer.echo(f"wrote {write_asyncapi(out_file, schemas_ref)}")


def main() -> None:  # pragma: no cover - console-script entry
    app()
