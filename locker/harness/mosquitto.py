"""A Mosquitto broker of the caller's own: a generated config, a free loopback port, stopped by pid.

The tests start one per test (with users, an ACL and persistence, tests/conftest.py), the cloud
bench one for its run (anonymous, no persistence, a deep queue).
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Mapping
from pathlib import Path

from locker.harness import ServiceMissing
from locker.harness.ports import HOST, free_port, port_accepts
from locker.harness.processes import find_executable, kill_pid, stop_pid, wait_for

# Debian puts the broker in /usr/sbin, which is not on a normal user's PATH.
MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
MOSQUITTO_PASSWD_CANDIDATES = ("mosquitto_passwd", "/usr/bin/mosquitto_passwd")


def find_mosquitto(candidates: tuple[str, ...] = MOSQUITTO_CANDIDATES) -> str:
    """Return the mosquitto binary's path; ServiceMissing if it is not installed."""
    binary = find_executable(candidates)
    if binary is None:
        raise ServiceMissing(f"the mosquitto broker is not installed (looked for {candidates})")
    return binary


class Mosquitto:
    """One mosquitto process on a free loopback port, with its config and store in `workdir`."""

    host = HOST

    def __init__(
        self,
        workdir: Path,
        *,
        binary: str | None = None,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        allow_anonymous: bool | None = None,
        persistence: bool = True,
        max_queued_messages: int = 1_000_000,
        extra_config: str = "",
    ) -> None:
        self.binary = binary or find_mosquitto()
        self.workdir = workdir
        self.users = dict(users or {})
        self.acl = acl
        self.allow_anonymous = not self.users if allow_anonymous is None else allow_anonymous
        self.persistence = persistence
        self.max_queued_messages = max_queued_messages
        self.extra_config = textwrap.dedent(extra_config)
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def log(self) -> str:
        """Return what the broker has logged so far (all runs)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        """Start on a fresh free port; retry if another process grabbed the port first."""
        self._write_auth_files()
        for attempt in range(3):
            self.port = free_port(self.host)
            try:
                self._spawn()
                return
            except RuntimeError:
                if attempt == 2 or "Address already in use" not in self.log():
                    raise

    def restart(self) -> None:
        """Stop gracefully (the store is saved) and start again on the same port and store."""
        self.stop()
        self._spawn()

    def respawn(self) -> None:
        """Start again on the same port and store, after `kill()` or `stop()` (a crash's
        restart: the broker finds only what its last snapshot saved)."""
        self._spawn()

    def stop(self, timeout_s: float = 10) -> None:
        """Send SIGTERM to the broker's pid and reap it; SIGKILL it if it does not exit in time."""
        if self._process is not None:
            stop_pid(self._process, timeout_s)

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would: whatever it had not saved is lost."""
        if self._process is not None:
            kill_pid(self._process)

    def _spawn(self) -> None:
        self.config_path.write_text(self._config())
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = self._process
        try:
            wait_for(
                lambda: process.poll() is not None or port_accepts(self.host, self.port),
                timeout_s=10,
                what=f"mosquitto to accept on {self.host}:{self.port}",
            )
        except TimeoutError:
            self.kill()
            raise
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {process.returncode}:\n{self.log()[-2000:]}")

    def _config(self) -> str:
        lines = [
            "# written by locker/harness/mosquitto.py",
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"persistence {'true' if self.persistence else 'false'}",
            "set_tcp_nodelay true",  # as deploy/compose/mosquitto.conf
            # Hold a whole backlog for a slow subscriber instead of dropping QoS 1 messages.
            f"max_queued_messages {self.max_queued_messages}",
            "log_dest stderr",
        ]
        if self.persistence:
            lines.append(f"persistence_location {self.workdir}/")
        if os.geteuid() == 0:
            # Run as root, mosquitto drops to the `mosquitto` user, which cannot write its store
            # in a private tmp dir (and fails to save only at shutdown): stay root.
            lines.append("user root")
        if not self.allow_anonymous:
            # As every broker we ship: the client id is the user name, so one cabinet's
            # credentials cannot take another's session (tests/security/test_mqtt_identity.py).
            # Mosquitto refuses a client without a user name under it: anonymous brokers only.
            lines.append("use_username_as_clientid true")
        if self.users:
            lines.append(f"password_file {self.workdir / 'passwd'}")
        if self.acl is not None:
            lines.append(f"acl_file {self.workdir / 'acl'}")
        return "\n".join(lines) + "\n" + self.extra_config

    def _write_auth_files(self) -> None:
        if self.users:
            tool = find_executable(MOSQUITTO_PASSWD_CANDIDATES)
            if tool is None:
                raise ServiceMissing("mosquitto_passwd is not installed (it ships with mosquitto)")
            passwd = self.workdir / "passwd"
            passwd.touch(mode=0o600)
            for name, password in self.users.items():
                subprocess.run([tool, "-b", str(passwd), name, password], check=True)
        if self.acl is not None:
            (self.workdir / "acl").write_text(textwrap.dedent(self.acl).strip() + "\n")
