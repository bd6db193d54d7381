"""`locker demo`: the README's main job: the whole system on this machine, or its scripted story."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from datetime import datetime
from datetime import time as wall_time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from locker.demo.stack import (
    COURIERS,
    DemoError,
    DemoInfo,
    DemoStack,
    Options,
    default_data_dir,
)

# `locker demo`'s options, named so its signature reads as a list.
CabinetsOption = Annotated[
    int, typer.Option("--cabinets", min=1, max=20, help="How many simulated cabinets.")
]
DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Folder for the demo's database, cabinet journals, configs and logs; emptied "
        "at each start (only if the demo made it). Default: "
        "~/.local/share/parcel-lockers/demo.",
        show_default=False,
    ),
]
BrokerOption = Annotated[
    str | None,
    typer.Option(
        "--broker",
        help="A real MQTT broker, mqtt://HOST[:PORT], instead of the embedded one. It must "
        "accept the cabinets' credentials (the demo writes the Mosquitto password and ACL "
        "lines into DATA/mosquitto/).",
        show_default=False,
    ),
]
HttpPortOption = Annotated[
    int,
    typer.Option(
        "--http-port",
        min=0,
        max=65535,
        help="The cloud API's port. The notices page is on the next port, kiosks on "
        "+11, +12, ..., simulator controls on +41, +42, ...; 0 picks free ports.",
    ),
]
StoryOption = Annotated[
    bool,
    typer.Option(
        "--story",
        help="Run the scripted story end to end, print each step and what it checked, "
        "then stop; exit 0 only if every step held.",
    ),
]
LanguageOption = Annotated[
    str, typer.Option("--language", help="Of the notices and kiosks: zh-CN or en.")
]
SiteTimeOption = Annotated[
    str | None,
    typer.Option(
        "--site-time",
        metavar="HH:MM",
        help="Start the cloud workers' clock at this time of day in the site's zone "
        "(Asia/Shanghai), e.g. 23:30 to see the night; default: the real time.",
        show_default=False,
    ),
]


def demo(
    cabinets: CabinetsOption = 2,
    data: DataOption = None,
    broker: BrokerOption = None,
    http_port: HttpPortOption = 8000,
    story: StoryOption = False,
    language: LanguageOption = "zh-CN",
    site_time: SiteTimeOption = None,
    enrol: Annotated[
        bool,
        typer.Option(
            "--enrol",
            help="The last cabinet enrols from a one-time code (`locker cabinet enrol`) "
            "instead of getting its config written for it (docs/enrolment.md).",
        ),
    ] = False,
) -> None:
    """Run the whole system on this machine: cloud, broker, simulated cabinets with kiosks.

    Starts an embedded MQTT broker (amqtt) unless --broker names one; the cloud's API and
    worker on SQLite in the data folder; and per cabinet a lock-board simulator, the cabinet
    daemon and its kiosk. Notices go to local stand-ins for Twilio and WeChat, shown on the
    notices page: deposit a parcel at a kiosk as a courier, read the pickup code there, and
    pick the parcel up at the kiosk with it. Every URL and credential is printed.

    Ctrl-C (or SIGTERM) stops everything; nothing is left running.

    `locker demo --story` instead runs a scripted story (a shipment announced by the ERP, a
    courier deposit, the notice and its code, a pickup with the ERP's verified webhooks and the
    carrier's statement of the day, an expiry and the courier's retrieval, a jammed lock) and
    exits 0 only if every step held.
    """
    if language not in ("zh-CN", "en"):
        raise typer.BadParameter("must be zh-CN or en", param_hint="'--language'")
    start_at = _parse_site_time(site_time) if site_time is not None else None
    console = Console(soft_wrap=True, highlight=False)
    options = Options(
        data_dir=data or _default_data(console),
        cabinets=cabinets,
        http_port=http_port,
        broker_url=broker,
        # A real broker may want the cloud workers to log in: the usual variables say as whom.
        cloud_mqtt_username=os.environ.get("LOCKER_CLOUD_MQTT_USERNAME"),
        cloud_mqtt_password=os.environ.get("LOCKER_CLOUD_MQTT_PASSWORD"),
        language=language,
        site_time=start_at,
        register_webhook=not story,  # the story registers the receiver itself, as the ERP
        enrol=enrol,
    )
    code = _run(console, options, story)
    console.print("stopped: nothing is left running.")
    if code:
        sys.exit(code)


def _run(console: Console, options: Options, story: bool) -> int:
    """Start the stack, then run the story or wait for Ctrl-C/SIGTERM; stop it all; the code."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        raise KeyboardInterrupt  # unwinds whatever is starting; `finally` stops it all

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started_at = time.monotonic()
    stack = DemoStack(options, echo=lambda line: console.print(f"  [green]✓[/] {escape(line)}"))
    code = 0
    try:
        console.print(f"[bold]Parcel lockers demo[/]: data in {escape(str(stack.data_dir))}")
        with console.status("starting: broker, cloud, cabinets ...", spinner="dots"):
            info = stack.start()
        ready_s = time.monotonic() - started_at
        if story:
            from locker.demo.story import run_story

            console.print(f"ready in {ready_s:.1f} s; running the story\n")
            code = 0 if run_story(info, echo=console.print) else 1
        else:
            _print_info(console, info, ready_s)
            while not stopping.wait(0.5):
                pass
    except KeyboardInterrupt:
        console.print("\nstopping ...")
    except DemoError as err:
        console.print(f"[red]error:[/] {escape(str(err))}")
        code = 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        stack.stop()
    return code


