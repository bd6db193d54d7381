"""The kiosk client the demo's story and the chaos workload tap with, against a stand-in kiosk
that answers as cabinet/kiosk/app.py does (200 with screens, 409 until the door is shut)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
import pytest

from locker.kiosk_client import KioskClient, KioskRefused, screen_types


@dataclass
class Cab:
    id: str = "cab1"
    kiosk_url: str = "http://kiosk.test"


class Refused(Exception):
    """A caller's own failure class (the story's StoryFailed, the workload's OpFailed)."""


def _kiosk(shut_after: int) -> tuple[httpx.Client, list[str]]:
    """A kiosk that signs couriers in, and answers Confirm 409 until `shut_after` tries."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        kind = json.loads(request.content)["type"]
        seen.append(kind)
        if kind == "CourierSignIn":
            return httpx.Response(200, json={"screens": [{"type": "SignedIn"}]})
        if kind == "Confirm" and seen.count("Confirm") > shut_after:
            return httpx.Response(200, json={"screens": [{"type": "Deposited"}]})
        return httpx.Response(409, json={"error": "shut the door first", "state": "door_open"})

    return httpx.Client(transport=httpx.MockTransport(answer)), seen


def test_a_press_returns_the_screens_and_a_refusal_fails_in_the_callers_words() -> None:
    http, _ = _kiosk(shut_after=0)
    kiosk = KioskClient(http, Cab(), error=Refused)
    assert screen_types(kiosk.press("CourierSignIn", courier_id="C1", pin="1")) == ["SignedIn"]
    assert kiosk.expect("CourierSignIn", "SignedIn", courier_id="C1", pin="1")
    with pytest.raises(Refused, match=r"kiosk cab1 refused Reopen: 409 .*shut the door first"):
        kiosk.press("Reopen")
    with pytest.raises(Refused, match=r"CourierSignIn showed \['SignedIn'\], not SignedOut"):
        kiosk.expect("CourierSignIn", "SignedOut", courier_id="C1", pin="1")
    with pytest.raises(KioskRefused):  # no class given: the client's own
        KioskClient(http, Cab()).press("Reopen")


def test_confirm_waits_out_the_409s_of_a_door_not_yet_seen_shut() -> None:
    http, seen = _kiosk(shut_after=2)
    screens = KioskClient(http, Cab()).confirm_when_shut(wait_s=5, poll_s=0)
    assert screen_types(screens) == ["Deposited"] and seen == ["Confirm"] * 3
    http, _ = _kiosk(shut_after=10**6)
    with pytest.raises(KioskRefused, match="refused Confirm"):
        KioskClient(http, Cab()).confirm_when_shut(wait_s=0, poll_s=0)
