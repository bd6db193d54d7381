"""Planted bugs, so that the campaign's own test can show the checker catches a real one.

The product carries no trace of them: a plant is a `sitecustomize` module put on the cloud
processes' PYTHONPATH, which Python imports at start-up and which patches the worker's code in
that process only. Nothing outside `locker chaos --plant` (used by tests/locker/test_chaos.py)
ever writes one.
"""

from __future__ import annotations

from pathlib import Path

# ack-before-commit: each batch's events are acked before the transaction that stores them, the
# bug the contract forbids (a cabinet forgets an event the cloud may then fail to store).
_ACK_BEFORE_COMMIT = '''\
"""Planted by locker chaos (locker/chaos/plants.py): ack events before their commit."""
from cloud.worker import ingest_loop as _loop

_real = _loop.IngestLoop._handle_chunk


def _acks_first(self, by_cab, received_at):
    for cab, events in by_cab.items():
        if events:
            self._ack(cab, max(event.seq for event in events))
    return _real(self, by_cab, received_at)


_loop.IngestLoop._handle_chunk = _acks_first
'''

PLANTS = {"ack-before-commit": _ACK_BEFORE_COMMIT}


def plant_dir(plant: str, root: Path) -> Path:
    """Write the plant's `sitecustomize.py` under `root`; return the folder for PYTHONPATH."""
    try:
        source = PLANTS[plant]
    except KeyError:
        raise ValueError(f"no plant {plant!r}; known: {', '.join(sorted(PLANTS))}") from None
    folder = root / f"plant-{plant}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(source, encoding="utf-8")
    return folder
