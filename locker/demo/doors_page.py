"""The demo's "doors" page: be the person at the cabinet from a browser.

The kiosk waits for what a person does at the doors (open one that sprang, put a parcel in, take
it out, shut it), and in the demo the doors are the simulator's. This page shows each cabinet's
doors as the simulator has them and forwards a button press to the simulator's control API
(`POST /doors/{board}/{channel}/{action}`), exactly as `curl` would.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import httpx

ACTIONS = ("put", "take", "close", "open")
LABELS = {
    "put": "放入 put parcel in",
    "take": "取出 take parcel out",
    "close": "关门 shut",
    "open": "开门 open",
}
REFRESH_S = 2


@dataclass(frozen=True)
class SimulatedCabinet:
    """A cabinet's simulator and its doors' wiring (id, size, board, channel)."""

    id: str
    sim_url: str
    doors: list[dict[str, Any]]


def door_states(cabinet: SimulatedCabinet, http: httpx.Client) -> list[dict[str, Any]] | None:
    """Each door with its simulated state, or None if the simulator does not answer."""
    try:
        state = http.get(f"{cabinet.sim_url}/state").json()
    except (httpx.HTTPError, ValueError):
        return None
    boards = {board["address"]: board for board in state["boards"]}
    rows = []
    for wiring in cabinet.doors:
        board = boards.get(wiring["board"])
        door = next((d for d in board["doors"] if d["channel"] == wiring["channel"]), None)
        if board is not None and door is not None:
            rows.append({**wiring, **door})
    return rows


def press(
    cabinets: list[SimulatedCabinet], http: httpx.Client, cab: str, door_id: str, action: str
) -> str | None:
    """Forward one button press to the simulator; return the refusal, if any."""
    cabinet = next((c for c in cabinets if c.id == cab), None)
    wiring = next((d for d in cabinet.doors if d["id"] == door_id), None) if cabinet else None
    if cabinet is None or wiring is None or action not in ACTIONS:
        return f"no door {door_id} of {cab}, or no action {action!r}"
    url = f"{cabinet.sim_url}/doors/{wiring['board']}/{wiring['channel']}/{action}"
    try:
        answer = http.post(url)
    except httpx.HTTPError as err:
        return f"the simulator of {cab} does not answer: {err}"
    return None if answer.status_code == 200 else answer.json().get("error", answer.text)


def render(cabinets: list[SimulatedCabinet], http: httpx.Client, error: str | None = None) -> str:
    """The page: a table of doors per cabinet, with the buttons a person would have."""
    parts = []
    for cabinet in cabinets:
        rows = door_states(cabinet, http)
        if rows is None:
            parts.append(f"<h2>{html.escape(cabinet.id)}</h2><p>simulator not answering</p>")
            continue
        body = "".join(_row(cabinet.id, row) for row in rows)
        parts.append(
            f"<h2>{html.escape(cabinet.id)}</h2><table><thead><tr><th>门 door</th>"
            "<th>尺寸 size</th><th>状态 state</th><th>包裹 parcel</th><th></th></tr></thead>"
            f"<tbody>{body}</tbody></table>"
        )
    notice = f"<p class='error'>{html.escape(error)}</p>" if error else ""
    return (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        f"<meta http-equiv='refresh' content='{REFRESH_S};url=/doors'>"
        "<title>柜门 Doors — parcel lockers demo</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem;background:#f6f7f9}"
        "table{border-collapse:collapse;background:white;margin-bottom:1.5rem}"
        "td,th{padding:.3rem .7rem;border-bottom:1px solid #e3e6ea;text-align:left}"
        "tr.open{background:#fff4cc} .error{color:#b00020} form{display:inline}"
        "</style></head><body>"
        "<h1>柜门 · The doors, as the person at the cabinet sees them</h1>"
        "<p>在这里扮演柜机前的人：门弹开后放入或取出包裹，然后关门。 Be the person at the cabinet:"
        " when a door springs open, put the parcel in (or take it out), then shut it."
        " <a href='/'>通知 Notices</a></p>"
        f"{notice}{''.join(parts)}</body></html>"
    )


def _row(cab: str, row: dict[str, Any]) -> str:
    is_open = bool(row["door_open"])
    actions = ("put", "take", "close") if is_open else (("open",) if not row["latched"] else ())
    buttons = "".join(
        f"<form method='post' action='/doors/{html.escape(cab)}/{html.escape(row['id'])}/{a}'>"
        f"<button>{LABELS[a]}</button></form> "
        for a in actions
        if not (a == "put" and row["occupied"]) and not (a == "take" and not row["occupied"])
    )
    state = "开着 open" if is_open else ("锁着 latched" if row["latched"] else "未锁 released")
    return (
        f"<tr class='{'open' if is_open else ''}'><td>{html.escape(row['id'])}</td>"
        f"<td>{html.escape(row['size'])}</td><td>{state}</td>"
        f"<td>{'📦' if row['occupied'] else ''}</td><td>{buttons}</td></tr>"
    )
