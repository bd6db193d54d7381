"""The checker: once every fault is healed and the system is quiet, the invariants over the whole
history. Each reads what a person or an auditor could: the workload's history, the simulator's
doors, the cabinets' journals and maintenance screens, the cloud's database, the fake Twilio's
inbox. A violation names its invariant, what was seen, and the history records it is about.

Invariants:

- `parcel-state`   every parcel a courier saw deposited is in the cloud, in the state the people
                   left it in (picked_up, retrieved), with a timeline that walks the legal
                   transitions in order, each status once;
- `seq`            every cabinet's events are in the cloud gapless from 1 to the journal's last
                   seq, all applied, none stored twice, none left unacked in the journal;
- `applied-once`   no parcel deposited, picked up or retrieved twice in the cloud's events;
- `notice`         no SMS or WeChat message sent twice; every deposited parcel's recipient got
                   exactly one code, by whichever channel (an announced parcel never deposited
                   gets none; a code notice the cloud left `unknown` or `failed` is its own
                   stated reason);
- `door-opening`   every unlock pulse that opened a door on the simulator traces back to exactly
                   one recorded act (see `_door_pulses` for the rule);
- `door-picture`   the cloud's state of every door equals the cabinet's;
- `webhook`        every status of an announced parcel reached the ERP's receiver, signature
                   verified, under one webhook-id per status, in the order of its timeline, and
                   nothing the parcel never was;
- `reservation`    no door is still held for a parcel that was deposited or cancelled.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from cloud.core.parcels import TRANSITIONS
from locker.chaos.history import History
from locker.chaos.phones import CODE, openid_of
from locker.chaos.workload import Parcel
from locker.demo.erp_receiver import ReceivedWebhook
from locker.demo.stack import CabinetInfo, DemoInfo

# An act is recorded once the workload has seen its door open (or the try fail): from a little
# before the pulse (the kiosk may answer before the board pulses) to well after (the workload's
# longest waits under faults).
EARLY_S = 5.0
LATE_S = 240.0
INVARIANTS = (
    "parcel-state",
    "seq",
    "applied-once",
    "notice",
    "door-opening",
    "door-picture",
    "webhook",
    "reservation",
)
# The status graph, from the core's own transition table (so the checker and the code agree).
EDGES = {(before, rule.to.value) for (before, _event), rule in TRANSITIONS.items()}
STARTS = {to for before, to in EDGES if before is None}


@dataclass
class Violation:
    invariant: str
    detail: str
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Evidence:
    """Everything the checker reads, gathered after healing."""

    parcels: list[Parcel]
    sms: list[tuple[str, str, str]]  # (sid, to, body)
    sim: dict[str, dict[str, dict[str, Any]]]  # cab -> door id -> simulator door
    journals: dict[str, dict[str, Any]]  # cab -> {"last_seq", "unacked"}
    cabinet_doors: dict[str, dict[str, dict[str, Any]]]  # cab -> door id -> maintenance row
    cloud: dict[str, Any]  # read from the database: see `read_cloud`
    wechat: list[tuple[str, str, str]] = field(default_factory=list)  # (msgid, openid, text)
    webhooks: list[ReceivedWebhook] = field(default_factory=list)  # as the receiver got them
    # cab -> every unlock pulse its simulator logged: {"at", "door", "opened", "jammed", ...}
    pulses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class Checker:
    def __init__(self, history: History) -> None:
        self.history = history
        self.checked: Counter[str] = Counter()  # invariant -> facts checked
        self.violations: list[Violation] = []

    def fail(self, invariant: str, detail: str, records: list[dict[str, Any]] | None = None):
        self.violations.append(Violation(invariant, detail, records or []))

    def check(self, evidence: Evidence) -> list[Violation]:
        self._parcels(evidence)
        self._seqs(evidence)
        self._applied_once(evidence)
        self._notices(evidence)
        self._door_pulses(evidence)
        self._door_picture(evidence)
        self._webhooks(evidence)
        self._reservations(evidence)
        return self.violations

    # --- parcel-state ----------------------------------------------------------------------------

    def _parcels(self, ev: Evidence) -> None:
        rows = ev.cloud["parcels"]  # tracking no -> {status, parcel_id, compartment, timeline}
        for parcel in ev.parcels:
            if parcel.state in ("planned", "not_deposited"):
                continue
            records = self.history.about("tracking_no", parcel.tracking_no)
            row = rows.get(parcel.tracking_no)
            self.checked["parcel-state"] += 1
            if row is None:
                if parcel.state != "indeterminate" and parcel.parcel_id is not None:
                    self.fail(
                        "parcel-state",
                        f"{parcel.tracking_no} was deposited "
                        f"(parcel {parcel.parcel_id}) but the cloud has no such parcel",
                        records,
                    )
                continue
            want = {"picked_up": {"picked_up"}, "retrieved": {"retrieved"}}.get(
                parcel.state, {"picked_up", "retrieved"}
            )
            door = ev.cloud["doors"].get(parcel.cab, {}).get(row["compartment"] or "")
            if door in ("faulted", "out_of_service"):
                # The stated reason: its door is faulted, at the cabinet and in the cloud alike
                # (door-picture checks that), and the parcel waits there for a technician. Also
                # when the people took it: a door whose sensor stuck "latched" springs open for
                # them while the cabinet, reading a lock that did not release, faults it.
                want = want | {"in_locker", "expired"}
            if self._sensor_lied_during_act(parcel):
                # The stated reason: its door's sensor was stuck while the people opened it,
                # so the cabinet could not see the door open or shut and holds the parcel as
                # still inside, until it expires and a courier's take-back (of an empty door)
                # ends it retrieved. Its timeline must still be legal; door-picture still
                # checks that cabinet and cloud agree.
                want = want | {"in_locker", "expired", "retrieved"}
            if row["status"] not in want:
                self.fail(
                    "parcel-state",
                    f"{parcel.tracking_no} is {row['status']} in the "
                    f"cloud; the people left it {parcel.state}",
                    records,
                )
            if parcel.parcel_id and row["parcel_id"] != parcel.parcel_id:
                self.fail(
                    "parcel-state",
                    f"{parcel.tracking_no}: the cabinet said parcel "
                    f"{parcel.parcel_id}, the cloud has {row['parcel_id']}",
                    records,
                )
            self._timeline(parcel, row["timeline"], records)

    def _sensor_lied_during_act(self, parcel: Parcel) -> bool:
        """Whether a `stuck-sensor` fault on the parcel's door was in force at one of the
        people's acts on it (a door opened for the parcel, or a try at it)."""
        acts = [
            r["t"]
            for r in self.history.about("tracking_no", parcel.tracking_no)
            if r["op"].endswith((".opening", ".door", ".fail", ".ok"))
        ]
        for fault in self.history.of("stuck-sensor"):
            if fault.get("target") != parcel.cab or fault.get("door") != parcel.compartment:
                continue
            start, end = fault["t"], fault["t"] + fault.get("for_s", 0) + 1.0
            if any(start <= t <= end for t in acts):
                return True
        return False

    def _timeline(self, parcel: Parcel, timeline: list[dict[str, Any]], records) -> None:
        statuses = [t["status"] for t in timeline]
        walk: list[str] = []
        for status in statuses:
            if not walk or walk[-1] != status:
                walk.append(status)
        legal = (
            bool(walk)
            and walk[0] in STARTS
            and all(pair in EDGES for pair in itertools.pairwise(walk))
        )
        if not legal or len(set(walk)) != len(walk):
            self.fail(
                "parcel-state",
                f"{parcel.tracking_no}: timeline {walk} is not a legal walk of the parcel's life",
                records,
            )
        # In the order the cloud shows the timeline, the cabinet's rows follow its seq: a
        # cabinet's clock may be skewed (the nemesis does it), its seq never is.
        cabinet_seq = [t["seq"] for t in timeline if t["source"] == "cabinet"]
        if cabinet_seq != sorted(cabinet_seq, key=lambda seq: seq or 0):
            self.fail(
                "parcel-state",
                f"{parcel.tracking_no}: the timeline shows the cabinet's rows out of seq order: "
                f"{cabinet_seq}",
                records,
            )

    # --- seq -------------------------------------------------------------------------------------

    def _seqs(self, ev: Evidence) -> None:
        events = ev.cloud["events"]  # cab -> [(seq, event_id, type, applied, data)]
        applied_upto = ev.cloud["applied_upto"]
        for cab, journal in ev.journals.items():
            mine = events.get(cab, [])
            seqs = [e[0] for e in mine]
            self.checked["seq"] += len(seqs) + 1
            last = journal["last_seq"]
            records = self.history.about("cab", cab)[-20:]
            if seqs != list(range(1, last + 1)):
                missing = sorted(set(range(1, last + 1)) - set(seqs))[:10]
                self.fail(
                    "seq",
                    f"{cab}: the journal handed out seqs 1..{last}; the cloud "
                    f"holds {len(seqs)} of them (missing {missing})",
                    records,
                )
            if applied_upto.get(cab) != last or not all(e[3] for e in mine):
                self.fail("seq", f"{cab}: applied up to {applied_upto.get(cab)} of {last}", records)
            if journal["unacked"]:
                self.fail(
                    "seq",
                    f"{cab}: {journal['unacked']} events still unacked in its "
                    "journal after healing",
                    records,
                )
            ids = Counter(e[1] for e in mine)
            twice = [i for i, n in ids.items() if n > 1]
            if twice:
                self.fail("seq", f"{cab}: event ids stored under two seqs: {twice[:5]}", records)

    # --- applied-once ----------------------------------------------------------------------------

    def _applied_once(self, ev: Evidence) -> None:
        seen: Counter[tuple[str, str]] = Counter()
        for mine in ev.cloud["events"].values():
            for _seq, _id, kind, _applied, data in mine:
                if kind in ("parcel.deposited", "parcel.picked_up", "parcel.retrieved"):
                    seen[(kind, data.get("parcel_id"))] += 1
        self.checked["applied-once"] += len(seen)
        for (kind, parcel_id), n in seen.items():
            if n > 1:
                self.fail(
                    "applied-once",
                    f"{kind} of parcel {parcel_id} is in the cloud {n} times",
                    self.history.about("parcel_id", parcel_id),
                )
        for tracking, row in ev.cloud["parcels"].items():
            counts = Counter(t["status"] for t in row["timeline"] if t["status"] != "in_locker")
            for status, n in counts.items():
                if n > 1:
                    self.fail(
                        "applied-once",
                        f"{tracking}: {n} timeline rows {status}",
                        self.history.about("tracking_no", tracking),
                    )

    # --- notice ----------------------------------------------------------------------------------

    def _notices(self, ev: Evidence) -> None:
        for channel, messages in (("SMS", ev.sms), ("WeChat message", ev.wechat)):
            ids = Counter(msgid for msgid, _to, _body in messages)
            bodies = Counter((to, body) for _id, to, body in messages)
            self.checked["notice"] += len(messages)
            for (_to, body), n in bodies.items():
                if n > 1:
                    tracking = next(
                        (p.tracking_no for p in ev.parcels if p.tracking_no in body), None
                    )
                    self.fail(
                        "notice",
                        f"one {channel} sent {n} times ({tracking}): {body[:80]!r}",
                        self.history.about("tracking_no", tracking),
                    )
            if any(n > 1 for n in ids.values()):
                self.fail("notice", f"the {channel} provider saw one message id twice")
        for parcel in ev.parcels:
            row = ev.cloud["parcels"].get(parcel.tracking_no)
            if row is None:
                continue
            # Its code by either channel: SMS to the phone, WeChat to the openid bound to it.
            to = {parcel.phone, openid_of(parcel.phone)}
            codes = {
                m.group(1)
                for _id, who, body in ev.sms + ev.wechat
                if who in to and parcel.tracking_no in body and (m := CODE.search(body))
            }
            self.checked["notice"] += 1
            never_deposited = {s["status"] for s in row["timeline"]} <= {"announced", "cancelled"}
            if not codes and never_deposited:
                continue  # the stated reason: announced, never deposited, so no code was due
            held = {status for kind, status in row.get("notices", []) if kind == "deposited"}
            if not codes and held & {"unknown", "failed"}:
                # The stated reason: its code notice may have gone (a worker died mid-send and
                # the row is left for a human) or failed for good; the cloud says which.
                continue
            if len(codes) != 1:
                self.fail(
                    "notice",
                    f"{parcel.tracking_no}: its recipient got {len(codes)} "
                    "pickup codes (one was due)",
                    self.history.about("tracking_no", parcel.tracking_no),
                )

    # --- door-opening ----------------------------------------------------------------------------

    def _door_pulses(self, ev: Evidence) -> None:
        """Every unlock pulse that opened a door traces back to exactly one recorded act.

        The rule: a pulse that found its door shut and let it spring open is an *opening*. Pulses
        that opened nothing (a jammed lock, a board without power, a door already open: the
        cabinet's retries of the same unlock, or a restarted daemon finishing it) are retries of
        the act in hand and need no act of their own. Each opening is matched, in time order, to
        one act on that cabinet recorded from `EARLY_S` before it to `LATE_S` after it (the
        workload records an act once it has seen the door open, or once the try failed):

        - on that very door: the door a deposit was given (`deposit.door`), every door a code
          opened (`pickup.opening`), every door a courier's take-back opened
          (`retrieve.opening`), every door of any other `*.opening` record with `doors`;
        - on any door of that cabinet: a try that failed half-way (`deposit.fail`,
          `pickup.fail`, `retrieve.fail`), which may have opened a door it never saw.

        An act explains one opening at most, so a door opened twice for one pickup is caught; an
        opening no act explains is a door opened with no code, courier or manager act.
        """
        acts: dict[str, list[dict[str, Any]]] = defaultdict(list)  # cab -> acts, in time order
        for record in self.history.records:
            if record["who"] != "workload" or "mono" not in record:
                continue
            op, cab = record["op"], record.get("cab")
            if op == "deposit.door":
                acts[cab].append({**record, "doors": {record["compartment"]}})
            elif op.endswith(".opening") and "doors" in record:
                # `pickup.opening`, `retrieve.opening`, and any other way a person opens doors
                # that records the doors the kiosk said it opened.
                # One act per door it opened: a take-back opens each of the courier's doors.
                acts[cab] += [{**record, "doors": {door}} for door in record["doors"]]
            elif op.endswith(".fail"):  # deposit.fail, pickup.fail, retrieve.fail, ...
                acts[cab].append({**record, "doors": None})  # any door of the cabinet
        for cab, pulses in ev.pulses.items():
            openings = sorted((p for p in pulses if p["opened"]), key=lambda p: p["at"])
            self.checked["door-opening"] += len(pulses)
            unused = list(acts.get(cab, []))
            for pulse in openings:
                match = self._act_for(pulse, unused)
                if match is None:
                    self.fail(
                        "door-opening",
                        f"{cab} door {pulse['door']}: an unlock pulse opened it at "
                        f"{pulse['at']:.3f} (monotonic) and no recorded act explains it",
                        [
                            r
                            for r in self.history.about("cab", cab)
                            if abs(r.get("mono", 0) - pulse["at"]) <= LATE_S
                        ][-20:],
                    )
                    continue
                unused.remove(match)

    @staticmethod
    def _act_for(pulse: dict[str, Any], acts: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The act that explains an opening: the earliest in its window naming its door, else
        the earliest failed try in its window."""
        window = [a for a in acts if pulse["at"] - EARLY_S <= a["mono"] <= pulse["at"] + LATE_S]
        named = [a for a in window if a["doors"] is not None and pulse["door"] in a["doors"]]
        if named:
            return named[0]
        return next((a for a in window if a["doors"] is None), None)

    # --- webhook ---------------------------------------------------------------------------------

    def _webhooks(self, ev: Evidence) -> None:
        got: dict[str, list[ReceivedWebhook]] = defaultdict(list)
        for item in ev.webhooks:
            if not item.verified:
                self.checked["webhook"] += 1
                self.fail(
                    "webhook",
                    f"a webhook ({item.webhook_id}, {item.event_type} of "
                    f"{item.tracking_no or '?'}) failed verification: {item.error}",
                    self.history.about("tracking_no", item.tracking_no),
                )
                continue
            got[item.tracking_no].append(item)
        for parcel in ev.parcels:
            row = ev.cloud["parcels"].get(parcel.tracking_no)
            if not parcel.announced or row is None:
                continue
            records = self.history.about("tracking_no", parcel.tracking_no)
            walk: list[str] = []
            for status in (t["status"] for t in row["timeline"]):
                if not walk or walk[-1] != status:
                    walk.append(status)
            if walk[:1] != ["announced"]:
                continue  # no try of the ERP reached the cloud: a walk-in, the ERP owns nothing
            want = [f"parcel.{status}" for status in walk]
            mine = got.get(parcel.tracking_no, [])
            ids: dict[str, set[str]] = defaultdict(set)
            order: list[str] = []  # event types in the order they first arrived
            for item in mine:
                ids[item.event_type].add(item.webhook_id)
                if item.event_type not in order:
                    order.append(item.event_type)
            self.checked["webhook"] += len(want)
            missing = [event for event in want if event not in ids]
            if missing:
                self.fail(
                    "webhook",
                    f"{parcel.tracking_no}: the ERP never got {missing} (timeline {walk})",
                    records,
                )
            extra = [event for event in ids if event not in want]
            if extra:
                self.fail(
                    "webhook",
                    f"{parcel.tracking_no}: the ERP got {extra}, never in its timeline {walk}",
                    records,
                )
            twice = {event: sorted(n) for event, n in ids.items() if len(n) > 1}
            if twice:
                self.fail(
                    "webhook",
                    f"{parcel.tracking_no}: one status under several webhook-ids {twice}",
                    records,
                )
            if [event for event in order if event in want] != [e for e in want if e in ids]:
                self.fail(
                    "webhook",
                    f"{parcel.tracking_no}: webhooks arrived as {order}, the timeline is {walk}",
                    records,
                )

    # --- reservation -----------------------------------------------------------------------------

    def _reservations(self, ev: Evidence) -> None:
        for tracking, reservation in ev.cloud.get("reservations", {}).items():
            row = ev.cloud["parcels"].get(tracking)
            self.checked["reservation"] += 1
            if row is None or row["status"] == "announced" or reservation["ended_at"]:
                continue
            self.fail(
                "reservation",
                f"{tracking} is {row['status']}, yet an {reservation['door_size']} door of "
                f"{reservation['cabinet_id']} is still held for it (until {reservation['until']})",
                self.history.about("tracking_no", tracking),
            )

    # --- door-picture ----------------------------------------------------------------------------

    def _door_picture(self, ev: Evidence) -> None:
        from cabinet.core.compartments import WIRE_STATE, CompartmentState

        cloud_doors = ev.cloud["doors"]  # cab -> door -> state
        for cab, doors in ev.cabinet_doors.items():
            for door_id, row in doors.items():
                self.checked["door-picture"] += 1
                theirs = cloud_doors.get(cab, {}).get(door_id)
                # As the contract puts the cabinet's state on the wire: a door being opened
                # ("opening") still holds its parcel, "occupied", until it is seen shut.
                ours = WIRE_STATE.get(CompartmentState(row["state"]), row["state"])
                if theirs != ours:
                    self.fail(
                        "door-picture",
                        f"{cab} door {door_id}: the cabinet says "
                        f"{row['state']}, the cloud {theirs}",
                        [
                            r
                            for r in self.history.about("compartment", door_id)
                            if r.get("cab") == cab
                        ][-10:],
                    )


# --- gathering the evidence -----------------------------------------------------------------------


def read_cloud(database_url: str) -> dict[str, Any]:
    """The cloud's parcels with their timelines, events, cabinets and doors, read directly."""
    from sqlmodel import Session, select

    from cloud.db.engine import make_engine
    from cloud.db.models import (
        Cabinet,
        Compartment,
        InboxEvent,
        NoticeOutbox,
        Parcel,
        ParcelEvent,
    )
    from cloud.db.reads import TIMELINE_ORDER
    from cloud.db.reservation_models import Reservation

    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            parcels: dict[str, Any] = {}
            by_row: dict[str, dict[str, Any]] = {}
            for p in session.exec(select(Parcel)):
                by_row[p.id] = parcels[p.tracking_no] = {
                    "status": p.status,
                    "parcel_id": p.parcel_id,
                    "compartment": p.compartment,
                    "timeline": [],
                    "row_id": p.id,
                }
            # In the order the cloud shows a timeline (cloud.db.reads.timeline's).
            for t in session.exec(select(ParcelEvent).order_by(*TIMELINE_ORDER)):
                by_row[t.parcel_row_id]["timeline"].append(
                    {"status": t.status, "at": t.at, "source": t.source, "seq": t.seq}
                )
            events: dict[str, list[tuple]] = defaultdict(list)
            query = select(InboxEvent).order_by(InboxEvent.cabinet_id, InboxEvent.seq)
            for e in session.exec(query):
                events[e.cabinet_id].append((e.seq, e.event_id, e.type, e.applied, e.data))
            # Each parcel's recipient notices by kind and status: a notice left `unknown` (a
            # worker died mid-send, so it may have gone: a human decides) is a stated reason.
            for n in session.exec(select(NoticeOutbox).where(NoticeOutbox.audience == "recipient")):
                if n.parcel_row_id in by_row:
                    by_row[n.parcel_row_id].setdefault("notices", []).append((n.kind, n.status))
            applied = {c.id: c.applied_upto for c in session.exec(select(Cabinet))}
            doors: dict[str, dict[str, str]] = defaultdict(dict)
            for c in session.exec(select(Compartment)):
                doors[c.cabinet_id][c.id] = c.state
            reservations: dict[str, dict[str, Any]] = {}
            tracking_of = {row["row_id"]: tracking for tracking, row in parcels.items()}
            for r in session.exec(select(Reservation)):
                reservations[tracking_of.get(r.parcel_row_id, r.parcel_row_id)] = {
                    "cabinet_id": r.cabinet_id,
                    "door_size": r.door_size,
                    "until": r.until,
                    "ended_at": r.ended_at,
                    "ended_why": r.ended_why,
                }
    finally:
        engine.dispose()
    return {
        "parcels": parcels,
        "events": dict(events),
        "applied_upto": applied,
        "doors": doors,
        "reservations": reservations,
    }


def read_journal(cabinet: CabinetInfo) -> dict[str, Any]:
    path = cabinet.dir / "journal.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        last = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        unacked = conn.execute("SELECT COUNT(*) FROM events WHERE acked = 0").fetchone()
    return {"last_seq": int(last[0]), "unacked": int(unacked[0])}


def read_sim(http: httpx.Client, cabinet: CabinetInfo) -> dict[str, dict[str, Any]]:
    state = http.get(f"{cabinet.sim_url}/state").json()
    by_wiring = {(b["address"], d["channel"]): d for b in state["boards"] for d in b["doors"]}
    return {w["id"]: by_wiring[(w["board"], w["channel"])] for w in cabinet.doors}


def read_pulses(cabinet: CabinetInfo) -> list[dict[str, Any]]:
    """Every unlock pulse the cabinet's simulator logged, with the door it is wired to."""
    from firmware_sim.pulse_log import file_name
    from firmware_sim.pulse_log import read_pulses as read_file
    from locker.chaos.cluster import pulse_dir

    door_of = {(w["board"], w["channel"]): w["id"] for w in cabinet.doors}
    pulses = []
    for board in sorted({w["board"] for w in cabinet.doors}):
        for pulse in read_file(pulse_dir(cabinet) / file_name("8a", board)):
            pulses.append({**pulse, "door": door_of.get((pulse["board"], pulse["channel"]))})
    return pulses


def read_cabinet_doors(
    http: httpx.Client, cabinet: CabinetInfo, technician_pin: str
) -> dict[str, dict[str, Any]]:
    """Every door as the cabinet's maintenance screen shows it (the technician signs in)."""
    url = f"{cabinet.kiosk_url}/api/maintenance"
    signed_in = http.post(f"{url}/sign-in", json={"pin": technician_pin})
    signed_in.raise_for_status()
    token = {"X-Maintenance-Token": signed_in.json()["token"]}
    try:
        doors = http.get(f"{url}/status", headers=token).json()["doors"]
    finally:
        http.post(f"{url}/sign-out", json={}, headers=token)
    return {d["compartment"]: d for d in doors}


def gather(
    info: DemoInfo,
    parcels: list[Parcel],
    sms: Callable[[], list[tuple[str, str, str]]],
    database_url: str,
) -> Evidence:
    with httpx.Client(timeout=10) as http:
        return Evidence(
            parcels=parcels,
            sms=sms(),
            sim={c.id: read_sim(http, c) for c in info.cabinets},
            journals={c.id: read_journal(c) for c in info.cabinets},
            cabinet_doors={
                c.id: read_cabinet_doors(http, c, info.technician_pin) for c in info.cabinets
            },
            cloud=read_cloud(database_url),
            pulses={c.id: read_pulses(c) for c in info.cabinets},
        )


def dump(evidence: Evidence) -> str:
    """The evidence as JSON (phones left out), saved beside the history for a post-mortem."""
    data = {
        "journals": evidence.journals,
        "cloud_applied_upto": evidence.cloud["applied_upto"],
        "cloud_doors": evidence.cloud["doors"],
    }
    return json.dumps(data, indent=1, default=str)
