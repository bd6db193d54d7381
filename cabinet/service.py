"""The cabinet daemon's service layer: one task owns the cabinet and runs every input as a step.

Inputs come from four places and all go through one queue, so the cabinet state is only ever
touched by the task that drains it:

- the door driver's change feed (`DoorObserved`),
- the MQTT link's commands (`command_input`, acked with the step's outcome),
- a `Tick` every `tick_s` seconds (the core's timers read `now`, taken from `clock`),
- the kiosk, through `submit(inp) -> list[Show]`.

A step writes ahead of acting (issue 3's journal rule): `apply` on a copy; on `CoreError` the old
cabinet stays and nothing is written; otherwise `journal.commit_step` stores the snapshot, the
events and the unlocks about to be driven in one transaction, and only then does the new cabinet
become current, the events go to the link and the unlocks to the driver. An unlock that does not
release becomes `UnlockFailed`, run as the next step before anything else.

Health counters (`cabinet.health`): the service tells the ledger of every pulse, failed unlock and
sensor edge as they happen; the changed rows ride in the next step's transaction. The birth
carries the summary (its `health`), and the service publishes the birth again every
`health_every` so the cloud's copy stays fresh.

Start-up is one step too: load the snapshot (or make a new cabinet from the layout), read every
door once and `reconcile`, so a kill -9 at any instant comes back to the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ulid import ULID

from cabinet.commands import command_input
from cabinet.config import CabinetConfig
from cabinet.core import Cabinet, Config, Context, apply, new_cabinet, reconcile
from cabinet.core.clock_steps import clock_step, shift_timers
from cabinet.core.compartments import Compartment
from cabinet.core.compartments import CompartmentState as CoreState
from cabinet.core.compartments import Size as CoreSize
from cabinet.core.effects import Effect, Emit, Log, Show, Unlock
from cabinet.core.errors import CoreError
from cabinet.core.inputs import CodeEntered, Input, QrScanned, Tick, UnlockFailed
from cabinet.core.serial import JsonSnapshotCache, SnapshotParts
from cabinet.drivers import build_driver
from cabinet.errors import ConfigError, DriverError
from cabinet.health import HEALTH_EVERY, HealthLedger
from cabinet.heap import pin_mmap_threshold
from cabinet.journal import Journal
from cabinet.metrics import count_events
from cabinet.mqtt_link import LinkSettings, MqttLink
from cabinet.ports import Change, DoorChange, DoorDriver, OccupancyChange
from protocol.messages import (
    Ack,
    CommandBase,
    CompartmentInfo,
    CompartmentState,
    EventBase,
    PutConfig,
    PutConfigData,
    Size,
)

log = logging.getLogger(__name__)

FIRMWARE = "locker-cabinet/0.1.0"  # what the birth message names
KEYPAD_HOLD_S = 8.0  # typing an 8-digit code; the driver caps any hold (rs485.MAX_POLL_HOLD_S)

# The birth tells the cloud what each door can take; a door being emptied still holds a parcel.
_WIRE_STATE = {
    CoreState.FREE: CompartmentState.FREE,
    CoreState.RESERVED: CompartmentState.RESERVED,
    CoreState.OCCUPIED: CompartmentState.OCCUPIED,
    CoreState.OPENING: CompartmentState.OCCUPIED,
    CoreState.FAULTED: CompartmentState.FAULTED,
    CoreState.OUT_OF_SERVICE: CompartmentState.OUT_OF_SERVICE,
}

# Core settings `config.put` may change: the scalar fields of `Config` (not the lockout policies).
CONFIG_KEYS: dict[str, type] = {
    f.name: type(getattr(Config(), f.name))
    for f in dataclasses.fields(Config)
    if isinstance(getattr(Config(), f.name), int | str)
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Job:
    """One queued step: an input (or a command) and the future its caller awaits."""

    inp: Input | None
    done: asyncio.Future[Any]
    command: CommandBase | None = None
    screens: list[Show] = field(default_factory=list)
    stop: bool = False  # the owner's last job
    awaited: bool = False  # a kiosk caller gets the screens back from `submit`


class ServiceStopped(Exception):
    """The service is not running, so the input was not applied."""


class CabinetService:
    """Own one cabinet's state; feed it the driver, the link, a 1 s tick and the kiosk."""

    def __init__(
        self,
        *,
        cabinet_id: str,
        layout: Sequence[Compartment],
        driver: DoorDriver,
        journal: Journal,
        code_key: bytes,
        link_settings: LinkSettings | None = None,
        config: Config | None = None,
        clock: Callable[[], datetime] = _utcnow,
        new_id: Callable[[], str] = lambda: str(ULID()),
        tick_s: float | None = 1.0,
        door_boards: Mapping[str, str | None] | None = None,
        ticks: Callable[[], float] | None = None,
        health_every: timedelta = HEALTH_EVERY,
    ) -> None:
        self.cabinet_id = cabinet_id
        self._layout = tuple(layout)
        self.driver = driver
        self.journal = journal
        self._clock = clock
        # The monotonic clock the wall clock is checked against (clock_steps.py). A test that
        # injects only `clock` gets ticks read from it, so its clock moves both and never "steps".
        if ticks is None:
            ticks = time.monotonic if clock is _utcnow else _seconds_of(clock)
        self._ticks = ticks
        self._last_read: tuple[datetime, float] | None = None
        self._ctx = Context(code_key=code_key, new_id=new_id)
        self._config = config
        self._tick_s = tick_s
        self.link: MqttLink | None = None
        if link_settings is not None:
            self.link = MqttLink(
                link_settings,
                journal,
                on_command=self.handle_command,
                compartments=self.compartment_infos,
                clock=clock,
                health=self.health_summary,  # one clock for the whole daemon: command deadlines too
            )
        self._cabinet: Cabinet | None = None
        # The snapshot last written to the journal, in the parts it was stored in.
        self._journaled: SnapshotParts | None = None
        self._snapshots = JsonSnapshotCache()
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._pending_effects: list[Effect] = []  # the start-up step's, run by the owner task
        self._screen_listeners: list[Callable[[Show], None]] = []
        # A pushed config body (`config.put` with `config`): the daemon's config store writes it
        # (True: restart on it); None when the daemon was not started from a file it may rewrite.
        self.on_config_push: Callable[[PutConfigData], bool] | None = None
        self.restart_requested = asyncio.Event()
        # door -> "bus:address" of its board (None: a GPIO door), for the health summary
        boards = door_boards if door_boards is not None else {c.id: None for c in self._layout}
        self.health = HealthLedger(boards, ticks=ticks)
        self._health_every = health_every
        self._next_health: datetime | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def cabinet(self) -> Cabinet:
        """The current cabinet (read it; only the service's own task changes it)."""
        if self._cabinet is None:
            raise ServiceStopped("the service has not started")
        return self._cabinet

    async def start(self) -> None:
        """Restore from the journal, read every door, reconcile; then start taking inputs."""
        pin_mmap_threshold()
        await self.driver.start()
        snapshot = self.journal.load_snapshot()
        if snapshot is not None:
            cabinet = Cabinet.from_dict(snapshot.data)
            # Which doors have an occupancy sensor is the hardware's, not the journal's: a board
            # swapped for one with sensors (or without) counts from this start.
            for spec in self._layout:
                held = cabinet.compartments.get(spec.id)
                if held is not None and held.sensor != spec.sensor:
                    cabinet.compartments[spec.id] = replace(
                        held, sensor=spec.sensor, occupied=None, mismatch_reported=False
                    )
        else:
            cabinet = new_cabinet(self.cabinet_id, self._layout, self._config)
        self.health.load(*self.journal.load_health())
        stale_unlocks = self.journal.pending_unlocks()
        readings = await self.driver.poll()
        now = self._now()
        new, effects = reconcile(cabinet, readings, now)
        unlocks = [e.compartment for e in effects if isinstance(e, Unlock)]
        self._publish(self._commit(new, effects, now))
        # Unlocks journalled before a restart and not sent again: reconcile judged them.
        for compartment in stale_unlocks:
            if compartment not in unlocks:
                self.journal.unlock_done(compartment)
        self._running = True
        self._tasks.append(asyncio.create_task(self._own(), name="cabinet-owner"))
        log.info(
            "cabinet %s: started (%s, %d doors read)",
            self.cabinet_id,
            "restored" if snapshot else "new",
            len(readings),
        )
        # The reconcile step's unlocks and follow-ups run on the owner task, first in line.
        self._pending_effects = effects
        self._queue.put_nowait(_Job(None, _ignored_future()))
        self._tasks.append(asyncio.create_task(self._watch_doors(), name="cabinet-doors"))
        if self._tick_s:
            self._tasks.append(asyncio.create_task(self._tick(self._tick_s), name="cabinet-tick"))
        if self.link is not None:
            await self.link.start()

    async def stop(self, timeout_s: float = 5) -> None:
        """Leave the broker, finish what is queued, then stop the tasks and close the driver."""
        self._running = False  # the kiosk is refused from here on
        # The link goes first, so no command starts that could not finish; one already queued
        # still runs below and its ack is journalled (a redelivery is answered from there).
        if self.link is not None:
            await self.link.stop()
        owner = self._tasks[0] if self._tasks else None
        if owner is not None:
            # The owner drains the queue up to this marker, so the step in hand (and any
            # unlock it is driving) ends normally rather than being cut off mid-way.
            self._queue.put_nowait(_Job(None, _ignored_future(), stop=True))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(owner), timeout_s)
            # Counters no step carried to the journal yet (a clean stop keeps them all).
            self.health.boards_seen(self.driver.health())
            if self.health.dirty:
                try:
                    self.journal.save_health(self.health.take_dirty())
                except Exception:
                    log.exception("cabinet %s: could not keep the health counters", self.cabinet_id)
        for task in reversed(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.done.done():
                job.done.set_exception(ServiceStopped("the service stopped"))
        await self.driver.close()

    def add_screen_listener(self, listener: Callable[[Show], None]) -> None:
        """Call `listener` with every screen no `submit` asked for (a door shut, a timer)."""
        self._screen_listeners.append(listener)

    # --- the inputs ---------------------------------------------------------------------------

    async def submit(self, inp: Input) -> list[Show]:
        """Run one input (a kiosk tap) as a step; return the screens it produced.

        Raises the `CoreError` when the core refused it (nothing changed), or ServiceStopped.
        """
        if not self._running:
            raise ServiceStopped("the service is not running")
        job = _Job(inp, asyncio.get_running_loop().create_future(), awaited=True)
        self._queue.put_nowait(job)
        try:
            return await job.done
        finally:
            if isinstance(inp, CodeEntered | QrScanned):
                self.driver.release_polls()  # the code was checked: doors must be watched again

    async def beat(self) -> None:
        """Return once the owner task has run every step queued before this call.

        The systemd watchdog pings only after a beat (cabinet/sd_notify.py), so a wedged owner
        stops the pings. The job carries no input and no pending effects: a no-op step.
        """
        if not self._running:
            raise ServiceStopped("the service is not running")
        job = _Job(None, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        await job.done

    def keypad_active(self) -> None:
        """Someone started typing a code (the kiosk calls this at the first digit).

        Status polls keep off the bus until the code is submitted (at most KEYPAD_HOLD_S), so
        the unlock it earns never waits behind a poll: that wait was the whole p99 of
        `locker bench edge`.
        """
        self.driver.hold_polls(KEYPAD_HOLD_S)

    async def handle_command(self, command: CommandBase) -> str | None:
        """Run a cloud command as a step (the link's handler): None if ok, else the reason."""
        if not self._running:
            return "the cabinet is shutting down"
        job = _Job(None, asyncio.get_running_loop().create_future(), command=command)
        self._queue.put_nowait(job)
        return await job.done

    def compartment_infos(self) -> list[CompartmentInfo]:
        """Each compartment's size and state, for the link's birth message."""
        if self._cabinet is None:
            return []
        return [
            CompartmentInfo(id=c.id, size=Size(c.size.value), state=_WIRE_STATE[c.state])
            for c in self._cabinet.compartments.values()
        ]

    async def _watch_doors(self) -> None:
        async for change in self.driver.changes():
            self._observe(change)  # timed as it comes off the feed, not when its step runs
            self._queue.put_nowait(_Job(change.as_input(), _ignored_future()))

    def _observe(self, change: Change) -> None:
        if isinstance(change, DoorChange):
            self.health.door_seen(change.compartment, change.open)
        elif isinstance(change, OccupancyChange):
            self.health.occupancy_seen(change.compartment, change.occupied)

    async def _tick(self, tick_s: float) -> None:
        while True:
            await asyncio.sleep(tick_s)
            self.health.boards_seen(self.driver.health())
            self._queue.put_nowait(_Job(Tick(), _ignored_future()))
            if self.journal.commits_since_checkpoint:
                # Off the owner task, on its own connection: no step waits for it (journal.py).
                try:
                    await asyncio.to_thread(self.journal.checkpoint)
                except Exception:  # the WAL only grows until the next one
                    log.exception("cabinet %s: WAL checkpoint failed", self.cabinet_id)

    def health_summary(self) -> dict[str, Any]:
        """The birth's `health`: the counters as they are now."""
        self.health.boards_seen(self.driver.health())
        return self.health.summary()

    # --- the owner ----------------------------------------------------------------------------

    async def _own(self) -> None:
        """The one task that changes the cabinet: run queued steps, one at a time, in order."""
        while True:
            job = await self._queue.get()
            if job.stop:
                return
            try:
                result = await self._run_job(job)
            except CoreError as err:
                if not job.done.done():
                    job.done.set_exception(err)
                continue
            except Exception as err:  # a bug or journal trouble must not kill the owner
                log.exception("cabinet %s: a step failed", self.cabinet_id)
                if not job.done.done():
                    job.done.set_exception(err)
                continue
            if not job.done.done():
                job.done.set_result(result)
            if not job.awaited:
                self._tell_listeners(job.screens)

    def _tell_listeners(self, screens: list[Show]) -> None:
        for show in screens:
            for listener in self._screen_listeners:
                try:
                    listener(show)
                except Exception:  # the kiosk's trouble must not stop the cabinet
                    log.exception("cabinet %s: a screen listener failed", self.cabinet_id)

    async def _run_job(self, job: _Job) -> Any:
        if job.command is not None:
            return await self._run_command(job.command, job)
        if job.inp is None:  # the start-up step's effects
            effects, self._pending_effects = self._pending_effects, []
            await self._act(effects, job)
            return job.screens
        await self._step(job.inp, job)
        if isinstance(job.inp, Tick):
            now = self._now()
            if self._next_health is None:
                self._next_health = now + self._health_every  # the birth sent the first
            elif now >= self._next_health and self.link is not None:
                self._next_health = now + self._health_every
                self.link.publish_birth()
        return job.screens

    async def _run_command(self, command: CommandBase, job: _Job) -> str | None:
        ack = Ack(cmd=command.id, ok=True)
        if isinstance(command, PutConfig) and command.data.config is not None:
            if self.on_config_push is None:
                return "this daemon runs a config it does not manage: it takes no config body"
            try:
                restart = self.on_config_push(command.data)
            except (ConfigError, ValueError) as err:  # the body does not fit this cabinet
                return f"config v{command.data.version} refused: {err}"
            now = self._now()  # first: a clock step moves the cabinet's timers
            self._commit(self.cabinet.copy(), [], now, command=ack)
            if restart:
                self.restart_requested.set()
            return None
        if isinstance(command, PutConfig):
            assert command.data.settings is not None
            try:
                config = _updated_config(self.cabinet.config, command.data.settings)
            except ValueError as err:
                return str(err)
            now = self._now()
            new = dataclasses.replace(self.cabinet.copy(), config=config)
            self._commit(new, [], now, command=ack)
            return None
        try:
            await self._step(command_input(command), job, command=ack)
        except CoreError as err:
            return str(err)
        return None

    async def _step(self, inp: Input, job: _Job, *, command: Ack | None = None) -> None:
        """Apply, journal, then act; raise CoreError (nothing changed) if refused."""
        now = self._now()
        new, effects = apply(self.cabinet, inp, now, self._ctx)
        envelopes = self._commit(new, effects, now, command=command)
        await self._act(effects, job, envelopes)

    def _now(self) -> datetime:
        """The wall clock; if it stepped since the last read, the cabinet's timers move with it
        (run on the owner task, before the step that reads the cabinet)."""
        now, tick = self._clock(), self._ticks()
        step = clock_step(self._last_read, now, tick)
        self._last_read = (now, tick)
        if step is not None:
            log.warning(
                "cabinet %s: the wall clock stepped %+.1f s; its timers move with it",
                self.cabinet_id,
                step.total_seconds(),
            )
            if self._cabinet is not None:
                self._cabinet = shift_timers(self._cabinet, step)
            if self._next_health is not None:
                self._next_health += step
        return now

    def _commit(
        self, new: Cabinet, effects: Iterable[Effect], now: datetime, *, command: Ack | None = None
    ) -> list[EventBase]:
        """Journal the step (one transaction, one fsync); return the events to publish."""
        effects = list(effects)
        snapshot = new.to_parts(self._snapshots)  # before the unlock: only what changed
        if not effects and command is None and snapshot == self._journaled:
            # A quiet tick changes nothing: an fsync every second would only cost CPU and flash.
            self._cabinet = new
            return []
        emits = [e for e in effects if isinstance(e, Emit)]
        unlocks = [e.compartment for e in effects if isinstance(e, Unlock)]
        if unlocks:
            # The pulses this step is about to drive, and the boards' counters as they stand,
            # ride in the unlock's own commit: a kill -9 after the pulse cannot lose them.
            for compartment in unlocks:
                self.health.pulse_counted(compartment)
            self.health.boards_seen(self.driver.health())
        health = self.health.take_dirty() if self.health.dirty else None
        try:
            envelopes = self.journal.commit_step(
                snapshot, emits, unlocks, command=command, now=now, health=health
            )
        except BaseException:
            if health is not None:
                self.health.restore_dirty(*health)
            raise
        if envelopes:
            count_events([envelope.type for envelope in envelopes])
        self._journaled = snapshot
        self._cabinet = new  # only once it is on disk
        return envelopes

    def _publish(self, envelopes: Sequence[EventBase]) -> None:
        if self.link is not None and envelopes:
            self.link.publish_events(envelopes)

    async def _act(
        self, effects: Iterable[Effect], job: _Job, envelopes: Sequence[EventBase] = ()
    ) -> None:
        """Screens, then the unlocks, then the step's events to the link.

        The events go after the first unlock has been driven: encoding and sending them is
        work the unlock frame must not queue behind (it holds the GIL the bus thread needs).
        They go before any follow-up step (a failed unlock's), so the link sends in seq order.
        """
        effects = list(effects)
        # Screens first: a failed unlock's follow-up screens (DoorMoved...) must come after the
        # screen of the step that asked for the unlock, or the kiosk would end on a stale one.
        for effect in effects:
            match effect:
                case Show():
                    job.screens.append(effect)
                case Log(message=message):
                    log.warning("cabinet %s: %s", self.cabinet_id, message)
        for effect in effects:
            if not isinstance(effect, Unlock):
                continue
            compartment = effect.compartment
            self.health.pulsed(compartment)
            try:
                failed = (await self.driver.unlock(compartment)).as_input()
            except DriverError as err:  # no route, or the driver closed: nothing was driven
                failed = UnlockFailed(compartment, f"not_sent: {err}")
            self._publish(envelopes)
            envelopes = ()
            self.journal.unlock_done(compartment)
            if failed is not None:
                self.health.unlock_failed(compartment)
                log.warning("cabinet %s: unlock failed: %s", self.cabinet_id, failed)
                try:
                    await self._step(failed, job)
                except CoreError as err:
                    log.warning("cabinet %s: %s refused: %s", self.cabinet_id, failed, err)
        self._publish(envelopes)


def link_settings(config: CabinetConfig, **overrides: Any) -> LinkSettings:
    """The MQTT link's settings from the daemon's config (`overrides` for tests)."""
    mqtt, tls = config.mqtt, config.mqtt.tls
    fields: dict[str, Any] = {
        "cab": config.cabinet_id,
        "host": mqtt.host,
        "port": mqtt.port,
        "username": mqtt.username,
        "password": mqtt.password.get_secret_value() if mqtt.password else None,
        "tls": tls is not None,
        "ca_path": str(tls.ca) if tls and tls.ca else None,
        "cert_path": str(tls.cert) if tls and tls.cert else None,
        "key_path": str(tls.key) if tls and tls.key else None,
        "keepalive_s": mqtt.keepalive_s,
        "resend_unacked_after_s": mqtt.resend_unacked_after_s,
        "firmware": FIRMWARE,
        "config_sha256": config.config_sha256,
    }
    return LinkSettings(**{**fields, **overrides})


def from_config(
    config: CabinetConfig,
    *,
    pin_factory: Any = None,
    clock: Callable[[], datetime] = _utcnow,
    ticks: Callable[[], float] | None = None,
    tick_s: float | None = 1.0,
    link_overrides: dict[str, Any] | None = None,
) -> CabinetService:
    """Build the driver, journal, link and service a checked config describes (nothing moves)."""
    sensed = config.sensed_compartments()
    layout = [
        Compartment(c.id, CoreSize(c.size), low=c.low_door, sensor=c.id in sensed)
        for c in config.layout.compartments
    ]
    driver = build_driver(config, pin_factory=pin_factory)
    code_key = config.secret_code_key()
    config.journal_path.parent.mkdir(parents=True, exist_ok=True)
    journal = Journal.open(config.journal_path, cab=config.cabinet_id)
    door_boards = {
        c.id: f"{config.bus_of(c)}:{c.board}" if c.driver == "rs485" else None
        for c in config.layout.compartments
    }
    return CabinetService(
        cabinet_id=config.cabinet_id,
        layout=layout,
        driver=driver,
        journal=journal,
        code_key=code_key,
        link_settings=link_settings(config, **(link_overrides or {})),
        config=Config(left_open_after_s=config.alarm_s),
        clock=clock,
        ticks=ticks,
        tick_s=tick_s,
        door_boards=door_boards,
    )


def _seconds_of(clock: Callable[[], datetime]) -> Callable[[], float]:
    return lambda: clock().timestamp()


def _ignored_future() -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    # Nobody awaits a door reading or a tick: a refusal is only worth a log line.
    future.add_done_callback(_log_refusal)
    return future


def _log_refusal(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (err := future.exception()) is not None:
        log.warning("input refused: %s", err)


def _updated_config(config: Config, settings: dict[str, Any]) -> Config:
    """`config` with `settings` applied; ValueError naming the first bad one, nothing applied."""
    changes: dict[str, Any] = {}
    for key, value in settings.items():
        kind = CONFIG_KEYS.get(key)
        if kind is None:
            raise ValueError(f"unknown setting {key!r}: one of {', '.join(sorted(CONFIG_KEYS))}")
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"setting {key!r} takes a whole number ≥ 1, not {value!r}")
        if kind is str and not isinstance(value, str):
            raise ValueError(f"setting {key!r} takes a string, not {value!r}")
        changes[key] = value
    return dataclasses.replace(config, **changes)
