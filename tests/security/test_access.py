"""Issue 11, part 6 (one model of who may do what): an ERP key plays the attacker.

Before: ERP keys were global. Any key read every parcel and cabinet, and a key that announced
a tracking number first had the pickup code of another carrier's parcel sent to a phone it
chose. Now a key is bound to one carrier or merchant and to sites; it sees only its own
parcels and its sites' cabinets, another's is a 404 exactly like a missing one, and a deposit
completes an announcement only by the stated rule (docs/who-may-do-what.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.api import create_app
from cloud.api.access import ROUTES, get_erp_principal, iter_routes
from cloud.core.access import FLAG_ANNOUNCEMENT, PrincipalKind
from cloud.db import repo
from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import (
    AuditLog,
    CabinetCreate,
    Carrier,
    Compartment,
    Courier,
    ErpApiKey,
    ErpKeySite,
    NoticeOutbox,
    Parcel,
    SiteCreate,
)
from cloud.services.ingest import apply_pending, store_events
from cloud.services.queries import hash_api_key
from cloud.settings import CloudSettings
from protocol.messages import ParcelDeposited, ParcelDepositedData, Size
from tests.cloud.db.builders import CAB, SEAL_KEY, SITE, T0, Recording, register_cabinet

NOW = T0 + timedelta(minutes=5)
OTHER_SITE, OTHER_CAB = "site-2", "CAB-2"
RECIPIENT = "+8613812341234"  # on the label: what B's courier types
ATTACKER_PHONE = "+8613999999999"
KEYS = {  # id -> (clear key, carrier, merchant)
    "key-sf": ("lk_sf-0123456789abcdef0123456789abcdef", "SF", None),
    "key-jd": ("lk_jd-0123456789abcdef0123456789abcdef", "JD", None),
    "key-shop": ("lk_shop-0123456789abcdef0123456789abcd", None, "shop"),
    "key-legacy": ("lk_legacy-0123456789abcdef0123456789ab", None, None),
}


def headers(key_id: str, **more: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[key_id][0], **more}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """Two sites with a cabinet each; carriers SF and JD with a courier each; four keys, all
    at site-1 but the legacy one, which is bound to nothing (as every key was before)."""
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as session:
        register_cabinet(session)
        repo.create_site(
            session=session, site_create=SiteCreate(id=OTHER_SITE, name="Other"), now=T0
        )
        repo.create_cabinet(
            session=session,
            cabinet_create=CabinetCreate(id=OTHER_CAB, site_id=OTHER_SITE, name="Elsewhere"),
            code_key=b"k" * 32,
            seal_key=SEAL_KEY,
            now=T0,
        )
        session.flush()
        session.add(Compartment(cabinet_id=OTHER_CAB, id="A01", size="M"))
        for carrier, courier in (("SF", "sf-1"), ("JD", "jd-1")):
            session.add(Carrier(id=carrier, name=carrier, created_at=T0))
            session.flush()
            session.add(Courier(id=courier, carrier=carrier, pin_hash="x", created_at=T0))
        for key_id, (key, carrier, merchant) in KEYS.items():
            session.add(
                ErpApiKey(
                    id=key_id,
                    name=key_id,
                    key_prefix=key[:8],
                    key_hash=hash_api_key(key),
                    carrier_id=carrier,
                    merchant_id=merchant,
                    created_at=T0,
                )
            )
            session.flush()
            if key_id != "key-legacy":
                session.add(ErpKeySite(key_id=key_id, site_id=SITE))
        session.commit()
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    settings = CloudSettings(database_url="sqlite://", secret_key=secrets.token_hex(32))
    with TestClient(create_app(settings, engine=engine, clock=lambda: NOW)) as test_client:
        yield test_client


def announce(client: TestClient, key_id: str, tracking_no: str, phone: str, cab: str = CAB):
    body = {"order_no": f"SO-{tracking_no}", "tracking_no": tracking_no, "phone": phone}
    return client.post(
        "/api/v1/shipments",
        json={**body, "cabinet_id": cab},
        headers=headers(key_id, **{"Idempotency-Key": secrets.token_hex(8)}),
    )


def deposit(engine: Engine, seq: int, tracking_no: str, courier: str, phone: str) -> str:
    """A courier deposits `tracking_no` at CAB typing `phone`; return the new parcel_id."""
    parcel_id = f"P{seq:06d}"
    event = ParcelDeposited(
        id=f"{CAB}-e{seq}",
        cab=CAB,
        seq=seq,
        ts=T0 + timedelta(seconds=seq),
        data=ParcelDepositedData(
            parcel_id=parcel_id,
            compartment="A01",
            size=Size.M,
            tracking_no=tracking_no,
            phone=phone,
            courier_id=courier,
        ),
    )
    with Session(engine) as session:
        store_events(session=session, cab=CAB, envelopes=[event], now=NOW)
        session.rollback()
        apply_pending(session=session, cab=CAB, now=NOW, seal_key=SEAL_KEY, randbelow=Recording())
    return parcel_id


def test_a_key_cannot_read_another_carriers_parcel_or_shipment(
    client: TestClient, engine: Engine
) -> None:
    """Finding: any key read every parcel. Carrier A's key gets 404 for B's, as if missing."""
    made = announce(client, "key-jd", "JD0001", RECIPIENT)
    assert made.status_code == 201, made.text
    row_id = made.json()["id"]
    parcel_id = deposit(engine, 1, "JD0001", "jd-1", RECIPIENT)

    for name in (parcel_id, row_id):
        theirs = client.get(f"/api/v1/parcels/{name}", headers=headers("key-sf"))
        missing = client.get("/api/v1/parcels/P999999", headers=headers("key-sf"))
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["detail"] == missing.json()["detail"].replace("P999999", name)
        assert client.get(f"/api/v1/parcels/{name}", headers=headers("key-jd")).status_code == 200
    tracking = client.get("/api/v1/tracking/JD0001", headers=headers("key-sf"))
    assert tracking.status_code == 404
    assert tracking.json()["detail"] == "no parcel with tracking number 'JD0001'"
    assert client.get("/api/v1/tracking/JD0001", headers=headers("key-jd")).status_code == 200
    listed = client.get("/api/v1/parcels", headers=headers("key-sf")).json()
    assert listed == {"data": [], "count": 0}
    mine = client.get("/api/v1/parcels", headers=headers("key-jd")).json()["data"]
    assert [p["tracking_no"] for p in mine] == ["JD0001"]


def test_a_key_cannot_see_or_announce_for_a_cabinet_outside_its_sites(
    client: TestClient, engine: Engine
) -> None:
    """Finding: any key listed every cabinet and announced anywhere. Another site's cabinet is
    answered exactly as a cabinet that does not exist, and nothing is written."""
    for path in (f"/api/v1/cabinets/{OTHER_CAB}", f"/api/v1/cabinets/{OTHER_CAB}/compartments"):
        hidden = client.get(path, headers=headers("key-sf"))
        missing = client.get(path.replace(OTHER_CAB, "NOPE"), headers=headers("key-sf"))
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["detail"] == missing.json()["detail"].replace("NOPE", OTHER_CAB)
    cabinets = client.get("/api/v1/cabinets", headers=headers("key-sf")).json()
    assert [c["id"] for c in cabinets["data"]] == [CAB]

    outside = announce(client, "key-sf", "SF0001", RECIPIENT, cab=OTHER_CAB)
    missing = announce(client, "key-sf", "SF0001", RECIPIENT, cab="NOPE")
    assert outside.status_code == missing.status_code == 422
    assert outside.json()["detail"] == missing.json()["detail"].replace("NOPE", OTHER_CAB)
    with Session(engine) as session:
        assert session.exec(select(Parcel)).all() == []


def test_a_key_cannot_redirect_another_carriers_pickup_code(
    client: TestClient, engine: Engine
) -> None:
    """Finding: key A announced carrier B's tracking number first with a phone it chose, and
    B's courier's deposit sent the pickup code there. Now the typed phone gets the code, the
    squatting announcement stays unused and is flagged, and A never sees B's parcel."""
    squat = announce(client, "key-sf", "JD0002", ATTACKER_PHONE)
    assert squat.status_code == 201
    # B's own ERP is not locked out by the squatter, and is told nothing about it.
    own = announce(client, "key-jd", "JD0002", RECIPIENT)
    assert own.status_code == 201, own.text
    parcel_id = deposit(engine, 1, "JD0002", "jd-1", RECIPIENT)

    with Session(engine) as session:
        notices = session.exec(select(NoticeOutbox)).all()
        assert [n.to_phone for n in notices] == [RECIPIENT]
        deposited = repo.get_parcel_by_parcel_id(session=session, parcel_id=parcel_id)
        assert deposited is not None and deposited.id == own.json()["id"]
        squatter = session.get(Parcel, squat.json()["id"])
        assert squatter is not None and squatter.status == "announced"
        flags = session.exec(select(AuditLog).where(AuditLog.action == FLAG_ANNOUNCEMENT)).all()
        assert [(f.resource_id, f.outcome) for f in flags] == [(squatter.id, "flagged")]
    tracking = client.get("/api/v1/tracking/JD0002", headers=headers("key-sf")).json()
    assert tracking["parcel"]["status"] == "announced"  # its own squat, nothing of B's
    assert client.get(f"/api/v1/parcels/{parcel_id}", headers=headers("key-sf")).status_code == 404


