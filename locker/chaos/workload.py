"""The workload: the shop's ERP announces some parcels, couriers deposit, recipients pick up
(typing their notice's code, showing its QR to the scanner, or opening from their phone after
scanning the cabinet's screen), parcels expire and couriers take them back. It acts as the people
and systems around the cabinets do, over the same interfaces as `locker demo --story`: the
kiosk's JSON API (the touchscreen's requests, and what its QR scanner reads), the simulator's
control API (hands at the doors), the fake Twilio's and WeChat's inboxes (the recipient's phone),
the cloud's phone pages and API (its browser), the ERP's key and its webhook receiver.

Parcels go in rounds. In a round each cabinet gets its parcels (a thread per cabinet, as three
cabinets are used at once); the recipients of most of them come for them with their code; then
the cloud workers' clock jumps past the pickup window (the clock they take by injection, an
offset file), the rest expire, and their couriers take them back.

Under faults an operation may fail half-way (a daemon killed between the door opening and the
courier's confirm). The workload then records what it knows (`indeterminate`) and goes on, as a
courier would; the checker judges what the system made of it.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from cloud.core.phones import mask_phone
from locker.chaos.erp import Erp, ErpFailed
from locker.chaos.history import History
from locker.chaos.phones import Notice, Phone, PhoneFailed, otps, pickup_code
from locker.demo.stack import COURIERS, CabinetInfo, DemoInfo

EXPIRY_JUMP_S = 72 * 3600 + 120  # the site's 72 h pickup window, and two minutes
SIZES = ("S", "M")
# How the recipients come, by share of the parcels: their notice's code typed at the kiosk, its QR
# shown to the scanner, scan-to-open from the phone; the rest never come and their parcels expire.
PATHS = (("code", 0.45), ("qr", 0.20), ("scan", 0.10), ("expire", 0.25))
ERP_SHARE = 1 / 3  # announced by the shop's ERP first (a door held), then deposited
# Recipients bound to WeChat get their notices there. The notice's link (the page with the QR) is
# only in the WeChat message (an SMS carries no link), so every QR pickup is a WeChat recipient;
# of the others this share are too, which makes about a third in all.
WECHAT_SHARE_OTHERS = 1 / 6
# A door springs open within a second of its unlock; one that has not in 8 s is jammed (or its
# board off): a person gives up on it then, not after a quarter of a minute.
DOOR_OPENS_WITHIN_S = 8.0
RETRY_AFTER_S = 0.5  # a person trying again after a failed step


class OpFailed(Exception):
    """One try of an operation failed; the message says where."""


class DoorShut(OpFailed):
    """The cabinet will not open the parcel's door (it holds it faulted): no use trying again."""


@dataclass
class Parcel:
    """One parcel cycle: planned from the seed, then what became of it."""

    n: int
    tracking_no: str
    cab: str
    phone: str  # E.164, in memory only: the history shows it masked
    courier: tuple[str, str]  # id, PIN
    size: str
    path: str  # how its recipient comes: "code" | "qr" | "scan" | "expire" (never comes)
    erp: bool = False  # announced by the ERP before the courier brings it
    wechat: bool = False  # its recipient is bound to WeChat
    # deposited | indeterminate | not_deposited | picked_up | retrieved | stuck (behind a door
    # that would not open for its retrieval)
    state: str = "planned"
    parcel_id: str | None = None
    compartment: str | None = None
    code: str | None = None
    shipment_id: str | None = None  # the ERP's announcement, once it was answered
    announced: bool = False  # the API took the announcement (the webhook invariant's parcels)
    reserved_door: bool = False  # the kiosk opened the door the cloud held for it
    picked_by: str | None = None  # code | qr | scan: how it was actually picked up

    @property
    def fate(self) -> str:
        return "expire" if self.path == "expire" else "pickup"

    def shown(self) -> dict[str, Any]:
        return {
            "tracking_no": self.tracking_no,
            "cab": self.cab,
            "phone": mask_phone(self.phone),
            "courier": self.courier[0],
            "compartment": self.compartment,
            "parcel_id": self.parcel_id,
            "path": self.path,
        }


