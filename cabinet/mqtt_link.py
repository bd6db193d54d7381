"""The cabinet's MQTT link to the cloud: presence, events out, commands in, acks both ways.

It deals in protocol envelopes and callbacks only (no cabinet core), over MQTT 3.1.1 with paho:

- every connect: raise the boot counter in the journal, set the Last Will (`online: false`, that
  boot, retained, QoS 1) and connect; on CONNACK publish the retained birth (`online: true`, same
  boot, firmware, compartments), subscribe to `cmd` and `event-ack` (QoS 1), then re-send every
  unacked event in seq order;
- `publish_events`: events already journalled go out at QoS 1 while online (offline they wait in
  the journal for the next connect); `event-ack` prunes the journal;
- commands: decoded, a redelivered id re-acked with its recorded answer, an expired one refused,
  anything else run once by the daemon's handler; every command is acked, a malformed one too
  when its id can be read.
- unacked events still unacked `resend_unacked_after_s` after they were last sent are sent
  again, in seq order, while connected: a cloud worker that died holding them (a shared
  subscriber's in-flight messages die with it) must not leave them waiting for the cabinet's
  next reconnect, which may be weeks away. The contract once asked only for the re-send on
  reconnect; this adds it on silence too (docs/mqtt.md#resend), which the cloud's idempotent
  ingest by (cab, seq) makes harmless;
- connection lost or refused: reconnect after an exponential delay with full jitter (tenacity),
  bounded by `reconnect_max_delay_s`, so a fleet does not reconnect in step after a broker restart.

paho runs the socket on its own thread; every callback is handed to the asyncio loop with
`call_soon_threadsafe`, and one task handles inbound messages in arrival order, so the journal
and the daemon's state are only ever touched from the loop's thread.

A fresh paho client is made for every connection, so paho never re-sends its own in-flight copies
behind ours (the journal is the one source of what still needs sending, in seq order). The
session is persistent (`clean_session=False`): the broker keeps commands queued while we are away.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from tenacity import AsyncRetrying, retry_if_exception_type, wait_fixed, wait_random_exponential

from cabinet.journal import Journal
from protocol.codec import decode_command, decode_event_ack, encode
from protocol.errors import ProtocolError
from protocol.messages import Ack, CommandBase, CompartmentInfo, EventBase, State
from protocol.topics import (
    QOS,
    TopicKind,
    ack_topic,
    cabinet_subscriptions,
    event_topic,
    parse_topic,
    state_topic,
)

log = logging.getLogger(__name__)

# The handler runs a decoded command: None (or True) for ok, an error text (or False) for not
# ok; raising counts as not ok with the exception's text.
CommandResult = str | bool | None
CommandHandler = Callable[[CommandBase], CommandResult | Awaitable[CommandResult]]


@dataclass(frozen=True)
class LinkSettings:
    """How to reach the broker, as this cabinet."""

    cab: str
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False  # with no ca_path, the system's CA store is used
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    keepalive_s: int = 30
    connect_timeout_s: float = 10
    reconnect_min_delay_s: float = 1
    reconnect_max_delay_s: float = 60
    resend_unacked_after_s: float = 60
    firmware: str = "dev"
    # The hash of the config body the daemon runs (protocol.config_push), named in the birth.
    config_sha256: str | None = None


class ConnectFailed(Exception):
    """One connection attempt failed (socket error, refused CONNACK or no CONNACK in time)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MqttLink:
    """Keep one cabinet connected; call `start()` inside the running loop, `stop()` to leave."""

    def __init__(
        self,
        settings: LinkSettings,
        journal: Journal,
        *,
        on_command: CommandHandler,
        compartments: Callable[[], Sequence[CompartmentInfo]],
        on_online: Callable[[bool], None] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        health: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        if journal.cab != settings.cab:
            raise ValueError(f"journal of {journal.cab!r} given to the link of {settings.cab!r}")
        self.settings = settings
        self.journal = journal
        self._on_command = on_command
        self._compartments = compartments
        self._on_online = on_online
        self._clock = clock
        self._health = health
        self._wait = wait_fixed(settings.reconnect_min_delay_s) + wait_random_exponential(
            multiplier=settings.reconnect_min_delay_s, max=settings.reconnect_max_delay_s
        )
        self.online = asyncio.Event()  # set while connected: the kiosk's offline badge reads it
        # Set once the broker has granted this connection's `cmd`/`event-ack` subscriptions
        # (SUBACK): only then can a command published by the cloud reach us. `online` comes
        # first (right after CONNACK and the SUBSCRIBE sent), so a peer that must not lose a
        # command it sends at once (a test) waits for this too.
        self.subscribed = asyncio.Event()
        self.boot = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._connack: asyncio.Future[mqtt.ReasonCode] | None = None
        self._lost: asyncio.Event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.last_error: str | None = None  # the last connection failure, for a status screen
        # Answers that could not go out (offline): sent at the next connect, so every command
        # is acked even if the link dropped while it ran.
        self._unsent_acks: list[Ack] = []
        # When the unacked events were last sent or an event-ack last made progress (clock time).
        self._unacked_sent_at: datetime | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting (in the background) and handling inbound messages."""
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._supervise(), name=f"mqtt-link-{self.settings.cab}"),
            asyncio.create_task(self._handle_inbox(), name=f"mqtt-inbox-{self.settings.cab}"),
            asyncio.create_task(self._watch_stalled(), name=f"mqtt-stall-{self.settings.cab}"),
        ]

    async def stop(self, timeout_s: float = 5) -> None:
        """Publish `online: false` (a clean disconnect sends no Will), disconnect, stop tasks."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        client = self._client
        if client is not None and self.online.is_set():
            info = client.publish(
                state_topic(self.settings.cab), self._will(), qos=QOS, retain=True
            )
            await asyncio.to_thread(info.wait_for_publish, timeout_s)
        await self._drop_client()
        self._set_online(False)

    # --- connection ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        while True:
            # A new retrying per outage: the backoff starts small again after a good connection.
            retrying = AsyncRetrying(
                wait=self._wait,
                retry=retry_if_exception_type(ConnectFailed),
                before_sleep=self._log_retry,
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    await self._connect_once()
            await self._lost.wait()
            # A broker restart drops every cabinet at once: spread the reconnects out.
            await asyncio.sleep(random.uniform(0, self.settings.reconnect_min_delay_s))

    def _log_retry(self, state: Any) -> None:
        delay_s = state.next_action.sleep if state.next_action else 0
        log.warning(
            "MQTT link %s: %s; retrying in %.1f s (attempt %d)",
            self.settings.cab,
            self.last_error,
            delay_s,
            state.attempt_number,
        )

    def _new_client(self, boot: int) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=s.cab,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,  # we reconnect, with jitter, from the loop
        )
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls or s.ca_path or s.cert_path:
            client.tls_set(ca_certs=s.ca_path, certfile=s.cert_path, keyfile=s.key_path)
        client.will_set(state_topic(s.cab), self._will(boot), qos=QOS, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = _no_delay
        return client

    def _will(self, boot: int | None = None) -> bytes:
        state = State(
            cab=self.settings.cab,
            online=False,
            boot=self.boot if boot is None else boot,
            firmware=self.settings.firmware,
            ts=self._clock(),
        )
        return encode(state)

    async def _connect_once(self) -> None:
        assert self._loop is not None
        self._set_online(False)
        await self._drop_client()
        # Raised before the attempt: the Will set now must carry the boot of this connection.
        self.boot = self.journal.next_boot()
        self._lost = asyncio.Event()
        self._connack = self._loop.create_future()
        client = self._client = self._new_client(self.boot)
        s = self.settings
        try:
            await asyncio.wait_for(
                asyncio.to_thread(client.connect, s.host, s.port, s.keepalive_s),
                s.connect_timeout_s,
            )
        except (OSError, TimeoutError) as err:
            await self._drop_client()
            self.last_error = (
                f"cannot connect to broker {s.host}:{s.port}: {err or type(err).__name__}"
            )
            raise ConnectFailed(self.last_error) from None
        client.loop_start()
        try:
            reason = await asyncio.wait_for(asyncio.shield(self._connack), s.connect_timeout_s)
        except TimeoutError:
            await self._drop_client()
            self.last_error = f"no CONNACK from {s.host}:{s.port} in {s.connect_timeout_s:g} s"
            raise ConnectFailed(self.last_error) from None
        if reason.is_failure:
            await self._drop_client()
            self.last_error = (
                f"broker {s.host}:{s.port} refused cabinet {s.cab!r} "
                f"(user {s.username!r}): {reason}"
            )
            log.error("MQTT link %s: %s", s.cab, self.last_error)
            raise ConnectFailed(self.last_error)
        try:
            self._connected(client)
        except ConnectFailed as err:
            await self._drop_client()
            self.last_error = str(err)
            raise
        except Exception as err:  # a bad birth (the compartments callback) or journal trouble
            log.exception("MQTT link %s: setting up the connection failed", s.cab)
            await self._drop_client()
            self.last_error = f"setting up the connection failed: {err}"
            raise ConnectFailed(self.last_error) from err

    def _connected(self, client: mqtt.Client) -> None:
        """Birth, subscriptions, then every unacked event in seq order (on the loop's thread)."""
        cab = self.settings.cab
        if self._lost.is_set():
            raise ConnectFailed("the connection dropped right after its CONNACK")
        client.publish(state_topic(cab), encode(self._birth()), qos=QOS, retain=True)
        client.subscribe([(name, QOS) for name in cabinet_subscriptions(cab)])
        acks, self._unsent_acks = self._unsent_acks, []
        for ack in acks:
            client.publish(ack_topic(cab), encode(ack), qos=QOS)
        unacked = self.journal.unacked()
        for event in unacked:
            client.publish(event_topic(cab), encode(event), qos=QOS)
        self._unacked_sent_at = self._clock()
        self.last_error = None
        self._set_online(True)
        log.info("MQTT link %s: online (boot %d, %d unacked re-sent)", cab, self.boot, len(unacked))

    def _birth(self) -> State:
        return State(
            cab=self.settings.cab,
            online=True,
            boot=self.boot,
            firmware=self.settings.firmware,
            ts=self._clock(),
            compartments=list(self._compartments()),
            config_sha256=self.settings.config_sha256,
            health=None if self._health is None else self._health(),
        )

    def publish_birth(self) -> bool:
        """Publish the birth again (same boot, a later `ts`): fresh health and door states.

        Returns False when offline: the next connect's birth carries them anyway.
        """
        client = self._client
        if client is None or not self.online.is_set():
            return False
        client.publish(state_topic(self.settings.cab), encode(self._birth()), qos=QOS, retain=True)
        return True

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        client.on_connect = client.on_disconnect = client.on_message = None
        client.disconnect()
        # Joining paho's thread can take up to its 1 s select timeout: not on the loop's thread.
        await asyncio.to_thread(client.loop_stop)

    def _set_online(self, online: bool) -> None:
        if not online:
            self.subscribed.clear()
        if online == self.online.is_set():
            return
        if online:
            self.online.set()
        else:
            self.online.clear()
        if self._on_online is not None:
            self._on_online(online)

    # --- paho callbacks (paho's thread: hand straight to the loop) -----------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._got_connack, client, reason)

    def _on_disconnect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._got_disconnect, client, reason)

    def _on_message(self, _client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._inbox.put_nowait, (message.topic, message.payload))

    def _on_subscribe(self, client: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._got_suback, client, list(reasons))

    def _got_suback(self, client: mqtt.Client, reasons: list[mqtt.ReasonCode]) -> None:
        if client is self._client and not any(reason.is_failure for reason in reasons):
            self.subscribed.set()
        if client is self._client and any(reason.is_failure for reason in reasons):
            # Commands cannot reach us: a broker ACL that does not grant this cabinet its topics.
            self.last_error = (
                f"broker refused the subscriptions {cabinet_subscriptions(self.settings.cab)}"
            )
            log.error("MQTT link %s: %s (check its ACL)", self.settings.cab, self.last_error)

    def _got_connack(self, client: mqtt.Client, reason: mqtt.ReasonCode) -> None:
        if client is self._client and self._connack is not None and not self._connack.done():
            self._connack.set_result(reason)

    def _got_disconnect(self, client: mqtt.Client, reason: mqtt.ReasonCode) -> None:
        if client is not self._client:
            return  # a client we already dropped
        if self.online.is_set():
            log.warning("MQTT link %s: connection lost (%s)", self.settings.cab, reason)
        self._set_online(False)
        self._lost.set()

    # --- outbound -----------------------------------------------------------------------------

    def publish_events(self, events: Sequence[EventBase]) -> None:
        """Send journalled events now if online; offline they go at the next connect."""
        client = self._client
        if client is None or not self.online.is_set():
            return
        for event in events:
            client.publish(event_topic(self.settings.cab), encode(event), qos=QOS)
        if events and self._unacked_sent_at is None:
            self._unacked_sent_at = self._clock()

    def resend_if_stalled(self) -> int:
        """Re-send every unacked event, in seq order, if none was acked for too long.

        Returns how many were sent. Driven by `_watch_stalled` in production and called directly
        by tests after moving the injected clock.
        """
        client = self._client
        if client is None or not self.online.is_set() or self._unacked_sent_at is None:
            return 0
        if (self._clock() - self._unacked_sent_at).total_seconds() < (
            self.settings.resend_unacked_after_s
        ):
            return 0
        unacked = self.journal.unacked()
        for event in unacked:
            client.publish(event_topic(self.settings.cab), encode(event), qos=QOS)
        self._unacked_sent_at = self._clock() if unacked else None
        if unacked:
            log.warning(
                "MQTT link %s: no event-ack for %g s; re-sent %d unacked events (seq %d-%d)",
                self.settings.cab,
                self.settings.resend_unacked_after_s,
                len(unacked),
                unacked[0].seq,
                unacked[-1].seq,
            )
        return len(unacked)

    async def _watch_stalled(self) -> None:
        # Check a few times per resend period; the decision itself reads the injected clock.
        period_s = max(0.5, self.settings.resend_unacked_after_s / 4)
        while True:
            await asyncio.sleep(period_s)
            self.resend_if_stalled()

    def _send_ack(self, ack: Ack) -> None:
        client = self._client
        if client is not None and self.online.is_set():
            info = client.publish(ack_topic(self.settings.cab), encode(ack), qos=QOS)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                return
        log.info(
            "MQTT link %s: offline; the ack of %s goes at the next connect",
            self.settings.cab,
            ack.cmd,
        )
        self._unsent_acks.append(ack)

    # --- inbound (one task, in arrival order) --------------------------------------------------

    async def _handle_inbox(self) -> None:
        while True:
            topic, payload = await self._inbox.get()
            try:
                await self._handle(topic, payload)
            except Exception:  # a bug in a handler must not stop the link
                log.exception(
                    "MQTT link %s: failed handling a message on %s", self.settings.cab, topic
                )

    async def _handle(self, topic: str, payload: bytes) -> None:
        try:
            where = parse_topic(topic)
        except ProtocolError as err:
            log.warning("MQTT link %s: ignored message on bad topic: %s", self.settings.cab, err)
            return
        if where.cab != self.settings.cab:
            log.warning(
                "MQTT link %s: ignored message for cabinet %s", self.settings.cab, where.cab
            )
        elif where.kind is TopicKind.EVENT_ACK:
            self._handle_event_ack(payload)
        elif where.kind is TopicKind.CMD:
            await self._handle_command(payload)
        else:
            log.warning("MQTT link %s: ignored message on %s", self.settings.cab, topic)

    def _handle_event_ack(self, payload: bytes) -> None:
        try:
            event_ack = decode_event_ack(payload)
        except ProtocolError as err:
            log.warning("MQTT link %s: rejected event-ack: %s", self.settings.cab, err)
            return
        last_seq = self.journal.last_seq
        if event_ack.upto > last_seq:
            log.warning(
                "MQTT link %s: event-ack upto %d is past the last seq %d; clamped",
                self.settings.cab,
                event_ack.upto,
                last_seq,
            )
        self.journal.ack_upto(event_ack.upto)
        # Progress: the stall timer starts again for what is still unacked (if anything).
        self._unacked_sent_at = self._clock() if self.journal.last_seq > event_ack.upto else None

    async def _handle_command(self, payload: bytes) -> None:
        cab = self.settings.cab
        try:
            command = decode_command(payload, cab=cab)
        except ProtocolError as err:
            command_id = getattr(err, "message_id", None)
            log.warning("MQTT link %s: rejected command %s: %s", cab, command_id or "(no id)", err)
            if command_id is not None:
                self._send_ack(Ack.failure(command_id, f"rejected: {err}"))
            return
        recorded = self.journal.command_result(command.id)
        if recorded is not None:
            log.info("MQTT link %s: command %s seen before; re-acked", cab, command.id)
            self._send_ack(recorded)
            return
        now = self._clock()
        if command.is_expired(now):
            log.warning(
                "MQTT link %s: command %s expired at %s", cab, command.id, command.expires_at
            )
            ack = Ack.failure(command.id, f"expired at {_rfc3339(command.expires_at)}")
        else:
            self.journal.begin_command(command.id, now=now)  # written before it runs
            ack = await self._run(command)
        self._send_ack(self.journal.record_command(command.id, ack, now=now))

    async def _run(self, command: CommandBase) -> Ack:
        try:
            result = self._on_command(command)
            if inspect.isawaitable(result):
                result = await result
        except Exception as err:
            log.warning(
                "MQTT link %s: command %s (%s) failed: %s",
                self.settings.cab,
                command.id,
                command.type,
                err,
                exc_info=True,
            )
            return Ack.failure(command.id, str(err) or type(err).__name__)
        if result is None or result is True:
            return Ack(cmd=command.id, ok=True)
        return Ack.failure(command.id, result if isinstance(result, str) else "refused")


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """Send small packets at once: paho leaves Nagle's algorithm on, so a message written right
    behind another waits for the broker's delayed ACK (40 ms on Linux)."""
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
