"""The kiosk page after a courier signs out, in headless Chromium, with the order of the answers
set by the test: the page hears the cabinet by two roads (the answers to its own calls, and the
event stream), and under load either can come first.

The answer to the sign-out tap is held while the event stream's status takes the page home and
the next person taps Courier; then the late answer is let through. A status fetched before the
next sign-in is held the same way and let through after it. Neither may take the screen back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.kiosk.browser import KioskDaemon
from tests.cabinet.kiosk.test_browser import (  # noqa: F401  (api_calls, browser, open_page: fixtures)
    Sim,
    api_calls,
    browser,
    open_page,
    sign_in,
    visible,
)
from tests.cabinet.service.harness import put_courier_to_process
from tests.services import Mosquitto

pytestmark = pytest.mark.browser

# The page's fetch, wrapped: an answer the test names is read in full, then kept until
# `release()`; `consumed` counts held answers the page has read (their JSON taken).
HOLD_ANSWERS = """
(rules) => {
  const realFetch = window.fetch;
  const gates = [];
  window.held = { gates, consumed: 0, release: () => { for (const g of gates.splice(0)) g(); } };
  window.fetch = async (url, options) => {
    const body = options && options.body ? JSON.parse(options.body) : {};
    const hold = (rules.inputs.includes(body.type) && String(url).endsWith("/api/input"))
      || (rules.status && String(url).endsWith("/api/status"));
    const answer = await realFetch(url, options);
    if (!hold) return answer;
    const text = await answer.text();
    await new Promise((open) => gates.push(open));
    const late = new Response(text, { status: answer.status, headers: answer.headers });
    const json = late.json.bind(late);
    late.json = async () => {
      const value = await json();
      window.held.consumed += 1;
      return value;
    };
    return late;
  };
}
"""


def _sign_in(page: Any) -> None:
    sign_in(page)
    # The page holds the cabinet's status with the courier in it (its own call or the stream).
    page.wait_for_function("() => state.status && state.status.courier_signed_in")


def test_a_late_sign_out_answer_or_status_does_not_take_the_next_sign_in_home(
    tmp_path: Path,
    mosquitto: Mosquitto,
    peer: CloudPeer,
    sim: Sim,
    open_page: Any,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    daemon = KioskDaemon(tmp_path, broker=mosquitto, serial_port=str(sim[1].link))
    try:
        put_courier_to_process(peer)
        page = open_page(daemon.url)
        page.locator("#go-courier").click()
        visible(page, "courier-signin")
        _sign_in(page)
        page.evaluate(HOLD_ANSWERS, {"inputs": ["CourierSignOut"], "status": True})

        # The courier signs out; the stream's status says so before the tap's answer lands.
        page.locator("#sign-out").click()
        visible(page, "home")
        page.wait_for_function("() => window.held.gates.length === 1")  # the sign-out's answer
        assert daemon.status()["courier_signed_in"] is False
        # The next courier taps Courier; only then does the sign-out's answer arrive.
        page.locator("#go-courier").click()
        visible(page, "courier-signin")
        page.evaluate("() => window.held.release()")
        page.wait_for_function("() => window.held.consumed === 1 && !state.busy")
        expect(page.locator("#s-courier-signin")).to_be_visible()
        expect(page.locator("#s-home")).to_be_hidden()
        expect(page.locator('#signin-keys .keyboard [data-key="Q"]')).to_be_visible()

        # A status fetched while nobody was signed in lands after the next sign-in.
        held = page.evaluate("() => window.held.gates.length")
        assert held >= 1  # the page re-read the status after the stale answer, and it is held
        _sign_in(page)
        waiting = page.evaluate("() => window.held.gates.length")  # and the sign-in's own
        page.evaluate("() => window.held.release()")
        page.wait_for_function(f"() => window.held.consumed === {1 + waiting}")
        expect(page.locator("#s-courier-tracking")).to_be_visible()
        assert page.evaluate("() => state.status.courier_signed_in") is True
    finally:
        daemon.close()
