"""Turn the core's dataclasses into plain JSON-ready dicts and back, for journal snapshots.

Only the shapes the state uses are supported: dataclasses, str/int/float/bool, enums,
aware datetimes (ISO 8601 text), `X | None`, `tuple[X, ...]` and `dict[str, X]`. Anything else
is a bug in the state's types and fails loudly, on dump as on load.
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from cabinet.core.errors import BadSnapshot, CoreError

T = TypeVar("T")


def dump(value: Any, cache: SnapshotCache | None = None) -> Any:
    """Return `value` as nested dicts, lists and JSON scalars (reusing `cache` if given)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if cache is not None and type(value).__dataclass_params__.frozen:
            return cache.frozen(value)
        return {f.name: dump(getattr(value, f.name), cache) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [dump(item, cache) for item in value]
    if isinstance(value, dict):
        return {_key(k): dump(v, cache) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot snapshot a {type(value).__name__}")


class SnapshotCache:
    """Reuse the dumps of frozen dataclasses from one snapshot to the next.

    The daemon writes a snapshot at every step before a door moves, and walking a cabinet of
    a hundred parcels took 4 ms. The core never changes a frozen dataclass in place (every
    field of one is immutable too), and a new cabinet shares nearly all of them with the last,
    so a leaf seen in the previous snapshot, by identity, keeps its dump. Only the last
    snapshot's leaves are kept, so the cache never grows past one cabinet.
    """

    def __init__(self) -> None:
        self._previous: dict[int, tuple[Any, Any]] = {}
        self._current: dict[int, tuple[Any, Any]] = {}

    def dump(self, value: Any) -> Any:
        """Dump `value`, reusing what the previous call dumped of the same frozen leaves."""
        self._current = {}
        try:
            return dump(value, self)
        finally:
            self._previous, self._current = self._current, {}

    def frozen(self, value: Any) -> Any:
        hit = self._previous.get(id(value)) or self._current.get(id(value))
        if hit is not None and hit[0] is value:  # the object itself, not a reused id
            out = hit[1]
        else:
            out = {f.name: dump(getattr(value, f.name), self) for f in dataclasses.fields(value)}
        self._current[id(value)] = (value, out)
        return out


def encode(value: Any, cache: JsonSnapshotCache) -> str:
    """`json.dumps(dump(value), separators=(",", ":"))`, reusing the cache's frozen leaves' text."""
    kind = type(value)
    if kind is dict:
        return _object((_key(k), encode(v, cache)) for k, v in value.items())
    if kind is str:
        return _string(value)
    params = getattr(kind, "__dataclass_params__", None)
    if params is not None:
        if params.frozen:
            return cache.frozen_json(value)
        fields = dataclasses.fields(value)
        return _object((f.name, encode(getattr(value, f.name), cache)) for f in fields)
    if kind is tuple or kind is list:
        return "[" + ",".join(encode(item, cache) for item in value) + "]"
    return _compact(dump(value))


def _object(items: Any) -> str:
    return "{" + ",".join(f"{_string(name)}:{text}" for name, text in items) + "}"


def _string(text: str) -> str:
    # Ids, names and ISO times need no escaping: skip json.dumps's call for them.
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return _compact(text)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class JsonSnapshotCache:
    """Like `SnapshotCache`, but keeps each frozen leaf's JSON text: the journal stores text.

    Encoding a 96-parcel cabinet's 50 KB snapshot with `json.dumps` took 1-5 ms of every step,
    before the unlock's fsync; a new cabinet shares nearly every parcel and compartment with
    the last, so their text is reused and only what changed is encoded. As with
    `SnapshotCache`, only the last snapshot's leaves are kept.
    """

    def __init__(self) -> None:
        self._previous: dict[int, tuple[Any, str]] = {}
        self._current: dict[int, tuple[Any, str]] = {}

    def encode(self, value: Any) -> str:
        """`value` as compact JSON text, reusing the previous call's frozen leaves."""
        self._current = {}
        try:
            return encode(value, self)
        finally:
            self._previous, self._current = self._current, {}

    def encode_parts(
        self, value: Any, head_fields: Iterable[tuple[str, str]] = ()
    ) -> SnapshotParts:
        """A dataclass `value` as `SnapshotParts`: `encode`'s text, cut at its dict fields.

        `head_fields` are (name, JSON text) to put first in the head (the snapshot's version).
        """
        self._current = {}
        try:
            head = list(head_fields)
            entries: dict[tuple[str, str], str] = {}
            for f in dataclasses.fields(value):
                field_value = getattr(value, f.name)
                if type(field_value) is dict:
                    head.append((f.name, "{}"))
                    for key, item in field_value.items():
                        entries[(f.name, _key(key))] = encode(item, self)
                else:
                    head.append((f.name, encode(field_value, self)))
            return SnapshotParts(_object(head), entries)
        finally:
            self._previous, self._current = self._current, {}

    def frozen_json(self, value: Any) -> str:
        hit = self._previous.get(id(value)) or self._current.get(id(value))
        if hit is not None and hit[0] is value:  # the object itself, not a reused id
            out = hit[1]
        else:
            fields = dataclasses.fields(value)
            out = _object((f.name, encode(getattr(value, f.name), self)) for f in fields)
        self._current[id(value)] = (value, out)
        return out


@dataclasses.dataclass(frozen=True)
class SnapshotParts:
    """A snapshot as the journal stores it: one part per entry of each top-level dict field.

    `head` is the JSON object's text with every dict-valued field written as `{}`; `entries`
    maps (field, key) to that entry's JSON text, in the dicts' order. A step changes a parcel
    or two of a hundred, so the journal rewrites those rows and not the ~50 KB whole (SD-card
    wear). `join` gives back exactly the dict the whole snapshot's JSON would load as.
    """

    head: str
    entries: dict[tuple[str, str], str]

    @classmethod
    def split(cls, snapshot: Mapping[str, Any]) -> SnapshotParts:
        """Split a JSON-ready snapshot dict (what `to_dict()` gives)."""
        head = {name: {} if type(value) is dict else value for name, value in snapshot.items()}
        entries = {
            (name, str(key)): _compact(item)
            for name, value in snapshot.items()
            if type(value) is dict
            for key, item in value.items()
        }
        return cls(_compact(head), entries)

    def join(self) -> dict[str, Any]:
        """The snapshot as a dict: equal, in content and order, to the one split."""
        return join_parts(self.head, self.entries.items())


def join_parts(head: str, entries: Iterable[tuple[tuple[str, str], str]]) -> dict[str, Any]:
    """Rebuild a snapshot dict from its head's text and its (field, key) entries, in order."""
    snapshot = json.loads(head)
    for (name, key), text in entries:
        # The head holds `{}` where the field is; filling it keeps the fields' order.
        snapshot[name][key] = json.loads(text)
    return snapshot


def _key(key: Any) -> str:
    return key.value if isinstance(key, Enum) else str(key)


def load(cls: type[T], data: Any) -> T:
    """Rebuild a `cls` from what `dump` made; raise BadSnapshot naming the path at fault."""
    return _load(cls, data, cls.__name__)


def _load(tp: Any, data: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if data is None and len(options) < len(get_args(tp)):
            return None
        if len(options) != 1:
            raise TypeError(f"{path}: only `X | None` unions can be loaded")
        return _load(options[0], data, path)
    if origin is tuple:
        item_type, ellipsis = get_args(tp)
        assert ellipsis is Ellipsis, tp
        _expect(data, list, path)
        return tuple(_load(item_type, item, f"{path}[{i}]") for i, item in enumerate(data))
    if origin is dict:
        key_type, value_type = get_args(tp)
        _expect(data, dict, path)
        return {
            _load(key_type, k, f"{path}.{k}"): _load(value_type, v, f"{path}.{k}")
            for k, v in data.items()
        }
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _load_dataclass(tp, data, path)
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(data)
        except ValueError:
            raise BadSnapshot(f"{path}: {data!r} is not a {tp.__name__}") from None
    if tp is datetime:
        _expect(data, str, path)
        try:
            value = datetime.fromisoformat(data)
        except ValueError:
            raise BadSnapshot(f"{path}: {data!r} is not an ISO 8601 time") from None
        if value.tzinfo is None:
            raise BadSnapshot(f"{path}: {data!r} has no UTC offset")
        return value
    if tp in (str, int, bool):
        # bool is an int in Python; a snapshot must not turn one into the other.
        if type(data) is not tp:
            raise BadSnapshot(f"{path}: expected {tp.__name__}, got {type(data).__name__}")
        return data
    if tp is float:
        if type(data) not in (int, float):
            raise BadSnapshot(f"{path}: expected a number, got {type(data).__name__}")
        return float(data)
    raise TypeError(f"{path}: cannot load type {tp!r}")


def _load_dataclass(cls: type, data: Any, path: str) -> Any:
    _expect(data, dict, path)
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise BadSnapshot(f"{path}: unknown keys {sorted(unknown)}")
    kwargs = {
        f.name: _load(hints[f.name], data[f.name], f"{path}.{f.name}")
        for f in dataclasses.fields(cls)
        if f.name in data  # a missing key takes the field's default (state added later)
    }
    try:
        return cls(**kwargs)
    except CoreError as err:
        raise BadSnapshot(f"{path}: {err}") from None
    except TypeError as err:  # a required field is missing
        raise BadSnapshot(f"{path}: {err}") from None


def _expect(data: Any, kind: type, path: str) -> None:
    if not isinstance(data, kind):
        raise BadSnapshot(f"{path}: expected {kind.__name__}, got {type(data).__name__}")
