"""The policy matrix (docs/who-may-do-what.md): every principal × action × resource, one table.

`WORLD` holds two sites, a cabinet in each, and parcels of every ownership; `SEES` says, per
principal, which of them it sees. Every other (principal, action, resource) is refused: FORBIDDEN
when the principal's kind may never do the action, NOT_FOUND otherwise, the same answer as for
a resource that does not exist.
"""

from __future__ import annotations

import pytest

from cloud.core.access import (
    ACCOUNT_ROLES,
    AUDITED,
    REASON_REQUIRED,
    ROLE_ACTIONS,
    Action,
    Announcement,
    DepositMatch,
    Outcome,
    Principal,
    PrincipalKind,
    Resource,
    ResourceKind,
    cabinet_scope,
    choose_announcement,
    decide,
    deposit_match,
    parcel_scope,
)

K = PrincipalKind
A = Action
R = ResourceKind

# --- the world ------------------------------------------------------------------------------------

WORLD: dict[str, Resource] = {
    "site s1": Resource(R.SITE, "s1"),
    "site s2": Resource(R.SITE, "s2"),
    "cabinet c1 (s1)": Resource(R.CABINET, "c1", site_id="s1"),
    "cabinet c2 (s2)": Resource(R.CABINET, "c2", site_id="s2"),
    "parcel SF announced, at c1": Resource(
        R.PARCEL, "p-sf", site_id="s1", cabinet_id="c1", owner_carrier_id="SF"
    ),
    "parcel JD announced, at c1": Resource(
        R.PARCEL, "p-jd", site_id="s1", cabinet_id="c1", owner_carrier_id="JD"
    ),
    "parcel shop announced, SF courier, at c2": Resource(
        R.PARCEL,
        "p-shop",
        site_id="s2",
        cabinet_id="c2",
        owner_merchant_id="shop",
        courier_carrier_id="SF",
    ),
    "parcel unannounced, SF courier, at c1": Resource(
        R.PARCEL, "p-walkin", site_id="s1", cabinet_id="c1", courier_carrier_id="SF"
    ),
    "parcel unannounced, SF courier, at c2": Resource(
        R.PARCEL, "p-walkin-2", site_id="s2", cabinet_id="c2", courier_carrier_id="SF"
    ),
    "courier of SF": Resource(R.COURIER, "sf-1", courier_carrier_id="SF"),
    "courier of JD": Resource(R.COURIER, "jd-1", courier_carrier_id="JD"),
    "account": Resource(R.ACCOUNT, "acc-1"),
    "api key": Resource(R.API_KEY, "key-1"),
    "the system": Resource(R.SYSTEM),
}

PRINCIPALS: dict[str, Principal] = {
    "operator admin": Principal(K.OPERATOR_ADMIN, "admin"),
    "site manager of s1": Principal(K.SITE_MANAGER, "mgr", site_ids=frozenset({"s1"})),
    "carrier SF": Principal(K.CARRIER, "sf-acc", carrier_id="SF"),
    "ERP key of SF at s1": Principal(
        K.ERP_CLIENT, "key-sf", carrier_id="SF", site_ids=frozenset({"s1"})
    ),
    "ERP key of JD at s1, s2": Principal(
        K.ERP_CLIENT, "key-jd", carrier_id="JD", site_ids=frozenset({"s1", "s2"})
    ),
    "ERP key of merchant shop at s1": Principal(
        K.ERP_CLIENT, "key-shop", merchant_id="shop", site_ids=frozenset({"s1"})
    ),
    "technician at c1": Principal(K.TECHNICIAN, "tech", cabinet_id="c1"),
    "recipient of p-walkin at c1": Principal(
        K.RECIPIENT, "+861380000", cabinet_id="c1", parcel_ids=frozenset({"p-walkin"})
    ),
    "cabinet c1": Principal(K.CABINET, "c1", cabinet_id="c1"),
    "provider": Principal(K.PROVIDER, "twilio"),
    "monitor": Principal(K.MONITOR, "prometheus"),
    "anyone": Principal(K.ANYONE, "-"),
}

_ALL = frozenset(WORLD)
_SYSTEM = {"the system"}

