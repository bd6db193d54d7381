"""The demo's parts as real processes: the same commands production runs, wired on one machine.

    locker demo (this process)
      ├─ embedded MQTT broker (amqtt, a thread)  ── or a real broker named by --broker
      ├─ notice sinks: fake Twilio, fake WeChat, the notices page (threads)
      ├─ the reference ERP receiver: the shop's webhooks, verified, on a page (a thread)
      ├─ locker cloud serve      the API, on SQLite in the data folder (or --database-url)
      ├─ locker cloud worker     one (plain subscriptions), or several sharing $share/cloud
      └─ per cabinet: locker sim (its lock board on a pty)  +  locker cabinet run (daemon, kiosk)

`DemoStack.prepare()` makes the data folder, migrates the database and seeds the demo data (a
site, cabinets with their credentials and daemon configs, couriers with PINs, the shop's ERP key,
SF Express's key and its prices);
`start()` starts the processes and returns once every cabinet is online in the cloud with its
couriers delivered; `stop()` stops them in reverse order (SIGTERM, then SIGKILL after a grace
period) and reaps every one. Each child runs in a session of its own, so a Ctrl-C reaches only
this process, which then stops the children in order; on Linux each child also gets SIGTERM if
this process dies without cleaning up (PR_SET_PDEATHSIG), so nothing is ever left running.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from datetime import time as wall_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from locker.demo.broker import EmbeddedBroker
from locker.demo.doors_page import SimulatedCabinet
from locker.demo.erp_receiver import KEPT, ErpReceiver
from locker.demo.sinks import NoticeSinks, demo_openid
from locker.harness.ports import free_port, port_free
from locker.harness.processes import clean_env, stop_all

MARKER = ".locker-demo"  # a data folder holding it was made by the demo and may be reset
HOST = "127.0.0.1"
CLOUD_MQTT_USER = "locker-cloud"
STOP_GRACE_S = 10.0
READY_TIMEOUT_S = 60.0
# A 24-door cabinet as deploy/cabinet-rs485-24.toml wires it: XL and L low, then M, then S.
DOOR_SIZES = ("XL",) * 2 + ("L",) * 4 + ("M",) * 12 + ("S",) * 6
LOW_DOORS = 6
SITE_ID = "riverside"
SITE_TIMEZONE = "Asia/Shanghai"
# Recipients of the demo: the first is bound to WeChat (its notices go there), others get SMS.
WECHAT_PHONE = "+8613800138000"
SMS_PHONE = "+8613900139000"
COURIERS = (  # id, PIN, carrier, name, phone (told at expiry to take a parcel back)
    ("sf-001", "135790", "SF Express", "Li Wei 李伟", "+8613700137001"),
    ("jd-002", "246802", "JD Logistics", "Wang Fang 王芳", "+8613700137002"),
)
ERP_KEY_ID = "demo-erp"
ERP_MERCHANT_ID = "demo-shop"
# SF Express's own key: it reads its couriers' statement (对账单), priced per door size in fen.
CARRIER_KEY_ID = "demo-sf"
CARRIER = COURIERS[0][2]
PRICES_MINOR = {"S": 50, "M": 80, "L": 120, "XL": 150}
TECHNICIAN_PIN = "975310"  # the kiosk's maintenance screen
# The operations console's demo accounts (their passwords are made each run and printed).
CONSOLE_MANAGER = "manager"
CONSOLE_OPERATOR = "operator"

Echo = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo cannot start: a taken port, a foreign data folder, a part that did not come up."""


def default_data_dir() -> Path:
    """`<the cloud's data dir>/demo`, under the user's home."""
    from cloud.settings import default_data_dir as cloud_data_dir

    return cloud_data_dir() / "demo"


