"""The demo's embedded MQTT broker: amqtt on 127.0.0.1, in a thread of its own event loop.

amqtt is an MQTT 3.1.1 broker in pure Python: QoS 1, retained messages and Last Wills, which is
all the cabinet ↔ cloud contract needs (docs/mqtt.md#transport). It has no shared
subscriptions, so the demo runs one cloud worker with plain subscriptions (`locker cloud worker
--no-shared`). It takes any client without a password and enforces no ACLs: it listens on
loopback only, for the zero-setup demo. Production and the end-to-end tests use Mosquitto with
the registry's passwords and ACLs.

Nor can it pin a client id to a user name as our Mosquitto configs do (`use_username_as_clientid`):
amqtt 0.12 has no such setting, and its clients give no user names to pin to. A client on this
loopback port can therefore take another's session, which only the demo's own processes reach.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Any

from locker.harness.ports import free_port

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class BrokerError(RuntimeError):
    """The embedded broker could not start (the port is taken, amqtt refused its config)."""


class EmbeddedBroker:
    """amqtt serving MQTT on `host:port` (0: a free port) until `stop()`."""

    def __init__(self, *, host: str = HOST, port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    @property
    def url(self) -> str:
        """`mqtt://host:port`, as `locker cloud worker --broker` takes it."""
        return f"mqtt://{self.host}:{self.port}"

    def config(self) -> dict[str, Any]:
        """The amqtt config: one TCP listener, anonymous clients, none of amqtt's chatty plugins."""
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

    def start(self) -> EmbeddedBroker:
        """Start serving; return once the port accepts connections. Raise BrokerError."""
        # amqtt logs every connection at INFO and its state machine at DEBUG: not for a demo.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._loop = asyncio.new_event_loop()
        started: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="embedded-broker", daemon=True
        )
        self._thread.start()
        try:
            started.result(timeout=START_TIMEOUT_S)
        except Exception as err:
            self.stop()
            raise BrokerError(
                f"the embedded MQTT broker did not start on {self.url}: {err}"
            ) from err
        return self

    def _run(self, started: Future[None]) -> None:
        from amqtt.broker import Broker

        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            self._broker = Broker(self.config(), loop=loop)
            await self._broker.start()

        try:
            loop.run_until_complete(boot())
        except Exception as err:  # handed to start(), which raises it in the caller's thread
            started.set_exception(err)
            loop.close()
            return
        started.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self) -> None:
        """Disconnect every client, close the listener and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._broker is not None and loop.is_running():
            shutdown = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), loop)
            try:
                shutdown.result(timeout=STOP_TIMEOUT_S)
            except Exception as err:  # stopping goes on: the loop ends below either way
                logging.getLogger(__name__).warning("embedded broker shutdown: %s", err)
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=STOP_TIMEOUT_S)
        self._broker = None
        self._loop = self._thread = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