# What each principal sees (whatever it may do with it: ROLE_ACTIONS says that).
SEES: dict[str, set[str]] = {
    "operator admin": set(_ALL),
    "site manager of s1": {
        "site s1",
        "cabinet c1 (s1)",
        "parcel SF announced, at c1",
        "parcel JD announced, at c1",
        "parcel unannounced, SF courier, at c1",
        *_SYSTEM,
    },
    "carrier SF": {
        "parcel SF announced, at c1",
        "parcel shop announced, SF courier, at c2",  # its courier carried it
        "parcel unannounced, SF courier, at c1",
        "parcel unannounced, SF courier, at c2",
        "courier of SF",
        *_SYSTEM,
    },
    "ERP key of SF at s1": {
        "site s1",
        "cabinet c1 (s1)",
        "parcel SF announced, at c1",
        "parcel unannounced, SF courier, at c1",  # its courier's walk-in at its site
        *_SYSTEM,
    },
    "ERP key of JD at s1, s2": {
        "site s1",
        "site s2",
        "cabinet c1 (s1)",
        "cabinet c2 (s2)",
        "parcel JD announced, at c1",
        *_SYSTEM,
    },
    "ERP key of merchant shop at s1": {
        "site s1",
        "cabinet c1 (s1)",
        "parcel shop announced, SF courier, at c2",  # its own, wherever it was deposited
        *_SYSTEM,
    },
    "technician at c1": {"cabinet c1 (s1)", *_SYSTEM},
    "recipient of p-walkin at c1": {
        "cabinet c1 (s1)",
        "parcel unannounced, SF courier, at c1",
        *_SYSTEM,
    },
    "cabinet c1": {
        "cabinet c1 (s1)",
        "parcel SF announced, at c1",
        "parcel JD announced, at c1",
        "parcel unannounced, SF courier, at c1",
        *_SYSTEM,
    },
    "provider": set(_SYSTEM),
    "monitor": set(_SYSTEM),
    "anyone": set(_SYSTEM),
}


@pytest.mark.parametrize("who", list(PRINCIPALS))
def test_the_whole_matrix(who: str) -> None:
    """For one principal: every action on every resource of the world, and on a missing one."""
    principal = PRINCIPALS[who]
    wrong = []
    for action in Action:
        for what in [*WORLD, None]:
            decision = decide(principal, action, WORLD[what] if what is not None else None)
            if action not in ROLE_ACTIONS[principal.kind]:
                expected = Outcome.FORBIDDEN
            elif what is not None and what in SEES[who]:
                expected = Outcome.ALLOWED
            else:
                expected = Outcome.NOT_FOUND
            if decision.outcome is not expected:
                wrong.append((action.value, what, decision.outcome.value, expected.value))
    assert wrong == []


def test_out_of_scope_reads_exactly_as_missing() -> None:
    """Another site's cabinet is a 404 with the same reason as a cabinet that does not exist."""
    key = PRINCIPALS["ERP key of SF at s1"]
    hidden = decide(key, A.READ_CABINET, WORLD["cabinet c2 (s2)"])
    missing = decide(key, A.READ_CABINET, None)
    assert hidden == missing and hidden.http_status == 404


def test_a_refused_role_says_nothing_about_the_resource() -> None:
    """FORBIDDEN is the same whether the resource exists, is hidden or is missing."""
    key = PRINCIPALS["ERP key of SF at s1"]
    answers = {
        decide(key, A.MANAGE_ACCOUNTS, r)
        for r in (WORLD["account"], WORLD["cabinet c2 (s2)"], None)
    }
    assert len(answers) == 1 and answers.pop().http_status == 403


