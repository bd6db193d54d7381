"""A cabinet's kiosk tapped by a script over its HTTP API (cabinet/kiosk/app.py), as the page taps
it: the demo's story (`locker demo --story`) and the chaos workload (`locker chaos`) press their
keys through this.

Each caller fails in its own words (the story's StoryFailed, the workload's OpFailed): the client
raises the exception class it was given, with the kiosk's own answer in the message.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import httpx

Screens = list[dict[str, Any]]


class KioskRefused(Exception):
    """The kiosk did not answer an input with 200, or showed another screen than expected."""


class Cabinet(Protocol):
    """Where a cabinet's kiosk is (locker.demo.stack.CabinetInfo is one)."""

    @property
    def id(self) -> str: ...

    @property
    def kiosk_url(self) -> str: ...


def screen_types(screens: Screens) -> list[str]:
    """The screens' types, in order: what a person would read off the kiosk."""
    return [screen["type"] for screen in screens]


class KioskClient:
    """One cabinet's kiosk over `http`; a refusal raises `error` (KioskRefused by default)."""

    def __init__(
        self,
        http: httpx.Client,
        cabinet: Cabinet,
        *,
        error: type[Exception] = KioskRefused,
    ) -> None:
        self.http = http
        self.cabinet = cabinet
        self.error = error

    def post(self, kind: str, **fields: str) -> httpx.Response:
        """POST one input as it is; the answer, whatever its status."""
        return self.http.post(f"{self.cabinet.kiosk_url}/api/input", json={"type": kind, **fields})

    def press(self, kind: str, **fields: str) -> Screens:
        """Send one input; return its screens (raise `error` unless the kiosk answered 200)."""
        answer = self.post(kind, **fields)
        if answer.status_code != 200:
            raise self.error(
                f"kiosk {self.cabinet.id} refused {kind}: {answer.status_code} {answer.text[:200]}"
            )
        return answer.json()["screens"]

    def expect(self, kind: str, screen: str, **fields: str) -> Screens:
        """`press`, and raise `error` unless `screen` is among the screens shown."""
        screens = self.press(kind, **fields)
        if screen not in screen_types(screens):
            raise self.error(f"{kind} showed {screen_types(screens)}, not {screen}")
        return screens

    def confirm_when_shut(self, wait_s: float, poll_s: float) -> Screens:
        """Tap Confirm once the cabinet has seen the door shut (before, it answers 409)."""
        deadline = time.monotonic() + wait_s
        while True:
            answer = self.post("Confirm")
            if answer.status_code == 200:
                return answer.json()["screens"]
            if answer.status_code != 409 or time.monotonic() > deadline:
                raise self.error(f"kiosk {self.cabinet.id} refused Confirm: {answer.text[:200]}")
            time.sleep(poll_s)  # the door is polled on the cabinet's own schedule

    def status(self) -> dict[str, Any]:
        """GET /api/status: the courier, free doors, the cloud link."""
        return self.http.get(f"{self.cabinet.kiosk_url}/api/status").json()
