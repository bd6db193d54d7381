"""A parcel's timeline is shown in the order its changes were applied, not by the cabinet's clock.

Found by `locker chaos` (the nemesis's clock-skew): a cabinet whose clock jumped an hour back
stamped a pickup an hour before the deposit it followed, and the timeline, ordered by that
stamp, showed the parcel picked up before it was in its locker.
"""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from cloud.db import reads, repo
from cloud.services.ingest import apply_pending, store_events
from tests.cloud.db.builders import CAB, SEAL_KEY, T0, deposited, picked_up, register_cabinet


def test_a_pickup_stamped_before_its_deposit_by_a_skewed_clock_still_follows_it(
    session: Session,
) -> None:
    register_cabinet(session)
    # The cabinet's clock jumped back an hour between the two.
    pickup = picked_up(2, 1).model_copy(update={"ts": T0 - timedelta(hours=1)})
    session.rollback()
    store_events(session=session, cab=CAB, envelopes=[deposited(1), pickup], now=T0)
    session.rollback()
    apply_pending(session=session, cab=CAB, now=T0, seal_key=SEAL_KEY)
    parcel = repo.get_parcel_by_parcel_id(session=session, parcel_id="P000001")
    assert parcel is not None and parcel.status == "picked_up"
    rows = reads.timeline(session=session, parcel_row_id=parcel.id)
    assert [r.status for r in rows] == ["in_locker", "picked_up"]
    assert rows[1].at < rows[0].at  # stamped earlier, shown after: the order is not the clock's