def test_the_roles_as_the_design_states_them() -> None:
    assert ROLE_ACTIONS[K.OPERATOR_ADMIN] == frozenset(Action)
    manager = ROLE_ACTIONS[K.SITE_MANAGER]
    for act in (A.OPEN_DOOR_REMOTELY, A.SET_OUT_OF_SERVICE, A.EXTEND_DEADLINE, A.READ_REPORTS):
        assert act in manager
    for act in (A.MANAGE_ACCOUNTS, A.MANAGE_KEYS, A.MANAGE_REGISTRY, A.ANNOUNCE_SHIPMENT):
        assert act not in manager
    assert ROLE_ACTIONS[K.CARRIER] >= {A.READ_COURIERS, A.READ_PARCEL, A.READ_SETTLEMENTS}
    assert A.OPEN_DOOR_REMOTELY not in ROLE_ACTIONS[K.CARRIER]
    erp = ROLE_ACTIONS[K.ERP_CLIENT]
    assert erp >= {A.ANNOUNCE_SHIPMENT, A.UPDATE_SHIPMENT, A.CANCEL_PARCEL, A.RECEIVE_WEBHOOK}
    assert not erp & {A.OPEN_DOOR_REMOTELY, A.MANAGE_KEYS, A.EXTEND_DEADLINE}
    assert ROLE_ACTIONS[K.TECHNICIAN] - {A.READ_HEALTH} == {A.MAINTAIN_CABINET}
    assert ROLE_ACTIONS[K.CABINET] - {A.READ_HEALTH} == {A.CABINET_LINK}
    assert ACCOUNT_ROLES == (K.OPERATOR_ADMIN, K.SITE_MANAGER, K.CARRIER)
    assert {A.OPEN_DOOR_REMOTELY, A.EXTEND_DEADLINE, A.CANCEL_PARCEL, A.MANAGE_ACCOUNTS} <= AUDITED
    assert REASON_REQUIRED <= AUDITED


def test_an_erp_client_is_bound_to_exactly_one_carrier_or_merchant() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Principal(K.ERP_CLIENT, "legacy")
    with pytest.raises(ValueError, match="exactly one"):
        Principal(K.ERP_CLIENT, "both", carrier_id="SF", merchant_id="shop")
    with pytest.raises(ValueError, match="names its carrier"):
        Principal(K.CARRIER, "acc")


@pytest.mark.parametrize("who", list(PRINCIPALS))
def test_the_list_scopes_admit_what_decide_allows(who: str) -> None:
    """A list query never shows a cabinet or parcel that `decide` would answer 404 for."""
    principal = PRINCIPALS[who]
    for name, resource in WORLD.items():
        if resource.kind is R.PARCEL:
            assert parcel_scope(principal).admits(resource) == (name in SEES[who]), name
        if resource.kind is R.CABINET:
            admitted = cabinet_scope(principal).admits(
                site_id=resource.site_id, cabinet_id=resource.id
            )
            assert admitted == (name in SEES[who]), name


# --- a deposit that meets an announcement ---------------------------------------------------------

ANNOUNCED, TYPED = "+8613800000001", "+8613900000002"


@pytest.mark.parametrize(
    ("announcer", "courier", "announced", "typed", "expected"),
    [
        ("SF", "SF", ANNOUNCED, TYPED, DepositMatch.ANNOUNCED_PHONE),  # its own courier's typo
        ("SF", "SF", ANNOUNCED, ANNOUNCED, DepositMatch.SAME_PHONE),
        ("JD", "SF", ANNOUNCED, TYPED, DepositMatch.TYPED_PHONE),  # another carrier's key
        ("JD", "SF", ANNOUNCED, ANNOUNCED, DepositMatch.SAME_PHONE),
        (None, "SF", ANNOUNCED, TYPED, DepositMatch.TYPED_PHONE),  # a merchant's key
        (None, "SF", ANNOUNCED, ANNOUNCED, DepositMatch.SAME_PHONE),
        ("SF", None, ANNOUNCED, TYPED, DepositMatch.TYPED_PHONE),  # an unknown courier
    ],
)
def test_the_deposit_rule(announcer, courier, announced, typed, expected) -> None:
    match = deposit_match(
        announcer_carrier_id=announcer,
        courier_carrier_id=courier,
        announced_phone=announced,
        typed_phone=typed,
    )
    assert match is expected


def test_the_couriers_carrier_wins_over_a_later_announcement_by_another() -> None:
    own = Announcement("own", "SF", ANNOUNCED, announced_at=1.0)
    squatter = Announcement("squatter", "JD", TYPED, announced_at=2.0)  # later, typed phone
    chosen, how = choose_announcement([squatter, own], courier_carrier_id="SF", typed_phone=TYPED)
    assert (chosen, how) == (own, DepositMatch.ANNOUNCED_PHONE)


def test_an_announcement_by_another_with_another_phone_is_never_completed() -> None:
    squatter = Announcement("squatter", "JD", "+8613700000003", announced_at=2.0)
    chosen, how = choose_announcement([squatter], courier_carrier_id="SF", typed_phone=TYPED)
    assert (chosen, how) == (None, None)
