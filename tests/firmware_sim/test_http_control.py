"""The HTTP control server acts on the same bus a pyserial client queries."""

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from firmware_sim import ControlServer, PtyServer
from protocol.lockboard.common import LOCK_CLOSED, LOCK_OPEN
from protocol.lockboard.family_8a import LockStatus, Query, Unlock, encode
from tests.firmware_sim.conftest import read_exactly


@pytest.fixture
def control(served: PtyServer) -> Iterator[ControlServer]:
    with ControlServer(served.bus, port=0) as server:
        yield server


def call(control: ControlServer, method: str, path: str, body: object = None):
    """Return (status, JSON body) of one request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(control.url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def query(port, channel: int) -> bytes:
    port.write(encode(Query(1, channel)))
    return read_exactly(port, 5)


def test_state_lists_every_door(control):
    status, body = call(control, "GET", "/state")
    assert status == 200 and body["ok"] is True
    assert len(body["boards"][0]["doors"]) == 24


def test_force_close_and_open_over_http_change_what_the_client_reads(control, port):
    assert call(control, "POST", "/doors/1/3/force")[0] == 200
    assert query(port, 3) == encode(LockStatus(1, 3, LOCK_OPEN))
    status, body = call(control, "POST", "/doors/1/3/close")
    assert (status, body["door"]["state"]) == (200, "latched")
    assert query(port, 3) == encode(LockStatus(1, 3, LOCK_CLOSED))
    call(control, "POST", "/faults/1", {"fault": "sticky_door", "channel": 3})
    port.write(encode(Unlock(1, 3)))
    read_exactly(port, 5)  # released, but the sticky door stayed shut
    assert call(control, "POST", "/doors/0x01/3/open")[0] == 200  # so it opens by hand
    assert query(port, 3) == encode(LockStatus(1, 3, LOCK_OPEN))


def test_opening_a_latched_door_by_hand_is_refused_with_409(control, port):
    status, body = call(control, "POST", "/doors/1/4/open")
    assert status == 409 and "latched" in body["error"]
    assert query(port, 4) == encode(LockStatus(1, 4, LOCK_CLOSED))


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/doors/1/3/dance", "door action is one of"),
        ("/doors/9/3/force", "no board at address 9"),
        ("/doors/1/25/force", "channels 1-24"),
        ("/doors/1/x/force", "channel is a number"),
    ],
)
def test_bad_door_requests_are_400_and_change_nothing(control, port, path, error):
    before = call(control, "GET", "/state")[1]
    status, body = call(control, "POST", path)
    assert status == 400 and error in body["error"]
    assert call(control, "GET", "/state")[1] == before
    assert query(port, 3) == encode(LockStatus(1, 3, LOCK_CLOSED))


def test_a_fault_posted_over_http_reaches_the_client(control, port):
    assert call(control, "POST", "/faults/1", {"fault": "jam", "channel": 2})[0] == 200
    port.write(encode(Unlock(1, 2)))
    assert read_exactly(port, 5) == bytes.fromhex("8A 01 02 11 98")  # still closed
    status, body = call(control, "POST", "/faults/1", {"fault": "silence"})
    assert status == 200 and body["board"]["tx_faults"]["silent"] is True
    port.timeout = 0.2
    port.write(encode(Query(1, 2)))
    assert port.read(5) == b""
    assert call(control, "POST", "/faults/1/clear")[0] == 200
    port.write(encode(Unlock(1, 2)))
    assert read_exactly(port, 5) == bytes.fromhex("8A 01 02 00 89")


@pytest.mark.parametrize(
    "body",
    [
        {"fault": "melt"},
        {"fault": "jam"},
        {"fault": "jam", "channel": 99},
        {"fault": "jam", "channel": "2"},
        {"fault": "jam", "channel": 2, "colour": "red"},
        {"fault": "corrupt", "mode": "melt"},
        {"fault": "slow", "delay_s": -1},
        {"fault": "stick_sensor", "channel": 2, "latched": "yes"},
        [1, 2],
    ],
)
def test_bad_fault_requests_are_400_and_change_nothing(control, body):
    before = call(control, "GET", "/state")[1]
    status, answer = call(control, "POST", "/faults/1", body)
    assert status == 400 and answer["error"]
    assert call(control, "GET", "/state")[1] == before


def test_line_garbage_over_http(control, port):
    status, body = call(control, "POST", "/faults/line", {"fault": "garbage", "hex": "00 ff"})
    assert status == 200 and body["line"]["garbage_count"] == 1
    port.write(encode(Query(1, 1)))
    assert read_exactly(port, 7) == bytes.fromhex("00 ff 80 01 01 11 91")
    assert call(control, "POST", "/faults/line", {"fault": "garbage", "hex": "zz"})[0] == 400


def test_unknown_routes_are_404(control):
    assert call(control, "GET", "/nothing")[0] == 404
    assert call(control, "POST", "/state")[0] == 404
