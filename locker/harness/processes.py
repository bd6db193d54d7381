"""Child processes: find a binary, a clean environment, wait for a condition, stop by pid, read
/proc, and a child spoken to one JSON line at a time."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def find_executable(candidates: Sequence[str]) -> str | None:
    """Return the first candidate that is an executable (a name on PATH or a path), if any."""
    for candidate in candidates:
        if found := shutil.which(candidate):
            return found
    return None


def locker_cli(*args: str) -> list[str]:
    """The command line of `locker ARGS...` run by this Python (the venv's, wherever it is)."""
    return [sys.executable, "-c", "from locker.cli import app; app()", *args]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without LOCKER_* settings (plus `extra`): a child gets only ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKER_")}
    env.update(extra)
    return env


def wait_for(
    predicate: Callable[[], T], timeout_s: float, what: str, *, interval_s: float = 0.01
) -> T:
    """Poll a condition until it holds; return its value or raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


def stop_pid(process: subprocess.Popen[Any], timeout_s: float = 15) -> None:
    """SIGTERM the process by its pid and reap it; SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        kill_pid(process)


def kill_pid(process: subprocess.Popen[Any], timeout_s: float = 10) -> None:
    """kill -9 the process by its pid, as a crash would, and reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout_s)


def stop_all(
    processes: Sequence[tuple[str, subprocess.Popen[Any]]],
    grace_s: float,
    on_kill: Callable[[str], None] = lambda _name: None,
) -> None:
    """SIGTERM every process at once, then reap each; SIGKILL those not gone after `grace_s`."""
    for _name, process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for name, process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            on_kill(name)
            kill_pid(process)


def cpu_s(pid: int) -> float:
    """utime + stime of every thread of `pid`, in seconds (/proc/<pid>/stat fields 14, 15);
    0 for a process that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MB (MiB): resident now, and its peak."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def write_bytes(pid: int) -> int:
    """Bytes `pid` has sent to storage so far (/proc/<pid>/io `write_bytes`, all threads).

    Counted as the kernel dirties page-cache pages of files on a disk: what the device will be
    written, at page granularity (tmpfs and pipes do not count).
    """
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "write_bytes":
            return int(value)
    raise OSError(f"/proc/{pid}/io has no write_bytes")


class JsonLinesProcess:
    """A child that reads one JSON request a line on stdin and answers JSON lines on stdout.

    Its stderr goes to `log_path`; a thread hands stdout's lines over to `next()`. Stopped by
    closing stdin (`close_stdin`, the child's cue to finish), by `stop()` or by `kill()`.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        name: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log_mode: str = "w",
    ) -> None:
        self.name = name
        self._log = log_path.open(log_mode)
        self.process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=clean_env() if env is None else env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.pid = self.process.pid
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def log_name(self) -> str:
        return self._log.name

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.on_line(line)

    def on_line(self, line: str) -> None:
        """Called on the reader thread for each line; queues it for `next()`."""
        self._lines.put(line)

    def next(self, timeout_s: float) -> dict[str, Any]:
        """The next line, decoded; TimeoutError if none came in time."""
        try:
            return json.loads(self._lines.get(timeout=timeout_s))
        except queue.Empty:
            raise TimeoutError(f"{self.name} said nothing for {timeout_s:g} s") from None

    def send(self, request: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()

    def ask(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send a request and return the next line."""
        self.send(request)
        return self.next(timeout_s)

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()

    def finish(self, timeout_s: float = 10) -> int:
        """Close stdin, the child's cue to finish; kill -9 it if it has not exited in time."""
        self.close_stdin()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            kill_pid(self.process)
        self._log.close()
        return self.process.returncode

    def stop(self, timeout_s: float = 15) -> int:
        """SIGTERM by pid (SIGKILL if it lingers); return the exit status."""
        stop_pid(self.process, timeout_s)
        self._log.close()
        return self.process.returncode

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        kill_pid(self.process)
        self._log.close()