def test_a_squatted_tracking_number_unannounced_by_its_carrier_still_reaches_the_label_phone(
    engine: Engine, client: TestClient
) -> None:
    """The same attack when B's ERP never announced: the deposit is a parcel of its own."""
    assert announce(client, "key-shop", "JD0003", ATTACKER_PHONE).status_code == 201
    parcel_id = deposit(engine, 1, "JD0003", "jd-1", RECIPIENT)
    with Session(engine) as session:
        assert [n.to_phone for n in session.exec(select(NoticeOutbox))] == [RECIPIENT]
        row = repo.get_parcel_by_parcel_id(session=session, parcel_id=parcel_id)
        assert row is not None and row.owner_merchant_id is None and row.order_no is None
    assert (
        client.get(f"/api/v1/parcels/{parcel_id}", headers=headers("key-shop")).status_code == 404
    )
    # B's key sees its courier's walk-in deposit at its site.
    assert client.get(f"/api/v1/parcels/{parcel_id}", headers=headers("key-jd")).status_code == 200


def test_the_announcing_carriers_own_courier_keeps_the_announced_phone(
    engine: Engine, client: TestClient
) -> None:
    """The rule's other side: a carrier's ERP corrects its own courier's typo."""
    assert announce(client, "key-jd", "JD0004", RECIPIENT).status_code == 201
    deposit(engine, 1, "JD0004", "jd-1", "+8613700000000")
    with Session(engine) as session:
        assert [n.to_phone for n in session.exec(select(NoticeOutbox))] == [RECIPIENT]


