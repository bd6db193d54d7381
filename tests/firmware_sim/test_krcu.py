"""Simulated Kerong KR-CU16 boards: frames, occupancy physics, unlock replies, a shared wire."""

from __future__ import annotations

import pytest

from firmware_sim import BoardConfig, SimulatedBus
from firmware_sim.errors import ConfigError
from protocol.lockboard import family_8a as f8a
from protocol.lockboard import family_krcu as kr


def _replies(bus: SimulatedBus, request: object, now: float, **kw: object) -> list[kr.StatusReply]:
    data = b"".join(c.data for c in bus.feed(kr.encode(request), now, **kw))  # type: ignore[arg-type]
    return kr.ReplyDecoder().feed(data)


def test_a_parcel_put_in_sets_the_sensor_and_taking_it_clears_it() -> None:
    bus = SimulatedBus([BoardConfig(address=1, channels=16, family="krcu")])
    [status] = _replies(bus, kr.Status(1), 1.0)
    assert status == kr.StatusReply(1, locks=0xFFFF, sensors=0)
    [after_unlock] = _replies(bus, kr.Unlock(1, 4), 2.0)
    assert not after_unlock.latched(4)  # the reply follows the pulse: released
    bus.person.put_parcel(1, 4)
    bus.person.close_door(1, 4)
    [full] = _replies(bus, kr.Status(1), 3.0)
    assert full.latched(4) and full.occupied(4)
    bus.faults.stick_occupancy(1, 4, False)  # a stuck sensor says empty, whatever is inside
    [stuck] = _replies(bus, kr.Status(1), 4.0)
    assert not stuck.occupied(4)


def test_a_board_that_does_not_answer_unlocks_still_fires() -> None:
    bus = SimulatedBus([BoardConfig(address=2, channels=16, family="krcu", answers_unlock=False)])
    assert _replies(bus, kr.Unlock(2, 1), 1.0) == []
    assert bus.board(2).doors[1].pulses == 1
    [status] = _replies(bus, kr.Status(2), 2.0)
    assert not status.latched(1)


def test_each_family_hears_only_its_own_frames_at_its_own_rate() -> None:
    bus = SimulatedBus(
        [
            BoardConfig(address=1, channels=8),
            BoardConfig(address=1, channels=16, family="krcu"),
            BoardConfig(address=2, channels=16, family="krcu"),
        ]
    )
    assert _replies(bus, kr.Status(1), 1.0, baud=9600) == []  # the KR-CU boards hear noise
    assert len(_replies(bus, kr.Status(1), 1.0, baud=19200)) == 1
    assert bus.feed(f8a.encode(f8a.QueryAll(1)), 2.0, baud=19200) == []
    assert bus.feed(f8a.encode(f8a.QueryAll(1)), 2.0, baud=9600)
    # The bus-wide status: every KR-CU board in turn, in address order, without colliding.
    chunks = bus.feed(kr.encode(kr.StatusAll()), 3.0, baud=19200)
    assert [c.delay_s for c in chunks] == sorted(c.delay_s for c in chunks)
    replies = kr.ReplyDecoder().feed(b"".join(c.data for c in chunks))
    assert [r.board for r in replies] == [1, 2] and bus.collisions == 0


def test_a_krcu_board_has_its_own_limits() -> None:
    with pytest.raises(ConfigError, match="1-15"):
        BoardConfig(address=16, channels=16, family="krcu")
    with pytest.raises(ConfigError, match="1-16"):
        BoardConfig(address=1, channels=24, family="krcu")
