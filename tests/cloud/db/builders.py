"""Builders for the cloud database tests: a registered cabinet and event envelopes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from cloud.db import repo
from cloud.db.models import CabinetCreate, Compartment, Site, SiteCreate
from protocol.messages import (
    DoorForced,
    DoorForcedData,
    EventBase,
    NoticeResendRequested,
    NoticeResendRequestedData,
    ParcelDeposited,
    ParcelDepositedData,
    ParcelPickedUp,
    ParcelPickedUpData,
    PickupMethod,
    Size,
)

T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
CAB = "CAB-1"
SITE = "site-1"
CODE_KEY = b"cabinet-CAB-1-code-key-32-bytes!"
# The cloud's secret key in tests: strong (32 random bytes as hex), as the settings require.
SEAL_KEY = b"cd86694b89ba5dd79ec6d332efbb15cd9140423e9d02c620610ed0a6224aae2e"
PHONE = "+8613812341234"


def register_cabinet(session: Session, cab: str = CAB, *, compartments: int = 4) -> None:
    """Add a site, a cabinet and its compartments A01.., and commit."""
    if repo.get_cabinet(session=session, cab=cab) is None:
        if session.get(Site, SITE) is None:
            repo.create_site(
                session=session, site_create=SiteCreate(id=SITE, name="Estate"), now=T0
            )
        repo.create_cabinet(
            session=session,
            cabinet_create=CabinetCreate(id=cab, site_id=SITE, name="Gate 1", address="1 Road"),
            code_key=CODE_KEY,
            seal_key=SEAL_KEY,
            now=T0,
        )
        session.flush()
        for n in range(1, compartments + 1):
            session.add(Compartment(cabinet_id=cab, id=f"A{n:02d}", size="M"))
    session.commit()


def deposited(seq: int, cab: str = CAB, *, event_id: str | None = None) -> EventBase:
    """Return `parcel.deposited` number `seq`, of parcel P<seq> in compartment A01."""
    return ParcelDeposited(
        id=event_id or f"{cab}-e{seq}",
        cab=cab,
        seq=seq,
        ts=T0 + timedelta(seconds=seq),
        data=ParcelDepositedData(
            parcel_id=f"P{seq:06d}",
            compartment="A01",
            size=Size.M,
            tracking_no=f"SF{seq:010d}",
            phone=PHONE,
            courier_id="courier-7",
        ),
    )


def picked_up(seq: int, parcel_seq: int, cab: str = CAB) -> EventBase:
    """Return `parcel.picked_up` number `seq`, of the parcel deposited at `parcel_seq`."""
    return ParcelPickedUp(
        id=f"{cab}-e{seq}",
        cab=cab,
        seq=seq,
        ts=T0 + timedelta(seconds=seq),
        data=ParcelPickedUpData(
            compartment="A01", parcel_id=f"P{parcel_seq:06d}", method=PickupMethod.CODE
        ),
    )


def forced(seq: int, cab: str = CAB) -> EventBase:
    """Return `door.forced` number `seq`."""
    return DoorForced(
        id=f"{cab}-e{seq}", cab=cab, seq=seq, ts=T0, data=DoorForcedData(compartment="A02")
    )


def resend_requested(seq: int, cab: str = CAB, phone: str = PHONE) -> EventBase:
    """Return `notice.resend_requested` number `seq`: the recipient at the screen asked again."""
    return NoticeResendRequested(
        id=f"{cab}-e{seq}",
        cab=cab,
        seq=seq,
        ts=T0 + timedelta(seconds=seq),
        data=NoticeResendRequestedData(phone=phone),
    )


@dataclass
class Recording:
    """A `randbelow` from the CSPRNG that remembers every code it drew (as 8-digit text)."""

    length: int = 8
    codes: list[str] = field(default_factory=list)

    def __call__(self, n: int) -> int:
        value = secrets.randbelow(n)
        self.codes.append(str(value).zfill(self.length))
        return value