def test_a_key_bound_to_nothing_is_refused_on_every_erp_route(client: TestClient) -> None:
    """Finding: keys were global. A key made before binding (no carrier, no merchant) gets 403
    with a message saying how to get a bound one, on every route an ERP client may call."""
    erp_routes = [key for key, rule in ROUTES.items() if PrincipalKind.ERP_CLIENT in rule.kinds]
    assert len(erp_routes) == 8 + 3 + 5 + 9  # /statements x3, /shipments x5, /webhooks x9
    for method, path in erp_routes:
        url = (
            path.replace("{cab}", CAB)
            .replace("{parcel_id}", "P1")
            .replace("{tracking_no}", "SF1")
            .replace("{shipment_id}", "P1")
            .replace("{endpoint_id}", "we_1")
        )
        extra = {"Idempotency-Key": "k"} if method in ("POST", "PATCH") else {}
        body = {"order_no": "1", "tracking_no": "SF1", "phone": RECIPIENT, "cabinet_id": CAB}
        answer = client.request(
            method,
            url,
            headers=headers("key-legacy", **extra),
            json=body if path == "/api/v1/shipments" and method == "POST" else None,
        )
        assert answer.status_code == 403, (method, path, answer.text)
        assert "bound to no carrier or merchant" in answer.json()["detail"]


def test_every_route_has_an_owner_in_the_policy(client: TestClient) -> None:
    """A route the policy does not name fails here, and so does a name with no route: every
    route is declared with its action and the principals that may call it. A route for ERP
    clients must resolve the key's principal (`get_erp_principal`), which scopes it."""
    served = {(method, path): route for method, path, route in iter_routes(client.app.routes)}
    assert set(served) - set(ROUTES) == set(), "routes with no owner in cloud/api/access.py"
    assert set(ROUTES) - set(served) == set(), "owners of routes that no longer exist"
    for key, rule in ROUTES.items():
        route = served[key]
        if PrincipalKind.ERP_CLIENT in rule.kinds:
            assert isinstance(route, APIRoute)
            calls = {d.call for d in route.dependant.dependencies}
            assert get_erp_principal in calls, key
        if PrincipalKind.ANYONE in rule.kinds or rule.kinds == {PrincipalKind.PROVIDER}:
            assert rule.why or rule.action.value in {"scan_to_open", "provider_callback"}, key


def test_every_console_page_for_accounts_needs_a_signed_in_session(client: TestClient) -> None:
    """A console route owned by account roles resolves the signed-in account
    (`get_console_user`), which redirects anyone else to the sign-in form."""
    from cloud.console.auth import get_console_user

    def calls(dependant) -> set:
        found = {d.call for d in dependant.dependencies}
        for d in dependant.dependencies:
            found |= calls(d)
        return found

    served = {(method, path): route for method, path, route in iter_routes(client.app.routes)}
    console = [k for k, rule in ROUTES.items() if k[1].startswith("/console") and rule.kinds]
    guarded = 0
    for key in console:
        if PrincipalKind.ANYONE in ROUTES[key].kinds:
            continue
        route = served[key]
        assert isinstance(route, APIRoute)
        assert get_console_user in calls(route.dependant), key
        guarded += 1
        anonymous = client.request(key[0], key[1].replace("{", "").replace("}", ""),
                                   follow_redirects=False)  # fmt: skip
        assert anonymous.status_code == 303, key
    assert guarded >= 8
