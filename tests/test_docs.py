"""Keep docs/ true to the code, its links whole, and every reference inside the repository.

The pages under docs/ are the project's contracts. Each table a test below names is compared
with the code it describes (the pydantic models, the topic kinds, the lock-board codec and the
driver's timing, the parcel table), every JSON example is decoded with the protocol's decoder,
and the committed JSON Schemas are compared with what `locker protocol schema` writes now.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from cabinet.drivers.rs485 import BusTiming
from cloud.core.parcels import ERP_STATES, EVENT_ORDER_STATES, ORDER_STATES, TRANSITIONS, Status
from protocol.asyncapi import asyncapi_document
from protocol.codec import decode
from protocol.lockboard.family_8a import ReplyDecoder, RequestDecoder, checksum
from protocol.messages import (
    COMMAND_TYPES,
    EVENT_TYPES,
    Ack,
    CommandBase,
    EventAck,
    EventBase,
    State,
)
from protocol.schema import write_schemas
from protocol.topics import QOS, TopicKind, topic_template
from tests.protocol.test_lockboard_golden import REPLIES, REQUESTS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCHEMAS = DOCS / "schemas"
REFRESH_SCHEMAS = "locker protocol schema docs/schemas"
ASYNCAPI = DOCS / "asyncapi.json"
REFRESH_ASYNCAPI = "locker protocol asyncapi docs/asyncapi.json"

# Pages another branch writes at the same time. A link to one is allowed while it is missing;
# once the page exists it must leave this set (the test below says so), so nothing stays excused.
PENDING_PAGES: set[Path] = set()

# Paths that do not exist in a clone: the folder the contracts were first written in.
OUTSIDE = re.compile(
    r"\.\./shared\b|/work/shared\b|\bshared/\w+\.md|(?<![\w/.-])design\.md|(?<![\w/.-])style\.md"
)
# Outside docs/, the lock-board page is `docs/lockboard.md`; a bare name points nowhere.
BARE_LOCKBOARD = re.compile(r"(?<![\w/.-])lockboard\.md")
DOCS_REFERENCE = re.compile(r"(?<![\w/.-])docs/[\w./-]*\w(?:#[\w-]+)?")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


# --- helpers --------------------------------------------------------------------------------------


def tracked_files() -> list[Path]:
    """Every file git tracks or would track (new, not ignored) in this checkout."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted(ROOT / name for name in out.split("\0") if name and (ROOT / name).is_file())


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # a binary file refers to nothing


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.MULTILINE)}


def check_target(target: Path, anchor: str | None, where: str) -> str | None:
    """Return what is wrong with a reference to `target#anchor`, or None."""
    if target in PENDING_PAGES and not target.exists():
        return None
    if not target.exists():
        return f"{where}: {target.relative_to(ROOT)} does not exist"
    if anchor and target.suffix == ".md" and anchor not in anchors(target):
        return f"{where}: {target.relative_to(ROOT)} has no section #{anchor}"
    return None


def section(page: str, heading: str) -> str:
    """The text under `heading` (any level) up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", page, re.MULTILINE)
    assert match, f"no heading {heading!r}"
    level = len(match.group(1))
    rest = page[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def table(page: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped, header and rule left out) of the first table under `heading`."""
    lines = [line for line in section(page, heading).splitlines() if line.startswith("|")]
    first = next(i for i, line in enumerate(lines) if set(line) <= set("|-: "))
    rows = []
    for line in lines[first + 1 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert rows, f"no table under {heading!r}"
    return rows


def ticked(cell: str) -> list[str]:
    """The `code` spans of a table cell, in order."""
    return re.findall(r"`([^`]+)`", cell)


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


# --- references and links -------------------------------------------------------------------------


def test_no_file_refers_outside_the_repository() -> None:
    found = []
    for path in tracked_files():
        text = text_of(path)
        if text is None or path == Path(__file__).resolve():
            continue
        rel = path.relative_to(ROOT)
        for number, line in enumerate(text.splitlines(), 1):
            bare = BARE_LOCKBOARD.search(line) and rel.parts[0] != "docs"
            if OUTSIDE.search(line) or bare:
                found.append(f"{rel}:{number}: {line.strip()}")
    assert not found, "point these at docs/ (the shared folder is not in the repository):\n" + (
        "\n".join(found)
    )


def test_every_relative_link_in_markdown_resolves() -> None:
    broken = []
    for path in tracked_files():
        if path.suffix != ".md":
            continue
        text = FENCE.sub("", path.read_text(encoding="utf-8"))
        for target in LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            problem = check_target(resolved, anchor, f"{path.relative_to(ROOT)} → {target}")
            if problem:
                broken.append(problem)
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_docs_reference_in_code_and_comments_resolves() -> None:
    broken = []
    for path in tracked_files():
        text = text_of(path)
        if text is None:
            continue
        for reference in DOCS_REFERENCE.findall(text):
            name, _, anchor = reference.partition("#")
            problem = check_target(ROOT / name, anchor, f"{path.relative_to(ROOT)} → {reference}")
            if problem:
                broken.append(problem)
    assert not broken, "references to docs/ that point nowhere:\n" + "\n".join(broken)


def test_pending_pages_leave_the_excuse_list_once_they_exist() -> None:
    arrived = sorted(str(p.relative_to(ROOT)) for p in PENDING_PAGES if p.exists())
    assert not arrived, f"remove {arrived} from PENDING_PAGES in tests/test_docs.py"


def test_the_index_lists_every_page() -> None:
    index = page("README.md")
    pages = {p.name for p in DOCS.glob("*.md") if p.name != "README.md"}
    pages |= {p.name for p in PENDING_PAGES}
    assert pages <= set(LINK.findall(index))


# --- the JSON Schemas -----------------------------------------------------------------------------


def test_the_committed_json_schemas_are_current(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    fresh = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()}
    committed = {p.name: p.read_text(encoding="utf-8") for p in SCHEMAS.iterdir()}
    stale = sorted(
        name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name)
    )
    assert not stale, f"docs/schemas is stale ({', '.join(stale)}): run `{REFRESH_SCHEMAS}`"


