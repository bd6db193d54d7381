"""Private files: both sides keep secrets at rest, readable by their owner only.

The cloud's embedded database holds code hashes, sealed codes and phone numbers; a cabinet's
journal holds code hashes and PIN hashes. Both create their files through `make_private`, so
what one side's tests prove of the mode holds for the other's. A cabinet's enrolled config
(its MQTT password and code key) is written whole by `write_private`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

# SQLite's own files beside the database: made with the database file's mode, so a private
# database has private ones; any left from before are tightened too.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def make_private(path: Path) -> None:
    """Create the SQLite file `path` mode 0600 if missing; take group and other access away.

    SQLite creates a database 0644 less the umask (readable by every local user), and its -wal
    and -shm files copy the database's mode: creating the file first, 0600, keeps all three
    private whatever the umask. A file we cannot chmod (another owner's) is left as it is.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        if os.fstat(descriptor).st_mode & 0o077:
            _tighten(lambda: os.fchmod(descriptor, 0o600), path)
    finally:
        os.close(descriptor)
    for suffix in SQLITE_SIDE_FILES:
        side = path.with_name(path.name + suffix)
        try:
            loose = side.stat().st_mode & 0o077
        except FileNotFoundError:
            continue
        if loose:
            _tighten(lambda side=side: side.chmod(0o600), side)


def _tighten(chmod: Callable[[], None], path: Path) -> None:
    try:
        chmod()
    except PermissionError:
        log.warning("%s is readable by other users and not ours to chmod: make it 0600", path)


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, mode 0600, atomically: a temporary file beside it, fsynced,
    then renamed over it (and the folder fsynced), so a power cut leaves the old file or the
    new one, never half of one, and no other local user can read it at any moment.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # the umask may have taken bits off; never add any
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
