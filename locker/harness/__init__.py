"""Harnesses shared by the tests, the demo and the benches: processes, ports, brokers, databases.

One home for what each of them used to copy: a free port, a child process stopped by its pid
(SIGTERM, then SIGKILL), a child spoken to in JSON lines, a Mosquitto on a free port with a
generated config, a scratch PostgreSQL database. Tooling only: nothing in `cabinet/` or `cloud/`
imports it. A service that is not there raises `ServiceMissing`; what to do about it is the
caller's rule (the tests skip locally and fail in CI, tests/services.py; a bench says how to
get it).
"""


class ServiceMissing(RuntimeError):
    """A real service a harness needs is not installed or not reachable; the message names it."""