@dataclass
class Options:
    """How to run the demo."""

    data_dir: Path
    cabinets: int = 2
    http_port: int = 8000  # the API; the notices page, kiosks and simulators follow it
    broker_url: str | None = None  # None: the embedded broker
    database_url: str | None = None  # None: SQLite in data_dir
    workers: int = 1
    shared: bool | None = None  # None: shared subscriptions on a named broker only
    cloud_mqtt_username: str | None = None
    cloud_mqtt_password: str | None = None
    language: str = "zh-CN"
    # The site's wall-clock time the cloud workers start at (None: the real time). Tests run
    # the story at a night and at a day hour this way, so an hour-dependence fails at any hour.
    site_time: wall_time | None = None
    # Register the ERP receiver as the shop's webhook endpoint at start (the interactive demo);
    # the story registers it itself, as an ERP would.
    register_webhook: bool = False
    # The last cabinet enrols from a one-time code (`locker cabinet enrol --run`) instead of
    # getting its config written for it (docs/enrolment.md).
    enrol: bool = False


@dataclass
class CabinetInfo:
    """One demo cabinet and where to reach it."""

    id: str
    name: str
    kiosk_url: str
    sim_url: str
    dir: Path
    config_path: Path
    tty_link: Path
    doors: list[dict[str, Any]]  # id, size, low_door, board, channel
    mqtt_password: str = field(repr=False)
    password_file_line: str = field(repr=False)
    acl: str = ""
    name_en: str = ""


@dataclass
class CourierInfo:
    id: str
    pin: str = field(repr=False)
    carrier: str = ""
    name: str = ""


@dataclass
class DemoInfo:
    """Everything the demo serves and every credential, as printed and saved to demo.json."""

    data_dir: Path
    api_url: str
    docs_url: str
    notices_url: str
    doors_url: str
    broker_url: str
    database_url: str
    erp_key: str = field(repr=False)
    carrier_key: str = field(default="", repr=False)  # SF Express's: its statement
    erp_receiver_url: str = ""  # the reference ERP receiver's page
    erp_hook_url: str = ""  # the URL to register as the ERP's webhook endpoint
    erp_webhook_id: str = ""  # the endpoint registered at start (Options.register_webhook)
    cabinets: list[CabinetInfo] = field(default_factory=list)
    couriers: list[CourierInfo] = field(default_factory=list)
    recipients: dict[str, str] = field(default_factory=dict)  # phone -> "wechat" | "sms"
    clock_offset_file: Path | None = None
    clock_base_offset_s: float = 0.0  # what the offset file held at start (see Options.site_time)
    technician_pin: str = field(default=TECHNICIAN_PIN, repr=False)
    pids: dict[str, int] = field(default_factory=dict)
    console_url: str = ""
    # The operations console's accounts: username -> (role, password), new each run.
    console_accounts: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)

    def save(self, path: Path) -> None:
        data = asdict(self)
        path.write_text(json.dumps(data, indent=1, default=str, ensure_ascii=False) + "\n")
        path.chmod(0o600)  # it holds the demo's credentials


def door_layout() -> list[dict[str, Any]]:
    """The 24 doors of a demo cabinet on board 1."""
    return [
        {
            "id": f"A{channel:02d}",
            "size": size,
            "low_door": channel <= LOW_DOORS,
            "driver": "rs485",
            "board": 1,
            "channel": channel,
        }
        for channel, size in enumerate(DOOR_SIZES, start=1)
    ]