def _default_data(console: Console) -> Path:
    """The demo folder under the user's home, or a temporary one where that cannot be made."""
    path = default_data_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        path = Path(tempfile.mkdtemp(prefix="locker-demo-"))
        console.print(f"cannot use {default_data_dir()} ({err}); using {path} instead")
    return path


def _print_info(console: Console, info: DemoInfo, ready_s: float) -> None:
    console.print(f"\n[bold green]Ready in {ready_s:.1f} s.[/] Open these:\n")
    urls = Table(show_header=True, header_style="bold")
    urls.add_column("what")
    urls.add_column("URL")
    for cabinet in info.cabinets:
        urls.add_row(f"kiosk of {cabinet.id} (touchscreen)", cabinet.kiosk_url)
    urls.add_row("notices (the SMS and WeChat messages sent)", info.notices_url)
    urls.add_row("doors (be the person at the cabinet: shut a door...)", info.doors_url)
    urls.add_row("cloud API docs (try it with the ERP key)", info.docs_url)
    urls.add_row(
        "ERP webhook receiver (the shop's webhooks, signatures verified)", info.erp_receiver_url
    )
    urls.add_row("operations console (sign in with an account below)", info.console_url)
    for cabinet in info.cabinets:
        urls.add_row(f"lock-board simulator of {cabinet.id}", f"{cabinet.sim_url}/state")
    console.print(urls)
    people = Table(show_header=True, header_style="bold", title="Credentials")
    people.add_column("who")
    people.add_column("id")
    people.add_column("PIN / key", overflow="fold")
    for courier_id, pin, carrier, name, _phone in COURIERS:
        people.add_row(f"courier ({carrier}, {name})", courier_id, pin)
    people.add_row("technician (kiosk maintenance screen)", "", info.technician_pin)
    people.add_row("ERP of the shop (X-API-Key header)", "demo-erp", info.erp_key)
    people.add_row("ERP of SF Express (its statement, 对账单)", "demo-sf", info.carrier_key)
    for username, (role, password) in info.console_accounts.items():
        who = "site manager" if role == "site_manager" else "operator admin"
        people.add_row(f"console {who} ({info.console_url})", username, password)
    console.print(people)
    phones = ", ".join(
        f"{phone} ({'WeChat' if channel == 'wechat' else 'SMS'})"
        for phone, channel in info.recipients.items()
    )
    console.print(
        "\nTry it: at a kiosk sign in as a courier, deposit a parcel for a recipient "
        f"(any valid mobile: {phones}),\nread the pickup code on the notices page, and type it "
        "on the kiosk to pick the parcel up.\nWhen a door springs open, put the parcel in and shut "
        f"the door on the doors page {info.doors_url}\n(or by hand: "
        f"`curl -X POST {info.cabinets[0].sim_url}/doors/1/19/close` shuts door A19).\n"
        f"The shop's ERP has registered webhook {info.erp_webhook_id}: each parcel change it "
        f"announced shows on {info.erp_receiver_url}, verified.\n"
        f"Time travel: `echo 259260 > {info.clock_offset_file}` moves the cloud workers 72 h "
        "ahead, so parcels in lockers expire.\n"
        f"Logs: {info.data_dir / 'logs'}   Everything above: {info.data_dir / 'demo.json'}\n"
    )
    console.print("[bold]Ctrl-C stops the demo.[/]")


def _parse_site_time(text: str) -> wall_time:
    try:
        return datetime.strptime(text.strip(), "%H:%M").time()
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a time of day as HH:MM (e.g. 23:30)", param_hint="'--site-time'"
        ) from None