def test_the_committed_asyncapi_document_is_current() -> None:
    committed = json.loads(ASYNCAPI.read_text(encoding="utf-8"))
    assert committed == asyncapi_document(), (
        f"docs/asyncapi.json is stale: run `{REFRESH_ASYNCAPI}`"
    )


def test_the_asyncapi_document_describes_every_topic_and_message() -> None:
    document = json.loads(ASYNCAPI.read_text(encoding="utf-8"))
    assert document["asyncapi"] == "3.0.0"
    channels = document["channels"]
    assert {c["address"] for c in channels.values()} == {topic_template(k) for k in TopicKind}
    for operation in document["operations"].values():
        kind = TopicKind(operation["channel"]["$ref"].rsplit("/", 1)[1])
        # Written from the cloud's side: it receives what cabinets publish.
        assert operation["action"] == ("receive" if kind.publisher == "cabinet" else "send")
        assert operation["bindings"]["mqtt"]["qos"] == QOS
        assert operation["bindings"]["mqtt"]["retain"] is kind.retained
    names = {m["name"] for m in document["components"]["messages"].values()}
    assert {*EVENT_TYPES, *COMMAND_TYPES, "state", "ack", "event-ack"} == names
    for message in document["components"]["messages"].values():
        assert (DOCS / message["payload"]["$ref"]).is_file(), message["payload"]


# --- docs/mqtt.md ---------------------------------------------------------------------------------


def test_the_topic_table_is_the_code() -> None:
    rows = table(page("mqtt.md"), "Topics")
    documented = {(ticked(r[0])[0], r[1], r[2], r[3]) for r in rows}
    assert documented == {
        (topic_template(kind), kind.publisher, str(QOS), "yes" if kind.retained else "no")
        for kind in TopicKind
    }


@pytest.mark.parametrize(
    ("heading", "model"),
    [
        ("Event envelope", EventBase),
        ("Command envelope", CommandBase),
        ("Presence: birth and will", State),
        ("Acks", Ack),
        ("Event acks", EventAck),
    ],
)
def test_each_envelope_table_lists_the_models_fields(heading: str, model: type) -> None:
    fields = [ticked(row[0])[0] for row in table(page("mqtt.md"), heading)]
    expected = list(model.model_fields)
    if model in (EventBase, CommandBase):
        expected += ["type", "data"]  # declared by each type's model
    assert fields == expected