class DemoStack:
    """The demo's processes and threads; `prepare()`, `start()`, then `stop()` (always)."""

    # Webhooks the ERP receiver keeps: the newest few for the demo's page (None: all of them).
    receiver_kept: int | None = KEPT

    def __init__(self, options: Options, *, echo: Echo | None = None) -> None:
        self.options = options
        self.echo = echo or (lambda _line: None)
        self.data_dir = options.data_dir.expanduser().resolve()
        self.broker: EmbeddedBroker | None = None
        self.sinks: NoticeSinks | None = None
        self.receiver: ErpReceiver | None = None
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.info: DemoInfo | None = None
        self._ports = self._plan_ports()
        self._http = httpx.Client(timeout=5)
        self._code_keys: dict[str, str] = {}  # cabinet id -> its pickup-code key, for its config
        # The cloud's secret key, new each run (it has no default): signs scan-to-open sessions,
        # seals codes in the notice outbox and the cabinets' code keys.
        self._secret_key = secrets.token_hex(32)
        self._engine: Any = None
        self._openid = demo_openid()  # the WeChat user the first demo recipient is bound to

    # --- ports ---------------------------------------------------------------------------------

    def _plan_ports(self) -> dict[str, int]:
        base, n = self.options.http_port, self.options.cabinets
        names = ["api", "notices", "erp"] + [f"kiosk-{i}" for i in range(1, n + 1)]
        names += [f"sim-{i}" for i in range(1, n + 1)]
        if base == 0:
            # Distinct: the kernel may hand the same free port out twice in a row, and two of
            # the demo's servers on one port left the API unable to bind (seen once in CI).
            ports: dict[str, int] = {}
            while len(ports) < len(names):
                port = free_port()
                if port not in ports.values():
                    ports[names[len(ports)]] = port
            return ports
        offsets = {"api": 0, "notices": 1, "erp": 2}
        offsets |= {f"kiosk-{i}": 10 + i for i in range(1, n + 1)}
        offsets |= {f"sim-{i}": 40 + i for i in range(1, n + 1)}
        ports = {name: base + offsets[name] for name in names}
        if max(ports.values()) > 65535:
            raise DemoError(f"--http-port {base} leaves no room for the demo's other ports")
        return ports

    def _check_ports(self) -> None:
        for name, port in self._ports.items():
            if not port_free(port):
                raise DemoError(
                    f"port {port} (for the {name}) is taken: is another demo running? "
                    "Stop it, or pick other ports with --http-port"
                )

    # --- prepare: folder, database, demo data --------------------------------------------------

    def prepare(self) -> DemoInfo:
        """Make the data folder, migrate the database, seed the demo data; return the info."""
        self._check_ports()
        self._reset_data_dir()
        database_url = self.options.database_url or f"sqlite:///{self.data_dir / 'cloud.db'}"
        from cloud.db.migrate import upgrade

        upgrade(database_url)
        self.echo(f"database ready: {_shown_url(database_url)}")
        info = self._seed(database_url)
        self.info = info
        self._set_site_time(info)
        self._write_mosquitto_files(info)
        self.echo(
            f"demo data: site {SITE_ID}, {len(info.cabinets)} cabinets, "
            f"{len(info.couriers)} couriers, an ERP key"
        )
        return info

    def _set_site_time(self, info: DemoInfo) -> None:
        """Start the workers' clock at `Options.site_time` of the site's zone, if one is set."""
        if self.options.site_time is None or info.clock_offset_file is None:
            return
        from cloud.worker.clock import offset_to_local_time

        zone = ZoneInfo(SITE_TIMEZONE)
        offset_s = offset_to_local_time(datetime.now(UTC), zone, self.options.site_time)
        info.clock_base_offset_s = round(offset_s)
        info.clock_offset_file.write_text(f"{info.clock_base_offset_s}\n")
        self.echo(
            f"the cloud workers' clock starts at {self.options.site_time:%H:%M} {zone.key} "
            f"({info.clock_base_offset_s} s ahead of the real time)"
        )

    def _write_mosquitto_files(self, info: DemoInfo) -> None:
        """Write DATA/mosquitto/passwd and acl from the registry's lines, for a real broker."""
        from cloud.services.registry import mosquitto_cloud_acl_lines, mosquitto_password_hash

        folder = self.data_dir / "mosquitto"
        folder.mkdir()
        lines = [cabinet.password_file_line for cabinet in info.cabinets]
        users = self._worker_users()
        if self.options.cloud_mqtt_password:
            password = self.options.cloud_mqtt_password
            lines += [f"{user}:{mosquitto_password_hash(password)}" for user in users]
        passwd = folder / "passwd"
        passwd.write_text("\n".join(lines) + "\n")
        passwd.chmod(0o600)
        acl = [cabinet.acl for cabinet in info.cabinets]
        acl += [mosquitto_cloud_acl_lines(user) for user in users]
        (folder / "acl").write_text("\n\n".join(acl) + "\n")

    def _worker_users(self) -> tuple[str, ...]:
        """Each worker's broker user: a broker that pins client id = user name (ours do) would
        let workers sharing one user close each other's connection."""
        from cloud.services.registry import worker_mqtt_users

        stem = self.options.cloud_mqtt_username or CLOUD_MQTT_USER
        return worker_mqtt_users(stem, max(1, self.options.workers))

    def _reset_data_dir(self) -> None:
        path = self.data_dir
        if path.exists() and any(path.iterdir()) and not (path / MARKER).exists():
            raise DemoError(
                f"{path} is not empty and was not made by the demo: give --data an empty or "
                "new folder"
            )
        if (path / MARKER).exists():
            for entry in path.iterdir():  # a demo folder: every start begins afresh
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        path.mkdir(parents=True, exist_ok=True)
        (path / MARKER).write_text("made by `locker demo`; emptied at each start\n")
        (path / "logs").mkdir()

    def _seed(self, database_url: str) -> DemoInfo:
        """The demo's data, through the registry as an operator would: a site, its cabinets,
        the couriers, the shop's ERP key, one recipient's WeChat binding."""
        from sqlmodel import Session

        from cloud.db.engine import make_engine
        from cloud.db.models import WechatBinding

        now = datetime.now(UTC)
        api_url = f"http://{HOST}:{self._ports['api']}"
        engine = make_engine(database_url)
        try:
            with Session(engine) as session:
                self._seed_site(session, now)
                cabinets = [self._seed_cabinet(session, n, now) for n in self._cabinet_numbers]
                couriers = self._seed_couriers(session, now)
                erp_key = self._seed_erp_key(session, now)
                carrier_key = self._seed_carrier_key(session, now)
                # The row the scan-to-open SMS check or the official account leaves once a
                # recipient has proved their phone: that phone's notices go by WeChat.
                session.add(WechatBinding(openid=self._openid, phone=WECHAT_PHONE, created_at=now))
                session.commit()
            with Session(engine) as session:
                console_accounts = self._seed_console_accounts(session, now)
        finally:
            engine.dispose()
        return DemoInfo(
            data_dir=self.data_dir,
            api_url=api_url,
            docs_url=f"{api_url}/api/v1/docs",
            notices_url=f"http://{HOST}:{self._ports['notices']}",
            doors_url=f"http://{HOST}:{self._ports['notices']}/doors",
            broker_url=self.options.broker_url or "",
            database_url=database_url,
            erp_key=erp_key,
            carrier_key=carrier_key,
            erp_receiver_url=f"http://{HOST}:{self._ports['erp']}",
            erp_hook_url=f"http://{HOST}:{self._ports['erp']}/hooks/lockers",
            cabinets=cabinets,
            couriers=couriers,
            recipients={WECHAT_PHONE: "wechat", SMS_PHONE: "sms"},
            clock_offset_file=self.data_dir / "clock-offset-s",
            console_url=f"{api_url}/console",
            console_accounts=console_accounts,
        )

    def _seed_console_accounts(self, session: Any, now: datetime) -> dict[str, tuple[str, str]]:
        """The site's manager and an operator admin, with passwords made for this run."""
        from cloud.services.accounts import add_account

        accounts = {
            CONSOLE_MANAGER: ("site_manager", secrets.token_urlsafe(12)),
            CONSOLE_OPERATOR: ("operator_admin", secrets.token_urlsafe(12)),
        }
        for username, (role, password) in accounts.items():
            add_account(
                session=session, username=username, role=role, password=password, now=now,
                site_ids=(SITE_ID,) if role == "site_manager" else (),
            )  # fmt: skip
        return accounts

    @property
    def _cabinet_numbers(self) -> range:
        return range(1, self.options.cabinets + 1)

    def _seed_site(self, session: Any, now: datetime) -> None:
        from cloud.db.models import SiteCreate
        from cloud.services import registry

        site = SiteCreate(
            id=SITE_ID,
            name="Riverside Gardens 滨江花园",
            language=self.options.language,
            timezone=SITE_TIMEZONE,
            quiet_start=None,
            quiet_end=None,  # a demo runs at any hour: reminders go at once
            sms_signature="滨江快递柜",
            sms_signature_en="Riverside Lockers",
        )
        registry.add_site(session=session, site_create=site, now=now)

    def _seed_cabinet(self, session: Any, n: int, now: datetime) -> CabinetInfo:
        """Cabinet `cab-n` registered, its folder made; its code key kept for its config."""
        from cloud.db.models import CabinetCreate
        from cloud.services import registry

        doors = door_layout()
        cab = f"cab-{n}"
        # Named in each language: a text or a page names it in its reader's language only.
        name, name_en = f"滨江花园{n}号楼", f"Riverside Gardens, Building {n}"
        credentials = registry.add_cabinet(
            session=session,
            cabinet_create=CabinetCreate(
                id=cab,
                site_id=SITE_ID,
                name=name,
                address=f"滨江路{n}号大堂",
                name_en=name_en,
                address_en=f"{n} Riverside Road, lobby",
            ),
            compartments=registry.layout_compartments({"layout": {"compartments": doors}}),
            now=now,
            seal_key=self._secret_key.encode(),
        )
        self._code_keys[cab] = credentials.code_key
        folder = self.data_dir / "cabinets" / cab
        folder.mkdir(parents=True)
        return CabinetInfo(
            id=cab,
            name=name,
            name_en=name_en,
            kiosk_url=f"http://{HOST}:{self._ports[f'kiosk-{n}']}",
            sim_url=f"http://{HOST}:{self._ports[f'sim-{n}']}",
            dir=folder,
            config_path=folder / "cabinet.toml",
            tty_link=folder / "ttyLOCK",
            doors=doors,
            mqtt_password=credentials.mqtt_password,
            password_file_line=credentials.password_file_line,
            acl=registry.mosquitto_acl_lines(cab),
        )

    def _seed_couriers(self, session: Any, now: datetime) -> list[CourierInfo]:
        from cloud.services import registry

        couriers = []
        for courier_id, pin, carrier, courier_name, phone in COURIERS:
            registry.add_courier(
                session=session,
                courier_id=courier_id,
                carrier=carrier,
                name=courier_name,
                pin=pin,
                site_id=SITE_ID,
                now=now,
                phone=phone,
            )
            couriers.append(CourierInfo(courier_id, pin, carrier, courier_name))
        return couriers

    def _seed_erp_key(self, session: Any, now: datetime) -> str:
        """The shop's ERP acts for its merchant at the demo's site: it sees the parcels it
        announced, whichever carrier's courier brings them."""
        from cloud.services import registry

        erp = registry.add_erp_key(
            session=session,
            key_id=ERP_KEY_ID,
            name="Demo shop ERP",
            now=now,
            merchant_id=ERP_MERCHANT_ID,
            site_ids=[SITE_ID],
        )
        return erp.key

    def _seed_carrier_key(self, session: Any, now: datetime) -> str:
        """SF Express's key (its couriers' carrier row exists by now) and its price per door
        size at the site: the statement it reads has priced lines."""
        from cloud.services import registry, statements

        for size, amount in PRICES_MINOR.items():
            statements.set_price(
                session=session,
                site_id=SITE_ID,
                carrier_id=CARRIER,
                size=size,
                amount_minor=amount,
                currency="CNY",
                now=now,
            )
        key = registry.add_erp_key(
            session=session,
            key_id=CARRIER_KEY_ID,
            name="SF Express ERP",
            now=now,
            carrier_id=CARRIER,
            site_ids=[SITE_ID],
        )
        return key.key

    # --- start ---------------------------------------------------------------------------------

    def start(self) -> DemoInfo:
        """Start the broker, sinks and processes; return once every cabinet is ready."""
        info = self.info or self.prepare()
        if self.options.broker_url is None:
            self.broker = EmbeddedBroker().start()
            info.broker_url = self.broker.url
            self.echo(f"MQTT broker (embedded amqtt): {self.broker.url}")
        else:
            info.broker_url = self.options.broker_url
            self.echo(f"MQTT broker: {info.broker_url}")
        bindings = {WECHAT_PHONE: self._openid} if info.recipients[WECHAT_PHONE] == "wechat" else {}
        self.sinks = NoticeSinks(page_port=self._ports["notices"], wechat_bindings=bindings)
        self.sinks.cabinets = [
            SimulatedCabinet(cabinet.id, cabinet.sim_url, cabinet.doors)
            for cabinet in info.cabinets
        ]
        self.sinks.start()
        self.echo(
            f"notice sinks: fake Twilio {self.sinks.twilio.url}, fake WeChat "
            f"{self.sinks.wechat.url}; notices page {info.notices_url}"
        )
        self.receiver = ErpReceiver(
            port=self._ports["erp"], zone=SITE_TIMEZONE, kept=self.receiver_kept
        ).start()
        self.echo(f"ERP webhook receiver: {info.erp_receiver_url} (endpoint {info.erp_hook_url})")
        self._start_cloud(info)
        self._start_cabinets(info)
        self._wait_ready(info)
        info.save(self.data_dir / "demo.json")
        return info

    def _cloud_env(self, info: DemoInfo) -> dict[str, str]:
        assert self.sinks is not None
        env = _clean_env()
        env |= {
            "LOCKER_CLOUD_DATA_DIR": str(self.data_dir),
            "LOCKER_CLOUD_DATABASE_URL": info.database_url,
            "LOCKER_CLOUD_BASE_URL": info.api_url,
            "LOCKER_CLOUD_SECRET_KEY": self._secret_key,
            "LOCKER_CLOUD_CLOCK_OFFSET_FILE": str(info.clock_offset_file),
            # The reference ERP receiver is plain http on this machine: the SSRF guard lets
            # exactly it through.
            "LOCKER_CLOUD_WEBHOOK_ALLOW_HOSTS": f"{HOST}:{self._ports['erp']}",
            **self.sinks.cloud_env(),
        }
        if self.options.cloud_mqtt_password:
            env["LOCKER_CLOUD_MQTT_PASSWORD"] = self.options.cloud_mqtt_password
        return env

    def _start_cloud(self, info: DemoInfo) -> None:
        env = self._cloud_env(info)
        port = str(self._ports["api"])
        self._spawn("cloud-api", ["cloud", "serve", "--host", HOST, "--port", port], env)
        shared = self.options.shared
        if shared is None:
            shared = self.options.broker_url is not None
        if not shared and self.options.workers > 1:
            raise DemoError("several workers need a broker with shared subscriptions")
        users = self._worker_users()
        for n in range(1, self.options.workers + 1):
            args = ["cloud", "worker", "--broker", info.broker_url]
            if self.options.cloud_mqtt_password:  # a broker with users: one per worker
                args += ["--mqtt-username", users[n - 1]]
            else:
                args += ["--client-id", f"demo-worker-{n}"]
            args += ["--shared" if shared else "--no-shared"]
            args += ["--resend-interval-s", "5"]
            self._spawn(f"cloud-worker-{n}", args, env)

    def _start_cabinets(self, info: DemoInfo) -> None:
        from urllib.parse import urlsplit

        broker = urlsplit(info.broker_url)
        for n, cabinet in enumerate(info.cabinets, start=1):
            port = str(self._ports[f"sim-{n}"])
            args = ["sim", "--boards", "1", "--locks", str(len(cabinet.doors))]
            args += ["--link", str(cabinet.tty_link), "--control-port", port]
            self._spawn(f"sim-{cabinet.id}", args, _clean_env())
        for n, cabinet in enumerate(info.cabinets, start=1):
            self._wait(
                lambda c=cabinet: c.tty_link.exists() and self._answers(f"{c.sim_url}/state"),
                f"the simulator of {cabinet.id}",
            )
            config = self._daemon_config(
                info, cabinet, n, broker.hostname or HOST, broker.port or 1883
            )
            if self.options.enrol and n == len(info.cabinets):
                self._enrol_cabinet(info, cabinet, config)
                continue
            cabinet.config_path.write_text(config)
            cabinet.config_path.chmod(0o600)
            args = ["cabinet", "run", "--config", str(cabinet.config_path)]
            self._spawn(f"cabinet-{cabinet.id}", args, _clean_env())

    def _enrol_cabinet(self, info: DemoInfo, cabinet: CabinetInfo, config: str) -> None:
        """Give `cabinet` a one-time code for its config and let its daemon enrol with it.

        The code mints a new MQTT password: fine for the embedded broker, which takes any
        client; a broker with users would need its password file written after this.
        """
        import tomllib

        from sqlmodel import Session

        from cloud.db.engine import make_engine
        from cloud.services.enrolment import issue_code
        from protocol.config_push import config_body

        if self.options.cloud_mqtt_password:
            raise DemoError("--enrol runs with the embedded broker (or one without users) only")
        engine = make_engine(info.database_url)
        try:
            with Session(engine) as session:
                issued = issue_code(
                    session=session,
                    cab=cabinet.id,
                    seal_key=self._secret_key.encode(),
                    now=datetime.now(UTC),
                    body=config_body(tomllib.loads(config)),
                )
        finally:
            engine.dispose()
        self._wait(lambda: self._answers(f"{info.api_url}/api/v1/health"), "the cloud API")
        self.echo(f"cabinet {cabinet.id}: enrolling with the one-time code {issued.code}")
        args = ["cabinet", "enrol", "--cloud", info.api_url, "--code", issued.code]
        args += ["--config", str(cabinet.config_path), "--run"]
        self._spawn(f"cabinet-{cabinet.id}", args, _clean_env())

    def _daemon_config(
        self, info: DemoInfo, cabinet: CabinetInfo, n: int, host: str, port: int
    ) -> str:
        from cabinet.config import CabinetConfig
        from locker.cloud_registry_command import daemon_config, to_toml

        layout: dict[str, Any] = {
            "journal_path": str(cabinet.dir / "journal.sqlite3"),
            "kiosk_port": self._ports[f"kiosk-{n}"],
            "buses": {"main": {"port": str(cabinet.tty_link), "poll_interval_s": 0.2}},
            "boards": [{"bus": "main", "address": 1, "channels": len(cabinet.doors)}],
            "layout": {"compartments": cabinet.doors},
        }
        # Keys the kiosk adds to the daemon's config (only once it has them: extra keys fail).
        if "cloud_api_url" in CabinetConfig.model_fields:
            layout["cloud_api_url"] = info.api_url
        if "kiosk_language" in CabinetConfig.model_fields:
            layout["kiosk_language"] = self.options.language
        if "cabinet_name" in CabinetConfig.model_fields:  # the kiosk's header names it
            layout["cabinet_name"] = cabinet.name
            layout["cabinet_name_en"] = cabinet.name_en
        if "technician_pin_hash" in CabinetConfig.model_fields:
            from protocol.hashing import pin_hash

            layout["technician_pin_hash"] = pin_hash(info.technician_pin, os.urandom(16))
        config = daemon_config(
            layout,
            cabinet_id=cabinet.id,
            code_key=self._code_keys[cabinet.id],
            mqtt_password=cabinet.mqtt_password,
            broker_host=host,
            broker_port=port,
        )
        config["mqtt"]["keepalive_s"] = 10
        return to_toml(config)

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.data_dir / "logs" / f"{name}.log").open("ab")
        with log:
            process = subprocess.Popen(
                [_locker(), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.data_dir,
                start_new_session=True,  # Ctrl-C reaches the demo only; it stops them in order
                preexec_fn=_die_with_parent,
            )
        self.processes.append((name, process))
        if self.info is not None:
            self.info.pids[name] = process.pid

    # --- readiness -----------------------------------------------------------------------------

    def _wait_ready(self, info: DemoInfo) -> None:
        self._wait(lambda: self._answers(f"{info.api_url}/api/v1/health"), "the cloud API")
        self.echo(f"cloud API: {info.api_url}")
        if self.options.register_webhook:
            self._register_webhook(info)
        headers = {"X-API-Key": info.erp_key}
        for cabinet in info.cabinets:
            url = f"{info.api_url}/api/v1/cabinets/{cabinet.id}"

            def online(url: str = url) -> bool:
                answer = self._get(url, headers=headers)
                return answer is not None and answer.get("online") is True

            self._wait(online, f"cabinet {cabinet.id} to come online in the cloud")
            self._wait(
                lambda c=cabinet: self._couriers_delivered(info, c.id),
                f"the couriers to reach cabinet {cabinet.id}",
            )
            self._wait(
                lambda c=cabinet: self._answers(f"{c.kiosk_url}/api/status"),
                f"the kiosk of {cabinet.id}",
            )
            self.echo(
                f"cabinet {cabinet.id}: online, couriers delivered, kiosk {cabinet.kiosk_url}"
            )

    def _register_webhook(self, info: DemoInfo) -> None:
        """Register the receiver as the shop's endpoint over the API, as the ERP would, and give
        it the secret the answer shows once."""
        assert self.receiver is not None
        answer = self._http.post(
            f"{info.api_url}/api/v1/webhooks",
            headers={"X-API-Key": info.erp_key},
            json={"url": info.erp_hook_url, "event_types": ["*"]},
        )
        if answer.status_code != 201:
            raise DemoError(f"registering the ERP receiver's webhook failed: {answer.text}")
        endpoint = answer.json()
        self.receiver.add_secret(endpoint["secret"])
        info.erp_webhook_id = endpoint["id"]
        self.echo(f"the shop's ERP registered webhook {endpoint['id']} to {info.erp_hook_url}")

    def _couriers_delivered(self, info: DemoInfo, cab: str) -> bool:
        from sqlmodel import Session, col, select

        from cloud.db.engine import make_engine
        from cloud.db.models import CommandOutbox

        engine = self._engine or make_engine(info.database_url)
        self._engine = engine
        with Session(engine) as session:
            pending = session.exec(
                select(CommandOutbox.id).where(
                    CommandOutbox.cabinet_id == cab,
                    CommandOutbox.type == "couriers.put",
                    col(CommandOutbox.acked_at).is_(None),
                )
            ).first()
        return pending is None

    def _wait(self, ready: Callable[[], bool], what: str, timeout_s: float = READY_TIMEOUT_S):
        deadline = time.monotonic() + timeout_s
        while not ready():
            for name, process in self.processes:
                if process.poll() is not None:
                    raise DemoError(
                        f"{name} exited with status {process.returncode} while waiting for "
                        f"{what}; its log: {self.data_dir / 'logs' / (name + '.log')}\n"
                        + _tail(self.data_dir / "logs" / f"{name}.log")
                    )
            if time.monotonic() > deadline:
                raise DemoError(
                    f"gave up after {timeout_s:g} s waiting for {what}; logs are in "
                    f"{self.data_dir / 'logs'}"
                )
            time.sleep(0.1)

    def _answers(self, url: str) -> bool:
        try:
            return self._http.get(url).status_code == 200
        except httpx.HTTPError:
            return False

    def _get(self, url: str, **kwargs: Any) -> Any:
        try:
            answer = self._http.get(url, **kwargs)
        except httpx.HTTPError:
            return None
        return answer.json() if answer.status_code == 200 else None

    # --- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every child in stages: the daemons (which publish their offline state), then
        their simulators, then the workers, then the API; then the broker and the sinks."""
        stages = ("cabinet-", "sim-", "cloud-worker-", "cloud-api")
        for prefix in stages:
            group = [(n, p) for n, p in self.processes if n.startswith(prefix)]
            self._stop_group(group)
        self._stop_group([(n, p) for n, p in self.processes if not n.startswith(stages)])
        self.processes.clear()
        if self.sinks is not None:
            self.sinks.stop()
            self.sinks = None
        if self.receiver is not None:
            self.receiver.stop()
            self.receiver = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        self._http.close()

    def _stop_group(self, group: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
        stop_all(
            group,
            STOP_GRACE_S,
            on_kill=lambda name: self.echo(
                f"{name} did not stop in {STOP_GRACE_S:g} s: killing it"
            ),
        )

    def __enter__(self) -> DemoStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- helpers --------------------------------------------------------------------------------------


def _locker() -> str:
    """The `locker` console script of this Python (the venv's), else `python -m locker`."""
    script = Path(sys.executable).with_name("locker")
    return str(script) if script.exists() else "locker"


def _clean_env() -> dict[str, str]:
    """This environment without LOCKER_* settings: each child gets exactly the demo's."""
    return clean_env(PYTHONUNBUFFERED="1")


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the demo's process dies (Linux)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def running(options: Options, *, echo: Echo | None = None) -> Iterator[DemoInfo]:
    """Run the demo for the `with` block; everything is stopped when it ends, however."""
    stack = DemoStack(options, echo=echo)
    try:
        yield stack.start()
    finally:
        stack.stop()
