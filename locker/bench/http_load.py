"""An open-loop HTTP load generator, run in a process of its own by `locker bench queries`.

Open loop: request i is due at start + i / rate whatever happened to the ones before, and its
latency runs from when it was due, not from when it was sent. A server that falls behind so
shows its queueing in the figure instead of quietly slowing the generator down (the closed-loop
mistake called coordinated omission).

The client is a minimal HTTP/1.1 one on asyncio streams with keep-alive connections: it costs a
few tens of microseconds of CPU per request, so on a 2-core machine the generator takes little
of what the API and PostgreSQL need (an httpx client costs about ten times more per request).

    python -m locker.bench.http_load < plan.json   # prints one JSON line of results

The plan: {"ports": [...], "headers": {...}, "open": {"rate": R, "paths": [...]},
"walk": {"walkers": W, "starts": [...], "pages": P, "duration_s": D}}, each part optional.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"
TIMEOUT_S = 10.0  # a request not answered by then counts as an error
MAX_CONNECTIONS = 64  # per port; a request due while every one is busy waits (and it counts)
# What a request may fail with: refused, reset or closed, a garbled answer, or no answer in time.
FAILURES = (
    OSError,
    ConnectionError,
    asyncio.IncompleteReadError,
    ValueError,
    TimeoutError,
)  # per port; a request due while every one is busy waits (and it counts)


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def get(self, path: str, head: bytes) -> tuple[int, bytes]:
        self.writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\n" + head)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        chunked = False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length)
        body = b""
        while size := int((await self.reader.readline()).strip(), 16):
            body += await self.reader.readexactly(size + 2)
        await self.reader.readline()
        return status, body


@dataclass
class Pool:
    """Idle connections to one port; opens a new one (up to MAX_CONNECTIONS) when none is idle."""

    port: int
    idle: list[Connection] = field(default_factory=list)
    opened: int = 0
    seen: set[Connection] = field(default_factory=set)  # those that have answered before
    freed: asyncio.Event = field(default_factory=asyncio.Event)

    async def take(self) -> Connection:
        while not self.idle and self.opened >= MAX_CONNECTIONS:
            self.freed.clear()
            await self.freed.wait()
        if self.idle:
            return self.idle.pop()
        self.opened += 1
        try:
            return Connection(*await asyncio.open_connection(HOST, self.port))
        except BaseException:
            self.opened -= 1
            raise

    def give(self, connection: Connection | None) -> None:
        if connection is None:
            self.opened -= 1
        else:
            self.idle.append(connection)
        self.freed.set()


@dataclass
class Results:
    latencies_s: list[float] = field(default_factory=list)
    # When each answered request was due, in seconds from the start (open loop only), in the
    # order of latencies_s: shows whether the slow answers come together, and when.
    due_s: list[float] = field(default_factory=list)
    start_wall: float = 0.0  # the wall-clock time due_s counts from, to line it up with logs
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def failed(self, err: BaseException) -> None:
        self.errors += 1
        kind = type(err).__name__
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "latencies_s": self.latencies_s,
            "due_s": self.due_s,
            "start_wall": self.start_wall,
            "statuses": self.statuses,
            "errors": self.errors,
            "error_kinds": self.error_kinds,
            "elapsed_s": self.elapsed_s,
        }


async def _request(pool: Pool, path: str, head: bytes) -> tuple[int, bytes]:
    connection = await asyncio.wait_for(pool.take(), TIMEOUT_S)
    reused = connection in pool.seen
    pool.seen.add(connection)
    try:
        answer = await asyncio.wait_for(connection.get(path, head), TIMEOUT_S)
    except BaseException as err:
        connection.writer.close()
        pool.seen.discard(connection)
        pool.give(None)
        if reused and isinstance(err, ConnectionError | asyncio.IncompleteReadError):
            # The server closed an idle keep-alive connection as we reused it (uvicorn's 5 s):
            # a GET is safe to send again, on another connection, as HTTP clients do.
            return await _request(pool, path, head)
        raise
    pool.give(connection)
    return answer


def _head(headers: dict[str, str]) -> bytes:
    lines = [f"Host: {HOST}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


async def open_loop(pools: list[Pool], head: bytes, rate: float, paths: list[str]) -> Results:
    """Send paths[i] at start + i / rate (round robin over the ports, as a proxy would)."""
    results = Results()

    async def one(i: int, due: float) -> None:
        try:
            status, _ = await _request(pools[i % len(pools)], paths[i], head)
        except FAILURES as err:
            results.failed(err)
            return
        results.latencies_s.append(time.perf_counter() - due)
        results.due_s.append(due - start)
        results.statuses[str(status)] = results.statuses.get(str(status), 0) + 1

    start = time.perf_counter() + 0.05
    results.start_wall = time.time() + 0.05
    tasks = []
    for i in range(len(paths)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    results.elapsed_s = time.perf_counter() - start
    return results


async def walk(pools: list[Pool], head: bytes, walk_spec: dict[str, Any]) -> Results:
    """`walkers` readers follow `next_cursor` one page at a time (an ERP syncing its
    shipments), each moving on to the next start path after `pages` pages, until
    `duration_s` is over."""
    results = Results()
    starts: list[str] = walk_spec["starts"]
    pages: int = walk_spec.get("pages", 20)
    stop_at = time.perf_counter() + walk_spec["duration_s"]

    async def walker(w: int) -> None:
        n, read = w, 0
        path = starts[n % len(starts)]
        while time.perf_counter() < stop_at:
            sent = time.perf_counter()
            try:
                status, body = await _request(pools[n % len(pools)], path, head)
            except FAILURES as err:
                results.failed(err)
                status, body = 0, b"{}"
            else:
                results.latencies_s.append(time.perf_counter() - sent)
                results.statuses[str(status)] = results.statuses.get(str(status), 0) + 1
            following = json.loads(body).get("next_cursor") if status == 200 else None
            read += 1
            if following and read < pages:
                base = starts[n % len(starts)].split("cursor=", 1)[0].rstrip("&?")
                path = f"{base}{'&' if '?' in base else '?'}cursor={following}"
            else:
                n, read = n + walk_spec["walkers"], 0
                path = starts[n % len(starts)]

    begun = time.perf_counter()
    await asyncio.gather(*(walker(w) for w in range(walk_spec["walkers"])))
    results.elapsed_s = time.perf_counter() - begun
    return results


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    pools = [Pool(port) for port in plan["ports"]]
    head = _head(plan.get("headers", {}))
    out: dict[str, Any] = {}
    if plan.get("open"):
        spec = plan["open"]
        out["open"] = (await open_loop(pools, head, spec["rate"], spec["paths"])).as_dict()
    if plan.get("walk"):
        out["walk"] = (await walk(pools, head, plan["walk"])).as_dict()
    for pool in pools:
        for connection in pool.idle:
            connection.writer.close()
    out["cpu_s"] = time.process_time()  # the generator's own CPU, for the bench's table
    return out


def main() -> None:
    plan = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(run(plan))), flush=True)


if __name__ == "__main__":
    main()