def plan(seed: int, cycles: int, cabinets: list[str]) -> list[Parcel]:
    """The parcels of a run, from the seed alone."""
    rng = random.Random(f"workload-{seed}")
    parcels = []
    for n in range(1, cycles + 1):
        courier = rng.choice(COURIERS)
        phone = f"+86139{rng.randrange(10**8):08d}"
        size = rng.choice(SIZES)
        draw, path = rng.random(), PATHS[-1][0]
        for name, share in PATHS:
            if draw < share:
                path = name
                break
            draw -= share
        erp = rng.random() < ERP_SHARE
        wechat = path == "qr" or rng.random() < WECHAT_SHARE_OTHERS
        parcels.append(
            Parcel(
                n=n,
                tracking_no=f"CH{seed % 10000:04d}{n:06d}",
                cab=cabinets[(n - 1) % len(cabinets)],
                phone=phone,
                courier=(courier[0], courier[1]),
                size=size,
                path=path,
                erp=erp,
                wechat=wechat,
            )
        )
    return parcels


class Workload:
    """Drives the parcels of `plan` through the running cluster, round by round."""

    def __init__(
        self,
        info: DemoInfo,
        history: History,
        *,
        notices: Callable[[], list[Notice]],
        cloud_status: Callable[[list[str]], dict[str, str]],
        wait_s: float = 90.0,
    ) -> None:
        self.info = info
        self.history = history
        self.notices = notices  # every SMS and WeChat message the fakes received, in order
        self.cloud_status = cloud_status  # tracking no -> the cloud's status (read-only DB)
        self.wait_s = wait_s
        self.cabinets = {c.id: c for c in info.cabinets}
        self._local = threading.local()
        self.clock_jumps = 0
        self._stale_scan: dict[str, str] = {}  # cabinet -> a scan URL the cloud said expired
        self.on_progress: Callable[[int], None] = lambda _n: None

    @property
    def http(self) -> httpx.Client:
        client = getattr(self._local, "http", None)
        if client is None:
            client = self._local.http = httpx.Client(timeout=10)
        return client

    # --- a round -------------------------------------------------------------------------------

    def run_round(self, parcels: list[Parcel]) -> None:
        by_cab: dict[str, list[Parcel]] = {}
        for parcel in parcels:
            by_cab.setdefault(parcel.cab, []).append(parcel)
        with ThreadPoolExecutor(len(by_cab), thread_name_prefix="workload") as pool:
            list(pool.map(self._deposit_and_pick_up, by_cab.values()))
        left = [p for p in parcels if p.state in ("deposited", "indeterminate")]
        if left:
            self._wait_in_locker(left)
            self.jump_clock()
            by_cab = {}
            for parcel in left:
                by_cab.setdefault(parcel.cab, []).append(parcel)
            with ThreadPoolExecutor(len(by_cab), thread_name_prefix="workload") as pool:
                list(pool.map(self._retrieve_all, by_cab.values()))
        self.on_progress(len(parcels))

    def _deposit_and_pick_up(self, parcels: list[Parcel]) -> None:
        for parcel in parcels:
            if parcel.erp:
                self.announce(parcel)
        for parcel in parcels:
            self.deposit(parcel)
            if parcel.state == "not_deposited" and parcel.shipment_id:
                self.cancel(parcel)
        # One patience for the cabinet's recipients together: SMS that have not come for the
        # first are not waited for again, one by one, for the rest.
        deadline = time.monotonic() + self.wait_s
        for parcel in parcels:
            if parcel.fate == "pickup" and parcel.state == "deposited":
                self.pick_up(parcel, deadline=deadline)

    # --- the ERP ---------------------------------------------------------------------------------

    @property
    def erp(self) -> Erp:
        return Erp(self.http, self.info.api_url, self.info.erp_key)

    def announce(self, parcel: Parcel, attempts: int = 6) -> None:
        """The ERP announces the parcel with its size (a door is held for it), retrying with the
        same Idempotency-Key; a parcel it cannot announce comes as any other."""
        for attempt in range(1, attempts + 1):
            try:
                parcel.shipment_id = self.erp.announce(
                    tracking_no=parcel.tracking_no,
                    phone=parcel.phone,
                    cabinet_id=parcel.cab,
                    size=parcel.size,
                )
            except (ErpFailed, httpx.HTTPError) as err:
                self.history.add(
                    "workload",
                    "announce.fail",
                    attempt=attempt,
                    error=str(err)[:200],
                    **parcel.shown(),
                )
                time.sleep(2.0)  # an ERP's queue retries for long; the courier comes anyway
                continue
            parcel.announced = True
            self.history.add(
                "workload",
                "announce.ok",
                attempt=attempt,
                shipment_id=parcel.shipment_id,
                **parcel.shown(),
            )
            return
        # A try may have reached the API before failing: the checker's webhook invariant
        # judges whatever the cloud holds for it.
        parcel.announced = True
        self.history.add("workload", "announce.gave_up", **parcel.shown())

    def cancel(self, parcel: Parcel, attempts: int = 3) -> None:
        """The courier never brought it: the ERP cancels the shipment (its door is given back)."""
        assert parcel.shipment_id is not None
        for attempt in range(1, attempts + 1):
            try:
                self.erp.cancel(parcel.shipment_id, parcel.tracking_no)
            except (ErpFailed, httpx.HTTPError) as err:
                self.history.add(
                    "workload",
                    "cancel.fail",
                    attempt=attempt,
                    error=str(err)[:200],
                    **parcel.shown(),
                )
                time.sleep(1.0)
                continue
            self.history.add("workload", "cancel.ok", **parcel.shown())
            return

    # --- deposit -------------------------------------------------------------------------------

    def deposit(self, parcel: Parcel, attempts: int = 4) -> None:
        cabinet = self.cabinets[parcel.cab]
        for attempt in range(1, attempts + 1):
            try:
                self._deposit_once(cabinet, parcel)
            except (OpFailed, httpx.HTTPError) as err:
                self.history.add(
                    "workload",
                    "deposit.fail",
                    attempt=attempt,
                    error=str(err)[:200],
                    **parcel.shown(),
                )
                self._sign_out(cabinet)
                if parcel.state == "indeterminate":
                    return  # the parcel may be in; the checker judges what the cabinet made of it
                time.sleep(RETRY_AFTER_S)
                continue
            parcel.state = "deposited"
            self.history.add("workload", "deposit.ok", attempt=attempt, **parcel.shown())
            return
        parcel.state = "not_deposited"
        self.history.add("workload", "deposit.gave_up", **parcel.shown())

    def _deposit_once(self, cabinet: CabinetInfo, parcel: Parcel) -> None:
        self._wait_kiosk(cabinet)
        self._sign_out(cabinet)
        courier_id, pin = parcel.courier
        self._expect(cabinet, "CourierSignIn", "SignedIn", courier_id=courier_id, pin=pin)
        # The scanner reads the tracking number; where the ERP announced it and the cabinet holds
        # its door, the screen shows the announced phone (masked) and one tap opens that door
        # (after the tracking number, or after the phone where the shipment names no carrier).
        screens = self._press(cabinet, "TrackingEntered", tracking_no=parcel.tracking_no)
        screens = self._open_reserved(cabinet, parcel, screens, ("TrackingAccepted",))
        if not _opening(screens):
            screens = self._press(cabinet, "PhoneEntered", phone=parcel.phone.removeprefix("+86"))
            screens = self._open_reserved(cabinet, parcel, screens, ("PhoneAccepted",))
        if not _opening(screens):
            screens = self._press(cabinet, "SizeChosen", size=parcel.size)
        opening = _opening(screens)
        if not opening:
            raise OpFailed(f"no door opened for size {parcel.size}: {_types(screens)}")
        compartment = opening[-1]["compartment"]
        parcel.compartment = compartment
        self.history.add(
            "workload", "deposit.door", reserved=parcel.reserved_door, **parcel.shown()
        )
        self._until(
            lambda: self.door(cabinet, compartment)["door_open"],
            f"door {compartment} open",
            DOOR_OPENS_WITHIN_S,
        )
        self.act(cabinet, compartment, "put")
        parcel.state = "indeterminate"  # in the door: from here a failure leaves it to the checker
        self.act(cabinet, compartment, "close")
        screens = self._confirm_when_shut(cabinet)
        deposited = [s for s in screens if s["type"] == "Deposited"]
        if not deposited:
            raise OpFailed(f"no deposit confirmed: {_types(screens)}")
        parcel.parcel_id = deposited[0]["parcel_id"]
        self._sign_out(cabinet)

    def _open_reserved(
        self, cabinet: CabinetInfo, parcel: Parcel, screens: list[dict[str, Any]], plain: tuple
    ) -> list[dict[str, Any]]:
        """Tap to open the door held for the parcel where the screen found it; otherwise the
        screens must be the step's plain answer (or a door already opening)."""
        found = [s for s in screens if s["type"] == "ReservationFound"]
        if not found:
            if not _opening(screens) and not set(plain) & set(_types(screens)):
                raise OpFailed(f"the kiosk showed {_types(screens)}, not {plain}")
            return screens
        if found[0]["phone_masked"] != mask_phone(parcel.phone):
            raise OpFailed(f"the held door is for {found[0]['phone_masked']}, not this parcel")
        parcel.reserved_door = True
        return self._press(cabinet, "OpenReserved")

    # --- pickup --------------------------------------------------------------------------------

    def notice_of(self, parcel: Parcel) -> tuple[str, str | None] | None:
        """(code, link) off the recipient's phone: its SMS or WeChat notice, once it came."""
        code, link = pickup_code(self.notices(), parcel.phone, parcel.tracking_no)
        return (code, link) if code else None

    def pick_up(self, parcel: Parcel, attempts: int = 4, deadline: float | None = None) -> None:
        cabinet = self.cabinets[parcel.cab]
        wait_s = self.wait_s if deadline is None else max(1.0, deadline - time.monotonic())
        try:
            parcel.code, link = self._until(
                lambda: self.notice_of(parcel), "the pickup notice", wait_s
            )
        except OpFailed as err:
            self.history.add("workload", "pickup.no_code", error=str(err), **parcel.shown())
            return
        how = parcel.path
        if how == "qr" and link is None:
            how = "code"  # the notice came by SMS after all (WeChat failed): no link, no QR
        for attempt in range(1, attempts + 1):
            # The phone would not open it, or the page would not show the QR (the cloud is
            # down): the recipient types the code the notice shows instead.
            if (how == "scan" and attempt > 3) or (how == "qr" and attempt > 2):
                how = "code"
            try:
                self._pick_up_once(cabinet, parcel, how, link)
            except DoorShut as err:
                # It stays behind its faulted door (whose deadline clock the cloud pauses, so it
                # will not expire either): left for the checker to judge.
                parcel.state = "stuck"
                self.history.add("workload", "pickup.door_shut", error=str(err), **parcel.shown())
                return
            except (OpFailed, httpx.HTTPError) as err:
                self.history.add(
                    "workload",
                    "pickup.fail",
                    attempt=attempt,
                    error=str(err)[:200],
                    **parcel.shown(),
                )
                time.sleep(RETRY_AFTER_S)
                continue
            parcel.state = "picked_up"
            parcel.picked_by = parcel.picked_by or how
            self.history.add(
                "workload", "pickup.ok", attempt=attempt, how=parcel.picked_by, **parcel.shown()
            )
            return

    def _pick_up_once(
        self, cabinet: CabinetInfo, parcel: Parcel, how: str, link: str | None
    ) -> None:
        assert parcel.compartment is not None and parcel.code is not None
        door = self.door(cabinet, parcel.compartment)
        if not door["occupied"]:  # an earlier try opened it and we took it: done
            return
        if how == "scan":
            self._scan_to_open(cabinet, parcel)
            parcel.picked_by = "scan"
            self._until(
                lambda: self.door(cabinet, parcel.compartment)["door_open"],
                f"door {parcel.compartment} open",
                DOOR_OPENS_WITHIN_S,
            )
            # The door the cloud's open command sprang: the pulse-level checker traces it here.
            self.history.add(
                "workload", "scan.opening", doors=[parcel.compartment], **parcel.shown()
            )
            self._take_out(cabinet, parcel.compartment)
            return
        self._wait_kiosk(cabinet)
        if how == "qr":
            assert link is not None
            # The phone shows the notice's page; the cabinet's scanner reads its QR.
            try:
                payload = Phone(self.http, self.info.api_url, parcel.phone).qr_from_link(link)
            except PhoneFailed as err:  # the cloud is down: the page shows no QR this time
                raise OpFailed(str(err)) from None
            screens = self._press(cabinet, "QrScanned", payload=payload)
        else:
            screens = self._press(cabinet, "CodeEntered", code=parcel.code)
        opening = [s for s in screens if s["type"] == "DoorsOpening"]
        if not opening:
            raise OpFailed(f"the code opened nothing: {_types(screens)}")
        compartments = opening[0]["compartments"]
        # Every door the code opened: the pulse-level checker traces each unlock to this act.
        self.history.add("workload", "pickup.opening", doors=compartments, **parcel.shown())
        if parcel.compartment not in compartments:
            # Its door is faulted (a lock whose unlock went unanswered while its board was
            # off): it stays shut until a technician comes. The parcel will expire there.
            raise DoorShut(f"the code opened {compartments}, not door {parcel.compartment}")
        parcel.picked_by = how
        try:
            self._take_out(cabinet, parcel.compartment)
        except OpFailed:
            # The person gives up on this try and leaves the pickup screen (Done), as the page
            # does: the cabinet drops their door if it still waits in the queue.
            with contextlib.suppress(OpFailed, httpx.HTTPError):  # a kiosk down took its queue
                self._press(cabinet, "PickupClosed", pickup=opening[0].get("pickup", ""))
            raise

    def _scan_to_open(self, cabinet: CabinetInfo, parcel: Parcel) -> None:
        """At the cabinet the recipient scans its screen's QR, proves the phone with the SMS
        code and taps "open" on the page; the cloud sends the cabinet the open."""
        assert parcel.compartment is not None

        # The screen shows "scan unavailable" while it cannot reach the cloud: a person waits a
        # little for the QR to come back.
        def shown_url() -> str | None:
            answer = self.http.get(f"{cabinet.kiosk_url}/api/scan-qr")
            url = answer.headers.get("X-Scan-URL") if answer.status_code == 200 else None
            # One the cloud called expired is not scanned again: the person waits for the next.
            return url if url != self._stale_scan.get(cabinet.id) else None

        scan_url = self._until(shown_url, "the screen's scan QR", min(20.0, self.wait_s))
        before = len(otps(self.notices(), parcel.phone))

        def otp_after(n: int) -> str | None:
            mine = otps(self.notices(), parcel.phone)
            return mine[-1] if len(mine) > n else None

        phone = Phone(self.http, self.info.api_url, parcel.phone)
        try:
            phone.scan_to_open(
                scan_url,
                otp_after,
                before,
                parcel.compartment,
                lambda probe, what: self._until(probe, what, min(30.0, self.wait_s)),
            )
        except PhoneFailed as err:
            if "expired" in str(err):
                self._stale_scan[cabinet.id] = scan_url
            raise OpFailed(str(err)) from None
        self.history.add("workload", "scan.open_queued", **parcel.shown())

    def _take_out(self, cabinet: CabinetInfo, compartment: str) -> None:
        self._until(
            lambda: self.door(cabinet, compartment)["door_open"],
            f"door {compartment} open",
            DOOR_OPENS_WITHIN_S,
        )
        self.act(cabinet, compartment, "take")
        self.act(cabinet, compartment, "close")

    # --- expiry and retrieval --------------------------------------------------------------------

    def _wait_in_locker(self, parcels: list[Parcel]) -> None:
        """Until the cloud has every parcel left in its locker (its deadline clock started): a
        clock jump before then would not expire it. A parcel the cabinet may never have
        recorded (an indeterminate deposit) is waited for a little only."""
        tracking = [p.tracking_no for p in parcels]
        sure = [p.tracking_no for p in parcels if p.state == "deposited"]
        deadline = time.monotonic() + 10
        try:
            self._until(
                lambda: all(
                    self.cloud_status(tracking).get(t) == "in_locker"
                    for t in (tracking if time.monotonic() < deadline else sure)
                ),
                "the cloud to have them in_locker",
                self.wait_s,
            )
        except OpFailed as err:
            self.history.add("workload", "deposit.late", error=str(err), tracking=tracking)

    def jump_clock(self) -> None:
        """Move the cloud workers' clock past the pickup window (API and cabinets keep theirs)."""
        self.clock_jumps += 1
        offset_file = self.info.clock_offset_file
        assert offset_file is not None
        offset_s = self.info.clock_base_offset_s + self.clock_jumps * EXPIRY_JUMP_S
        offset_file.write_text(f"{offset_s:g}\n")
        self.history.add("workload", "clock.jump", offset_s=offset_s)

    def _retrieve_all(self, parcels: list[Parcel]) -> None:
        cabinet = self.cabinets[parcels[0].cab]
        tracking = [p.tracking_no for p in parcels]
        try:
            self._until(
                lambda: all(s == "expired" for s in self._statuses(tracking, parcels)),
                "the cloud to expire them",
                self.wait_s,
            )
        except OpFailed as err:
            self.history.add(
                "workload", "expiry.late", error=str(err), cab=cabinet.id, tracking=tracking
            )
        # Only what the cloud expired is due back; the checker judges the rest.
        found = self.cloud_status(tracking)
        due = [p for p in parcels if found.get(p.tracking_no) == "expired"]
        for courier in sorted({p.courier for p in due}):
            mine = [p for p in due if p.courier == courier]
            for attempt in range(1, 3):
                try:
                    self._retrieve_once(cabinet, courier, mine)
                except (OpFailed, httpx.HTTPError) as err:
                    self.history.add(
                        "workload",
                        "retrieve.fail",
                        attempt=attempt,
                        cab=cabinet.id,
                        courier=courier[0],
                        error=str(err)[:200],
                    )
                    self._sign_out(cabinet)
                    time.sleep(RETRY_AFTER_S)
                    continue
                break
            for parcel in mine:
                if parcel.state != "retrieved":
                    # Its door would not open (a lock that failed while its board was off is
                    # faulted until a technician sees to it): left for the checker to judge.
                    parcel.state = "stuck"
                    self.history.add("workload", "retrieve.stuck", **parcel.shown())

    def _statuses(self, tracking: list[str], parcels: list[Parcel]) -> list[str]:
        found = self.cloud_status(tracking)
        # A parcel the cabinet never recorded (an indeterminate deposit) has nothing to expire.
        return [found.get(p.tracking_no, "expired") for p in parcels]

    def _retrieve_once(
        self, cabinet: CabinetInfo, courier: tuple[str, str], parcels: list[Parcel]
    ) -> None:
        due = [p for p in parcels if p.state != "retrieved" and self._occupied(cabinet, p)]
        if not due:
            for parcel in parcels:
                self._mark_retrieved(parcel)
            return
        self._wait_kiosk(cabinet)
        self._sign_out(cabinet)
        self._until(
            lambda: self.kiosk_status(cabinet).get("retrievals_due", 0) >= 1,
            "retrievals to reach the cabinet",
            min(30.0, self.wait_s),
        )
        self._expect(cabinet, "CourierSignIn", "SignedIn", courier_id=courier[0], pin=courier[1])
        screens = self._press(cabinet, "RetrieveParcels")
        opening = [s for s in screens if s["type"] == "RetrievalOpening"]
        if not opening:
            raise OpFailed(f"'take back' opened nothing: {_types(screens)}")
        self.history.add(
            "workload",
            "retrieve.opening",
            cab=cabinet.id,
            doors=opening[0]["compartments"],
            courier=courier[0],
        )
        stuck: list[str] = []
        for compartment in opening[0]["compartments"]:
            # A door that does not open is no reason to leave the others open with their
            # parcels in: the courier empties every door that did open, then reports the rest.
            try:
                self._take_out(cabinet, compartment)
            except OpFailed:
                stuck.append(compartment)
                continue
            self.history.add(
                "workload",
                "retrieve.door",
                cab=cabinet.id,
                compartment=compartment,
                courier=courier[0],
            )
        self._until(lambda: self._sign_out(cabinet), "the courier to sign out")
        for parcel in parcels:
            if not self._occupied(cabinet, parcel):
                self._mark_retrieved(parcel)
        if stuck:
            raise OpFailed(f"doors {stuck} did not open for 'take back'")
        if any(p.state != "retrieved" for p in parcels):
            raise OpFailed("parcels still in their doors after 'take back'")

    def _mark_retrieved(self, parcel: Parcel) -> None:
        if parcel.state != "retrieved":
            was = parcel.state
            parcel.state = "retrieved"
            self.history.add("workload", "retrieve.ok", was=was, **parcel.shown())

    def _occupied(self, cabinet: CabinetInfo, parcel: Parcel) -> bool:
        return parcel.compartment is not None and self.door(cabinet, parcel.compartment)["occupied"]

    # --- the kiosk and the simulator ------------------------------------------------------------

    def _press(self, cabinet: CabinetInfo, kind: str, **fields: str) -> list[dict[str, Any]]:
        from locker.kiosk_client import KioskClient

        return KioskClient(self.http, cabinet, error=OpFailed).press(kind, **fields)

    def _expect(self, cabinet: CabinetInfo, kind: str, screen: str, **fields: str) -> None:
        from locker.kiosk_client import KioskClient

        KioskClient(self.http, cabinet, error=OpFailed).expect(kind, screen, **fields)

    def _sign_out(self, cabinet: CabinetInfo) -> bool:
        """Sign the courier out, as a courier walking away from a failed try would: a door
        still held for a parcel that never went in is shut and given back first (Cancel)."""
        try:
            status = self.kiosk_status(cabinet)
            courier = status.get("courier") or {}
            if courier.get("step") == "at_door" and courier.get("compartment"):
                compartment = courier["compartment"]
                door = self.door(cabinet, compartment)
                if door["door_open"]:
                    self.act(cabinet, compartment, "close")
                # The parcel went in (the try failed after): confirm it, which is the truth.
                # Nothing went in: give the door back.
                kind = "Confirm" if door["occupied"] else "Cancel"
                self.http.post(f"{cabinet.kiosk_url}/api/input", json={"type": kind})
                self.history.add(
                    "workload", f"deposit.{kind.lower()}", cab=cabinet.id, compartment=compartment
                )
            answer = self.http.post(
                f"{cabinet.kiosk_url}/api/input", json={"type": "CourierSignOut"}
            )
        except (httpx.HTTPError, OpFailed):
            return False
        return answer.status_code in (200, 409)

    def _confirm_when_shut(self, cabinet: CabinetInfo) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while True:
            answer = self.http.post(f"{cabinet.kiosk_url}/api/input", json={"type": "Confirm"})
            if answer.status_code == 200:
                return answer.json()["screens"]
            if answer.status_code != 409 or time.monotonic() > deadline:
                raise OpFailed(f"kiosk {cabinet.id} refused Confirm: {answer.text[:200]}")
            time.sleep(0.1)

    def kiosk_status(self, cabinet: CabinetInfo) -> dict[str, Any]:
        try:
            answer = self.http.get(f"{cabinet.kiosk_url}/api/status")
        except httpx.HTTPError:
            return {}
        return answer.json() if answer.status_code == 200 else {}

    def _wait_kiosk(self, cabinet: CabinetInfo) -> None:
        self._until(lambda: self.kiosk_status(cabinet), f"kiosk {cabinet.id}", self.wait_s)

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
            raise OpFailed(f"the simulator refused to {action} door {compartment}: {answer.text}")

    def _until(self, probe: Callable[[], Any], what: str, timeout_s: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                found = probe()
            except httpx.HTTPError:
                found = None
            if found:
                return found
            if time.monotonic() > deadline:
                raise OpFailed(f"waited {timeout_s:g} s for {what}")
            time.sleep(0.1)

    def close(self) -> None:
        client = getattr(self._local, "http", None)
        if client is not None:
            client.close()


def _types(screens: list[dict[str, Any]]) -> list[str]:
    return [screen["type"] for screen in screens]


def _opening(screens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [screen for screen in screens if screen["type"] == "DepositDoorOpening"]