def flat_fields(model: type[BaseModel]) -> list[str]:
    """A data model's field names, each list of objects followed by its items' field names."""
    names = []
    for name, info in model.model_fields.items():
        names.append(name)
        for arg in get_args(info.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                names += flat_fields(arg)
    return names


@pytest.mark.parametrize(
    ("heading", "types"), [("Events", EVENT_TYPES), ("Commands", COMMAND_TYPES)]
)
def test_each_message_type_is_documented_with_its_data_fields(heading: str, types: dict) -> None:
    rows = table(page("mqtt.md"), heading)
    documented = {ticked(row[0])[0]: ticked(row[1]) for row in rows}
    assert list(documented) == list(types)
    for name, model in types.items():
        assert documented[name] == flat_fields(model.model_fields["data"].annotation), name


def test_every_json_example_decodes_on_its_topic() -> None:
    text = page("mqtt.md")
    examples = re.findall(r"<!-- topic: (\S+) -->\n```json\n(.*?)```", text, re.DOTALL)
    assert len(examples) == text.count("```json") >= 8
    kinds = set()
    for topic, payload in examples:
        message = decode(topic, payload.encode())
        kinds.add(type(message).TOPIC_KIND)
        assert json.loads(payload)["v"] == 1
    assert kinds == set(TopicKind)


def test_the_liberal_ack_example_decodes_as_a_plain_success() -> None:
    text = page("mqtt.md")
    (payload,) = re.findall(r'```json\n(\{[^`]*"ok": true, "error": ""\})\n```', text)
    assert decode("lockers/v1/SZ-NS-0042/ack", payload.encode()) == Ack(
        cmd="c7f1e2a4-5b6c-4d7e-8f90-a1b2c3d4e5f6", ok=True
    )


# --- docs/lockboard.md ----------------------------------------------------------------------------


def test_the_golden_table_is_the_golden_test() -> None:
    rows = table(page("lockboard.md"), "Golden frames")
    documented = {row[0]: ticked(row[1])[0] for row in rows}
    in_test = {what: wire for what, _frame, wire, *_ in [*REQUESTS, *REPLIES]}
    assert documented == in_test


@pytest.mark.parametrize("row", [*REQUESTS, *REPLIES], ids=lambda row: row[0])
def test_each_golden_frame_in_the_docs_decodes_to_its_frame(row: tuple) -> None:
    what, frame, *rest = row
    documented = {r[0]: ticked(r[1])[0] for r in table(page("lockboard.md"), "Golden frames")}
    wire = bytes.fromhex(documented[what])
    assert wire[-1] == checksum(wire[:-1])
    if rest[1:]:  # a reply: the host knows what it has in flight
        decoder = ReplyDecoder()
        decoder.expect(rest[1])
    else:
        decoder = RequestDecoder()
    assert decoder.feed(wire) == [frame]


def test_the_timing_table_is_the_drivers_defaults() -> None:
    rows = table(page("lockboard.md"), "Line and timing")
    documented = {ticked(row[0])[0]: float(row[1]) for row in rows}
    defaults = BusTiming()
    assert documented == {name: float(getattr(defaults, name)) for name in documented}
    assert set(documented) == set(vars(defaults)) - {"idle_read_s"}  # idle_read_s is internal
    # A byte is 10 bits at 9600 baud: the page's 1.04 ms per byte and 5.2 ms per 5-byte frame.
    assert round(10 / 9600 * 1000, 2) == 1.04 and round(5 * 10 / 9600 * 1000, 1) == 5.2


# --- docs/parcel-life.md --------------------------------------------------------------------------


def test_the_status_table_is_the_code() -> None:
    rows = table(page("parcel-life.md"), "Statuses")
    assert [ticked(row[0])[0] for row in rows] == [status.value for status in Status]


def test_the_transition_table_is_the_code() -> None:
    rows = table(page("parcel-life.md"), "Transitions")
    documented = [
        (
            row[0] if row[0] == "(none)" else ticked(row[0])[0],
            ticked(row[1])[0],
            ticked(row[2])[0],
            row[3],
        )
        for row in rows
    ]
    in_code = [
        (
            "(none)" if before is None else before.value,
            event.__name__,
            rule.to.value,
            rule.source.value,
        )
        for (before, event), rule in TRANSITIONS.items()
    ]
    assert documented == in_code


def test_the_erp_state_table_is_the_code() -> None:
    rows = table(page("parcel-life.md"), "By status")
    assert {ticked(row[0])[0]: ticked(row[1])[0] for row in rows} == {
        status.value: state.value for status, state in ERP_STATES.items()
    }


def test_the_order_state_tables_are_the_code() -> None:
    """Both tables, all three names side by side: by status, and by event (every event of the
    transition table has a row)."""
    by_status = table(page("parcel-life.md"), "By status")
    assert {ticked(row[0])[0]: [ticked(c)[0] for c in row[1:]] for row in by_status} == {
        status.value: [row.erp.value, row.zh, row.shipx] for status, row in ORDER_STATES.items()
    }
    by_event = table(page("parcel-life.md"), "By event")
    assert {ticked(row[0])[0]: [ticked(c)[0] for c in row[1:]] for row in by_event} == {
        event: [row.erp.value, row.zh, row.shipx] for event, row in EVENT_ORDER_STATES.items()
    }
    assert set(EVENT_ORDER_STATES) == {event.__name__ for _, event in TRANSITIONS}
