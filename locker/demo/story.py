"""`locker demo --story`: a shipment's life across the running demo, each step checked.

The story acts only as the people and systems around the lockers do, over the same interfaces:
the ERP calls the cloud API with its key; the courier and the recipient press the kiosk's buttons
through its JSON API (the requests the touchscreen page makes); the person at the cabinet opens,
fills, empties and shuts doors through the simulator's control API, which also says which doors
were pulsed and opened and breaks a lock on demand; the recipient reads the code off the notices
page, where the fake SMS and WeChat services show what they were sent; the shop's ERP reads its
webhooks off the reference ERP receiver, which verified each signature. Nothing reaches into a
process's memory or database.

    1. the ERP registers a webhook to its receiver and announces a shipment with its dimensions
       (and a retried POST creates nothing more)
    2. a courier deposits it at a kiosk; the ERP receives `parcel.in_locker`, verified
    3. the recipient's notice arrives with a pickup code
    4. the recipient picks the parcel up with that code; the ERP receives `parcel.picked_up`
    5. the carrier's statement (对账单) of the day lists the deposit, priced
    6. a second parcel expires (the workers' clock jumps 72 h ahead) and the courier takes it back
    7. a jammed lock: the cabinet moves the parcel to another door
    8. a forced door: the site's manager, signed in to the operations console as a browser
       would (form, CSRF token, session cookie), sees it as an alarm within seconds and
       acknowledges it with a note; the console's audit log has the row

The steps do not depend on how the cabinet picks a door: a door reserved for an announced
shipment (its dimensions) or one picked at the kiosk by size are both followed.

`run_story(info)` prints each step and every check; it returns True only if every check held.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from rich.markup import escape

from cloud.core.phones import mask_phone
from locker.demo.stack import (
    CARRIER,
    CONSOLE_MANAGER,
    COURIERS,
    PRICES_MINOR,
    SITE_TIMEZONE,
    SMS_PHONE,
    WECHAT_PHONE,
    CabinetInfo,
    DemoInfo,
)

WAIT_S = 30.0
# A forced door reaches the manager's alarms page within this (the cabinet polls its boards at
# least every few seconds, the event is sent at once, the page reads the table).
ALARM_WAIT_S = 10.0
EXPIRY_JUMP_S = 72 * 3600 + 60  # the demo site's 72 h pickup window, and a minute
# The shipment of step 1 fits an S door: 30 x 20 x 10 cm, 1.5 kg.
DIMENSIONS = {"length_mm": 300, "width_mm": 200, "height_mm": 100, "weight_g": 1500}
_CODE = re.compile(r"(?:取件码|[Pp]ickup code)\s*(\d{6,10})")

Echo = Callable[[str], None]


class StoryFailed(Exception):
    """A check did not hold; the message says what was expected and what was seen."""


class Story:
    """The story's actors over HTTP, and its checks."""

    def __init__(self, info: DemoInfo, *, echo: Echo, wait_s: float = WAIT_S) -> None:
        self.info = info
        self.echo = echo
        self.wait_s = wait_s
        self.http = httpx.Client(timeout=60)
        self.checks = 0
        self.run_id = secrets.token_hex(3).upper()

    # --- checks --------------------------------------------------------------------------------

    def check(self, holds: bool, what: str, seen: object = None) -> None:
        if not holds:
            raise StoryFailed(f"{what}: not so (saw {seen!r})")
        self.checks += 1
        self.echo(f"    [green]✓[/] {escape(what)}")

    def wait(self, probe: Callable[[], Any], what: str, timeout_s: float | None = None) -> Any:
        """Poll `probe` until it returns something truthy; that is the check."""
        deadline = time.monotonic() + (timeout_s or self.wait_s)
        last: Any = None
        while True:
            last = probe()
            if last:
                self.check(True, what)
                return last
            if time.monotonic() > deadline:
                raise StoryFailed(f"{what}: not within {timeout_s or self.wait_s:g} s")
            time.sleep(0.2)

    # --- the ERP and the cloud -------------------------------------------------------------------

    def erp(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-API-Key": self.info.erp_key, **kwargs.pop("headers", {})}
        return self.http.request(
            method, f"{self.info.api_url}/api/v1{path}", headers=headers, **kwargs
        )

    def tracking(self, tracking_no: str) -> dict[str, Any] | None:
        answer = self.erp("GET", f"/tracking/{tracking_no}")
        return answer.json() if answer.status_code == 200 else None

    def announce(
        self, cabinet: CabinetInfo, tracking_no: str, phone: str, order_no: str
    ) -> dict[str, Any]:
        """Announce a shipment: the demo's key sees only the parcels its merchant announced."""
        body = {
            "order_no": order_no,
            "tracking_no": tracking_no,
            "phone": phone,
            "cabinet_id": cabinet.id,
        }
        answer = self.erp(
            "POST", "/shipments", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        self.check(answer.status_code == 201, f"the ERP announced {tracking_no}", answer.text)
        return answer.json()

    def status_is(self, tracking_no: str, status: str) -> dict[str, Any] | None:
        found = self.tracking(tracking_no)
        return found if found and found["parcel"]["status"] == status else None

    # --- the kiosk -------------------------------------------------------------------------------

    def press(self, cabinet: CabinetInfo, kind: str, **fields: str) -> list[dict[str, Any]]:
        """Send one input to a kiosk; return its screens (a refusal fails the story)."""
        answer = self.http.post(f"{cabinet.kiosk_url}/api/input", json={"type": kind, **fields})
        if answer.status_code != 200:
            raise StoryFailed(
                f"kiosk {cabinet.id} refused {kind}: {answer.status_code} {answer.text}"
            )
        return answer.json()["screens"]

    def confirm_when_shut(self, cabinet: CabinetInfo) -> list[dict[str, Any]]:
        """Tap Confirm once the cabinet has seen the door shut (it refuses it before: 409)."""
        deadline = time.monotonic() + self.wait_s
        while True:
            answer = self.http.post(f"{cabinet.kiosk_url}/api/input", json={"type": "Confirm"})
            if answer.status_code == 200:
                return answer.json()["screens"]
            if answer.status_code != 409 or time.monotonic() > deadline:
                raise StoryFailed(f"kiosk {cabinet.id} refused Confirm: {answer.text}")
            time.sleep(0.2)

    def kiosk_status(self, cabinet: CabinetInfo) -> dict[str, Any]:
        return self.http.get(f"{cabinet.kiosk_url}/api/status").json()

    # --- the simulator: the person at the doors, and the hardware's view -------------------------

    def door(self, cabinet: CabinetInfo, compartment: str) -> dict[str, Any]:
        wiring = next(d for d in cabinet.doors if d["id"] == compartment)
        state = self.http.get(f"{cabinet.sim_url}/state").json()
        board = next(b for b in state["boards"] if b["address"] == wiring["board"])
        return next(d for d in board["doors"] if d["channel"] == wiring["channel"])

    def act(self, cabinet: CabinetInfo, compartment: str, action: str) -> None:
        wiring = next(d for d in cabinet.doors if d["id"] == compartment)
        url = f"{cabinet.sim_url}/doors/{wiring['board']}/{wiring['channel']}/{action}"
        answer = self.http.post(url)
        if answer.status_code != 200:
            raise StoryFailed(
                f"the simulator refused to {action} door {compartment}: {answer.text}"
            )

    def door_opened(self, cabinet: CabinetInfo, compartment: str, before: int) -> bool:
        door = self.door(cabinet, compartment)
        return bool(door["door_open"] and door["times_opened"] > before)

    # --- the notices page ------------------------------------------------------------------------

    def notices_to(self, phone: str) -> list[dict[str, Any]]:
        notices = self.http.get(f"{self.info.notices_url}/notices.json").json()
        return [n for n in notices if n["to"] == mask_phone(phone)]

    # --- the ERP's receiver and the carrier's statement ------------------------------------------

    def webhooks(self, tracking_no: str, event_type: str) -> list[dict[str, Any]]:
        """What the reference ERP receiver got for this parcel and event type."""
        items = self.http.get(f"{self.info.erp_receiver_url}/webhooks.json").json()
        return [
            item
            for item in items
            if item["tracking_no"] == tracking_no and item["event_type"] == event_type
        ]

    def webhook_arrived(self, tracking_no: str, event_type: str, order_state: str) -> None:
        """Wait for the event at the receiver; every copy of it verified, with the order state
        the API shows."""
        found = self.wait(
            lambda: [i for i in self.webhooks(tracking_no, event_type) if i["verified"]],
            f"the ERP's receiver got {event_type} for {tracking_no}, signature verified",
        )
        every = self.webhooks(tracking_no, event_type)
        self.check(
            all(item["verified"] for item in every),
            "no copy of it failed verification",
            [item["error"] for item in every],
        )
        self.check(
            found[0]["order_state"] == order_state,
            f"its order state is {order_state}, as the API says",
            found[0],
        )

    def shipment(self, shipment_id: str) -> dict[str, Any]:
        answer = self.erp("GET", f"/shipments/{shipment_id}")
        if answer.status_code != 200:
            raise StoryFailed(f"GET /shipments/{shipment_id}: {answer.status_code} {answer.text}")
        return answer.json()

    # --- the courier's deposit, shared by the steps ----------------------------------------------

    def deposit(
        self, cabinet: CabinetInfo, tracking_no: str, phone: str, size: str, courier: tuple
    ) -> tuple[str, str, list[dict[str, Any]]]:
        """Sign in, deposit one parcel, sign out; return (compartment, parcel_id, screens)."""
        courier_id, pin = courier[0], courier[1]
        shown = self.press(cabinet, "CourierSignIn", courier_id=courier_id, pin=pin)
        self.check(
            _types(shown) == ["SignedIn"], f"courier {courier_id} signed in at {cabinet.id}", shown
        )
        # A door reserved for the announced shipment may open as soon as the tracking number
        # (or the phone) is taken; otherwise the courier picks a size.
        shown = self.press(cabinet, "TrackingEntered", tracking_no=tracking_no)
        self.check(
            bool({"TrackingAccepted", "ReservationFound"} & set(_types(shown))) or _opening(shown),
            f"tracking number {tracking_no} taken",
            shown,
        )
        shown = self.open_reserved(cabinet, shown, phone)
        size_screens = shown
        if not _opening(shown):
            national = phone.removeprefix("+86")  # typed as a person would: no country code
            shown = self.press(cabinet, "PhoneEntered", phone=national)
            self.check(
                bool({"PhoneAccepted", "ReservationFound"} & set(_types(shown))) or _opening(shown),
                f"recipient's mobile {mask_phone(phone)} taken",
                shown,
            )
            shown = self.open_reserved(cabinet, shown, phone)
            size_screens = shown
        if not _opening(shown):
            size_screens = self.press(cabinet, "SizeChosen", size=size)
            self.check(
                bool(_opening(size_screens)),
                f"size {size} chosen: a door is being unlocked",
                size_screens,
            )
        else:
            self.check(True, f"the door reserved for {tracking_no} is being unlocked")
        opening = _opening(size_screens)
        compartment = opening[-1]["compartment"]
        self.wait(
            lambda: self.door(cabinet, compartment)["door_open"],
            f"door {compartment} sprang open (simulator)",
        )
        self.act(cabinet, compartment, "put")
        self.act(cabinet, compartment, "close")
        shown = self.confirm_when_shut(cabinet)
        deposited = [s for s in shown if s["type"] == "Deposited"]
        self.check(
            bool(deposited) and deposited[0]["compartment"] == compartment,
            f"parcel put in, door {compartment} shut, deposit confirmed",
            shown,
        )
        out = self.press(cabinet, "CourierSignOut")
        self.check(_types(out) == ["SignedOut"], f"courier {courier_id} signed out", out)
        return compartment, deposited[0]["parcel_id"], size_screens

    def open_reserved(
        self, cabinet: CabinetInfo, shown: list[dict[str, Any]], phone: str
    ) -> list[dict[str, Any]]:
        """Where the screen found the door held for an announced parcel (after the tracking
        number, or after the phone where the shipment names no carrier), check the masked phone
        it shows and tap once to open that door; otherwise return the screens as they are."""
        found = [screen for screen in shown if screen["type"] == "ReservationFound"]
        if not found:
            return shown
        self.check(
            found[0]["phone_masked"] == mask_phone(phone),
            f"the screen shows the announced {mask_phone(phone)}, size {found[0]['size']}",
            found,
        )
        return self.press(cabinet, "OpenReserved")

    # --- the steps -------------------------------------------------------------------------------

    def step_announce(self) -> None:
        cabinet = self.info.cabinets[0]
        self._register_webhook()
        self.tn1 = f"SF{self.run_id}0001"
        body = {
            "order_no": f"SO-{self.run_id}-1",
            "tracking_no": self.tn1,
            "phone": WECHAT_PHONE,
            "cabinet_id": cabinet.id,
            **DIMENSIONS,
        }
        key = str(uuid.uuid4())
        first = self.erp("POST", "/shipments", json=body, headers={"Idempotency-Key": key})
        self.check(
            first.status_code == 201,
            f"POST /api/v1/shipments answered 201 for {self.tn1}",
            first.text,
        )
        parcel = first.json()
        self.shipment_id = parcel["id"]
        self.check(parcel["status"] == "announced", "the parcel is announced", parcel["status"])
        self.check(
            [parcel[k] for k in DIMENSIONS] == list(DIMENSIONS.values()),
            "with its dimensions (30 x 20 x 10 cm, 1.5 kg)",
            parcel,
        )
        again = self.erp("POST", "/shipments", json=body, headers={"Idempotency-Key": key})
        self.check(
            again.status_code == 201 and again.json()["id"] == parcel["id"],
            "a retried POST with the same Idempotency-Key answers the same parcel",
            again.text,
        )
        parcels = self.erp("GET", "/parcels", params={"status": "announced"}).json()["data"]
        mine = [p for p in parcels if p["tracking_no"] == self.tn1]
        self.check(len(mine) == 1, "and created no second one", len(mine))
        self.webhook_arrived(self.tn1, "parcel.announced", parcel["order_state"])

    def _register_webhook(self) -> None:
        """The shop's ERP registers its receiver and configures it with the secret shown once."""
        answer = self.erp(
            "POST",
            "/webhooks",
            json={"url": self.info.erp_hook_url, "event_types": ["*"]},
        )
        self.check(
            answer.status_code == 201,
            f"the ERP registered a webhook to its receiver {self.info.erp_hook_url}",
            answer.text,
        )
        secret = answer.json()["secret"]
        self.check(secret.startswith("whsec_"), "the answer shows its signing secret, once")
        configured = self.http.post(
            f"{self.info.erp_receiver_url}/secrets", json={"secret": secret}
        )
        self.check(
            configured.status_code == 204,
            "the ERP's receiver now verifies with that secret",
            configured.text,
        )
        self.echo(f"    ERP receiver: {escape(self.info.erp_receiver_url)}")

    def step_deposit(self) -> None:
        cabinet = self.info.cabinets[0]
        self.c1, self.p1, _ = self.deposit(cabinet, self.tn1, WECHAT_PHONE, "S", COURIERS[0])
        found = self.wait(
            lambda: self.status_is(self.tn1, "in_locker"), "the cloud has it in_locker"
        )
        self.check(
            found["parcel"]["compartment"] == self.c1, f"in compartment {self.c1}", found["parcel"]
        )
        self.check(
            found["parcel"]["order_no"] == f"SO-{self.run_id}-1",
            "the deposit completed the ERP's announcement (same order number)",
            found["parcel"]["order_no"],
        )
        shipment = self.shipment(self.shipment_id)
        self.deposited_at = shipment["deposited_at"]
        self.webhook_arrived(self.tn1, "parcel.in_locker", shipment["order_state"])

    def step_notice(self) -> None:
        notices = self.wait(
            lambda: [n for n in self.notices_to(WECHAT_PHONE) if self.tn1 in n["text"]],
            f"a notice for {self.tn1} reached {mask_phone(WECHAT_PHONE)}",
        )
        notice = notices[0]
        channel = self.info.recipients[WECHAT_PHONE]
        how = "WeChat (the phone is bound to WeChat)" if channel == "wechat" else "SMS"
        self.check(notice["channel"] == channel, f"by {how}", notice)
        match = _CODE.search(notice["text"])
        self.check(match is not None, "it shows a pickup code", notice["text"])
        assert match is not None
        self.code1 = match.group(1)
        self.check(self.c1 in notice["text"], f"and names compartment {self.c1}", notice["text"])
        self.echo(f"    notice: {escape(notice['text'])}")

    def step_pickup(self) -> None:
        cabinet = self.info.cabinets[0]
        before = self.door(cabinet, self.c1)["times_opened"]
        shown = self.press(cabinet, "CodeEntered", code=self.code1)
        opening = [s for s in shown if s["type"] == "DoorsOpening"]
        self.check(
            bool(opening) and opening[0]["compartments"] == [self.c1],
            f"code {self.code1} typed: the kiosk opens door {self.c1}",
            shown,
        )
        self.wait(
            lambda: self.door_opened(cabinet, self.c1, before), f"door {self.c1} opened (simulator)"
        )
        self.act(cabinet, self.c1, "take")
        self.act(cabinet, self.c1, "close")
        self.check(
            not self.door(cabinet, self.c1)["occupied"],
            "the recipient took the parcel and shut the door",
        )
        self.wait(lambda: self.status_is(self.tn1, "picked_up"), "the cloud has it picked_up")
        shipment = self.shipment(self.shipment_id)
        self.webhook_arrived(self.tn1, "parcel.picked_up", shipment["order_state"])

    def step_statement(self) -> None:
        """SF Express reads its statement of the deposit's day (in the site's zone)."""
        zone = ZoneInfo(SITE_TIMEZONE)
        deposited = datetime.fromisoformat(self.deposited_at.replace("Z", "+00:00"))
        day = deposited.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        answer = self.http.get(
            f"{self.info.api_url}/api/v1/statements",
            params={
                "carrier": CARRIER,
                "from": day.isoformat(),
                "to": (day + timedelta(days=1)).isoformat(),
            },
            headers={"X-API-Key": self.info.carrier_key},
        )
        self.check(
            answer.status_code == 200,
            f"{CARRIER} read its statement of {day:%Y-%m-%d} ({SITE_TIMEZONE})",
            answer.text,
        )
        lines = [line for line in answer.json()["lines"] if line["tracking_no"] == self.tn1]
        self.check(len(lines) == 1, f"it lists the deposit of {self.tn1} once", lines)
        line = lines[0]
        self.check(
            line["courier"] == COURIERS[0][0] and line["compartment"] == self.c1,
            f"by courier {COURIERS[0][0]}, in door {self.c1}",
            line,
        )
        price = PRICES_MINOR.get(str(line["size"]))
        self.check(
            line["priced"] in (1, True) and line["price_minor"] == price,
            f"priced from the site's table: an {line['size']} door, {price} fen",
            line,
        )
        self.check(
            line["left_at"] not in (None, "") and line["status"] == "picked_up",
            "and shows it left the locker, picked up",
            line,
        )

    def step_expiry(self) -> None:
        cabinet = self.info.cabinets[-1]
        self.tn2 = f"SF{self.run_id}0002"
        courier = COURIERS[1]
        self.announce(cabinet, self.tn2, SMS_PHONE, f"SO-{self.run_id}-2")
        compartment, _parcel_id, _ = self.deposit(cabinet, self.tn2, SMS_PHONE, "M", courier)
        self.wait(
            lambda: self.status_is(self.tn2, "in_locker"), f"the cloud has {self.tn2} in_locker"
        )
        self.wait(
            lambda: [n for n in self.notices_to(SMS_PHONE) if self.tn2 in n["text"]],
            f"its notice reached {mask_phone(SMS_PHONE)} by SMS",
        )
        self._travel_past_the_window()
        self.wait(
            lambda: self.status_is(self.tn2, "expired"), "past its 72 h window the cloud expired it"
        )
        self.wait(
            lambda: len([n for n in self.notices_to(SMS_PHONE) if self.tn2 in n["text"]]) >= 2,
            "the recipient was told it expired",
        )
        self.wait(
            lambda: self.kiosk_status(cabinet)["retrievals_due"] >= 1,
            f"cabinet {cabinet.id} was told to have it taken back",
        )
        self._courier_takes_back(cabinet, compartment, courier)

    def _travel_past_the_window(self) -> None:
        """Move the cloud workers' clock 72 h ahead (the API and cabinets keep real time)."""
        offset_file = self.info.clock_offset_file
        assert offset_file is not None
        offset_s = self.info.clock_base_offset_s + EXPIRY_JUMP_S
        offset_file.write_text(f"{offset_s:g}\n")
        self.echo(
            "    [yellow]time travel[/]: the cloud workers' clock now runs 72 h further ahead "
            f"(the demo writes {offset_s:g} s into {offset_file}); the API and cabinets keep "
            "real time"
        )

    def _courier_takes_back(
        self, cabinet: CabinetInfo, compartment: str, courier: tuple[str, ...]
    ) -> None:
        """The courier signs in, is told of the parcel, opens its door and takes it back."""
        courier_id, pin = courier[0], courier[1]
        shown = self.press(cabinet, "CourierSignIn", courier_id=courier_id, pin=pin)
        self.check(
            shown and shown[0]["type"] == "SignedIn" and shown[0]["retrievals_due"] == 1,
            f"courier {courier_id} signs in: 1 parcel to take back",
            shown,
        )
        before = self.door(cabinet, compartment)["times_opened"]
        shown = self.press(cabinet, "RetrieveParcels")
        opening = [s for s in shown if s["type"] == "RetrievalOpening"]
        self.check(
            bool(opening) and opening[0]["compartments"] == [compartment],
            f"'take back' opens door {compartment}",
            shown,
        )
        self.wait(
            lambda: self.door_opened(cabinet, compartment, before),
            f"door {compartment} opened (simulator)",
        )
        self.act(cabinet, compartment, "take")
        self.act(cabinet, compartment, "close")
        self.wait(lambda: self.status_is(self.tn2, "retrieved"), "the cloud has it retrieved")
        self.wait(
            lambda: self._try_sign_out(cabinet),
            f"courier {courier_id} signed out",
        )

    def _try_sign_out(self, cabinet: CabinetInfo) -> bool:
        answer = self.http.post(f"{cabinet.kiosk_url}/api/input", json={"type": "CourierSignOut"})
        return answer.status_code == 200

    def step_jam(self) -> None:
        cabinet = self.info.cabinets[1] if len(self.info.cabinets) > 1 else self.info.cabinets[0]
        self.tn3 = f"SF{self.run_id}0003"
        parcel = self.announce(cabinet, self.tn3, SMS_PHONE, f"SO-{self.run_id}-3")
        # The door the cabinet will open for it: one reserved at the announcement, if the
        # cloud names it, else the next S door the kiosk picks.
        reserved = parcel.get("reserved_compartment") or parcel.get("compartment")
        jammed = reserved or self._next_small_door(cabinet)
        before = self.door(cabinet, jammed)
        wiring = next(d for d in cabinet.doors if d["id"] == jammed)
        answer = self.http.post(
            f"{cabinet.sim_url}/faults/{wiring['board']}",
            json={"fault": "jam", "channel": wiring["channel"]},
        )
        self.check(
            answer.status_code == 200,
            f"the simulator jams the lock of {jammed}, the door it will open",
            answer.text,
        )
        try:
            compartment, _, size_screens = self.deposit(
                cabinet, self.tn3, SMS_PHONE, "S", COURIERS[0]
            )
        finally:
            self.http.post(f"{cabinet.sim_url}/faults/{wiring['board']}/clear")
        moved = [s for s in size_screens if s["type"] == "DoorMoved"]
        self.check(
            bool(moved)
            and moved[0]["from_compartment"] == jammed
            and moved[0]["to_compartment"] == compartment,
            f"the kiosk said: door {jammed} is faulty, use door {compartment}",
            size_screens,
        )
        door = self.door(cabinet, jammed)
        pulses = door["pulses"] - before["pulses"]
        self.check(
            pulses > 0 and door["times_opened"] == before["times_opened"] and not door["occupied"],
            f"the cabinet pulsed {jammed}'s lock ({pulses}x) but it never opened",
            door,
        )
        found = self.wait(
            lambda: self.status_is(self.tn3, "in_locker"), f"the cloud has {self.tn3} in_locker"
        )
        self.check(
            found["parcel"]["compartment"] == compartment,
            f"in compartment {compartment}",
            found["parcel"],
        )
        doors = self._maintenance_doors(cabinet)
        state = next((d["state"] for d in doors if d["compartment"] == jammed), None)
        self.check(
            state == "faulted",
            f"the technician's maintenance screen shows {jammed} faulted",
            state,
        )

    def _next_small_door(self, cabinet: CabinetInfo) -> str:
        """The S door the cabinet picks next: not low first, then natural order, empty and shut."""
        candidates = [d for d in cabinet.doors if d["size"] == "S"]
        candidates.sort(key=lambda d: (d["low_door"], d["channel"]))
        for wiring in candidates:
            door = self.door(cabinet, wiring["id"])
            if not door["occupied"] and not door["door_open"]:
                return wiring["id"]
        raise StoryFailed(f"cabinet {cabinet.id} has no empty S door left")

    def _maintenance_doors(self, cabinet: CabinetInfo) -> list[dict[str, Any]]:
        """Every door's health, as the technician sees it after signing in with the PIN."""
        url = f"{cabinet.kiosk_url}/api/maintenance"
        signed_in = self.http.post(f"{url}/sign-in", json={"pin": self.info.technician_pin})
        if signed_in.status_code != 200:
            raise StoryFailed(f"the technician PIN was refused: {signed_in.text}")
        token = {"X-Maintenance-Token": signed_in.json()["token"]}
        try:
            return self.http.get(f"{url}/status", headers=token).json()["doors"]
        finally:
            self.http.post(f"{url}/sign-out", json={}, headers=token)

    # --- the operations console, as the site's manager's browser ---------------------------------

    def console_sign_in(self, username: str) -> dict[str, str]:
        """Sign in as a browser does: GET the form (its CSRF token and form cookie), POST it;
        return the headers that carry the session cookie. The cookie is Secure: a browser keeps
        it on 127.0.0.1, httpx's jar would not send it back over plain HTTP, so it rides by
        hand."""
        url = f"{self.info.console_url}/sign-in"
        form = self.http.get(url)
        self.check(form.status_code == 200, f"the console's sign-in page answers ({url})")
        token = _hidden(form.text, "csrf")
        role, password = self.info.console_accounts[username]
        signed = self.http.post(
            url,
            data={"username": username, "password": password, "csrf": token},
            headers={"Cookie": f"console_form={form.cookies.get('console_form', '')}"},
        )
        session = signed.cookies.get("console_session")
        self.check(
            signed.status_code == 303 and bool(session),
            f"{username} ({role}) signed in with the printed password",
            (signed.status_code, signed.text[:200]),
        )
        return {"Cookie": f"console_session={session}"}

    def console_alarm(
        self, cookie: dict[str, str], cabinet: CabinetInfo, compartment: str
    ) -> tuple[int, str] | None:
        """The open door.forced alarm of this door on the manager's alarms page: (id, page)."""
        page = self.http.get(
            f"{self.info.console_url}/alarms",
            params={"kind": "door.forced", "site": ""},
            headers=cookie,
        )
        if page.status_code != 200:
            raise StoryFailed(f"the alarms page answered {page.status_code}")
        # The door's id as a whole word (A1 is not A10); ASCII only, since 号 follows it in
        # Chinese ("A19号格口").
        door = re.compile(rf"(?<![0-9A-Za-z-]){re.escape(compartment)}(?![0-9A-Za-z-])")
        for row in page.text.split('<tr data-alarm="')[1:]:
            alarm_id, _, rest = row.partition('"')
            row_html = rest.split("</tr>")[0]
            if f'href="/console/cabinets/{cabinet.id}"' in row_html and door.search(row_html):
                return int(alarm_id), page.text
        return None

    def step_forced_door(self) -> None:
        cabinet = self.info.cabinets[0]
        cookie = self.console_sign_in(CONSOLE_MANAGER)
        compartment = self.c1  # emptied by the recipient in step 4, shut and latched
        started = time.monotonic()
        self.act(cabinet, compartment, "force")
        self.check(
            self.door(cabinet, compartment)["door_open"],
            f"someone wrenches door {compartment} of {cabinet.id} open (simulator)",
        )
        alarm_id, page = self.wait(
            lambda: self.console_alarm(cookie, cabinet, compartment),
            f"the manager's alarms page shows door {compartment} forced",
            timeout_s=ALARM_WAIT_S,
        )
        self.echo(f"    seen on the console {time.monotonic() - started:.1f} s after the force")
        self.act(cabinet, compartment, "close")
        note = f"story {self.run_id}: checked on site, door shut, nothing taken"
        answer = self.http.post(
            f"{self.info.console_url}/alarms/{alarm_id}/acknowledge",
            data={"csrf": _hidden(page, "csrf"), "note": note},
            headers=cookie,
        )
        self.check(
            answer.status_code == 303 and "done=acked" in answer.headers.get("location", ""),
            f"the manager acknowledged alarm {alarm_id} with a note",
            (answer.status_code, answer.headers.get("location")),
        )
        found = self.console_alarm(cookie, cabinet, compartment)
        self.check(
            found is not None and note in found[1] and CONSOLE_MANAGER in found[1],
            "the alarms page shows it acknowledged, by whom and with the note",
        )
        audit = self.http.get(
            f"{self.info.console_url}/audit.csv",
            params={"action": "acknowledge_alarm"},
            headers=cookie,
        )
        rows = [row for row in csv.DictReader(io.StringIO(audit.text)) if row.get("reason") == note]
        self.check(
            audit.status_code == 200
            and len(rows) == 1
            and rows[0]["principal"] == CONSOLE_MANAGER
            and rows[0]["resource_id"] == cabinet.id
            and f'"alarm_id": {alarm_id}' in rows[0]["detail"],
            f"the audit log has it: {CONSOLE_MANAGER} acknowledged alarm {alarm_id} of "
            f"{cabinet.id}, with the note as reason",
            rows or audit.text[:300],
        )


STEPS: list[tuple[str, str]] = [
    ("step_announce", "The ERP registers a webhook and announces a shipment"),
    ("step_deposit", "A courier deposits it at a kiosk; the ERP hears of it"),
    ("step_notice", "The recipient's notice arrives with the pickup code"),
    ("step_pickup", "The recipient picks it up with that code; the ERP hears of it"),
    ("step_statement", "The carrier's statement of the day lists the deposit"),
    ("step_expiry", "A second parcel expires and the courier takes it back"),
    ("step_jam", "A jammed lock: the parcel goes to another door"),
    ("step_forced_door", "A forced door: the manager sees the alarm and acknowledges it"),
]


def run_story(info: DemoInfo, *, echo: Echo = print) -> bool:
    """Run every step in order, printing each check; return whether all held."""
    story = Story(info, echo=echo)
    started = time.monotonic()
    try:
        for number, (method, title) in enumerate(STEPS, start=1):
            echo(f"[bold]{number}. {title}[/]")
            getattr(story, method)()
    except (StoryFailed, httpx.HTTPError, KeyError, ValueError) as err:
        echo(f"    [red]✗[/] {escape(str(err))}")
        logs = escape(str(info.data_dir / "logs"))
        echo(f"[red bold]The story failed[/] after {story.checks} checks; logs in {logs}")
        return False
    finally:
        story.http.close()
    echo(
        f"\n[green bold]The story held:[/] {len(STEPS)} steps, {story.checks} checks, "
        f"{time.monotonic() - started:.1f} s."
    )
    return True


def _types(screens: list[dict[str, Any]]) -> list[str]:
    return [screen["type"] for screen in screens]


def _opening(screens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [screen for screen in screens if screen["type"] == "DepositDoorOpening"]


def _hidden(html: str, name: str) -> str:
    """The value of a page's hidden form field `name` (the CSRF token every form carries)."""
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    if match is None:
        raise StoryFailed(f"the console page has no {name} field")
    return match.group(1)
