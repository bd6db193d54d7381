"""Who may do what (docs/who-may-do-what.md): principals, actions and the one `decide`.

Pure: no I/O. The API builds a `Principal` from whatever signed the request (an ERP key, a
console account, a recipient's scan session, a cabinet's credentials), a `Resource` from the row
it asks about, and acts only on an allowed `Decision`. Lists are narrowed by the same rules:
`parcel_scope` / `cabinet_scope` say which rows a principal may see, and the database layer
(`cloud.db.scoping`) turns them into WHERE clauses, so a list can never show a row `decide`
would hide.

The refusal rule: a principal that may never do an action gets FORBIDDEN whatever it names (that
says nothing about what exists); a resource outside its scope is NOT_FOUND, exactly as a missing
one is, so asking about another site's cabinet or another carrier's parcel tells nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class PrincipalKind(StrEnum):
    """Who is asking."""

    OPERATOR_ADMIN = "operator_admin"  # console account: everything
    SITE_MANAGER = "site_manager"  # console account: the sites assigned
    CARRIER = "carrier"  # console account of a courier company: its couriers and parcels
    ERP_CLIENT = "erp_client"  # API key, bound to one carrier or merchant and to sites
    TECHNICIAN = "technician"  # PIN at the cabinet: its maintenance screen
    RECIPIENT = "recipient"  # code, QR or scan session: their parcels at one cabinet
    CABINET = "cabinet"  # MQTT / HTTP credentials of one cabinet: its own topics
    # A one-time enrolment code (cloud.core.enrolment): trades itself, once, for its one
    # cabinet's credentials and config, and nothing else.
    ENROLMENT = "enrolment"
    PROVIDER = "provider"  # Twilio, WeChat: a callback proven by the provider's signature
    MONITOR = "monitor"  # Prometheus, by the metrics token: the fleet's aggregate figures only
    ANYONE = "anyone"  # nobody signed in: health, docs, the pages a QR or a notice links to


# The console's roles: what an `accounts.role` may hold.
ACCOUNT_ROLES = (PrincipalKind.OPERATOR_ADMIN, PrincipalKind.SITE_MANAGER, PrincipalKind.CARRIER)


class Action(StrEnum):
    """What a principal asks to do."""

    READ_HEALTH = "read_health"
    # A cabinet, its presence, occupancy and compartments; its site's policy goes with it.
    READ_CABINET = "read_cabinet"
    READ_ALARMS = "read_alarms"
    HANDLE_ALARMS = "handle_alarms"  # acknowledge or resolve an alarm (the resource: its cabinet)
    READ_PARCEL = "read_parcel"  # a parcel and its tracking timeline
    READ_REPORTS = "read_reports"
    READ_COURIERS = "read_couriers"
    READ_SETTLEMENTS = "read_settlements"
    # The audit log: everything for an operator admin, a site manager's sites' cabinets and
    # parcels (cloud.db.console_reads narrows the rows the same way).
    READ_AUDIT = "read_audit"
    ANNOUNCE_SHIPMENT = "announce_shipment"  # the resource is the cabinet it is announced for
    UPDATE_SHIPMENT = "update_shipment"
    CANCEL_PARCEL = "cancel_parcel"
    RECEIVE_WEBHOOK = "receive_webhook"
    OPEN_DOOR_REMOTELY = "open_door_remotely"
    SET_OUT_OF_SERVICE = "set_out_of_service"
    EXTEND_DEADLINE = "extend_deadline"
    MANAGE_REGISTRY = "manage_registry"  # sites, cabinets, carriers, couriers
    MANAGE_ACCOUNTS = "manage_accounts"  # console accounts and their roles
    MANAGE_KEYS = "manage_keys"  # ERP API keys
    MAINTAIN_CABINET = "maintain_cabinet"  # the kiosk's maintenance screen
    PICK_UP = "pick_up"  # a recipient opens the door of their own parcel
    SCAN_TO_OPEN = "scan_to_open"  # the steps of the scan page before it knows the recipient
    CABINET_LINK = "cabinet_link"  # a cabinet's own topics, its scan QR
    ENROL_CABINET = "enrol_cabinet"  # trade an enrolment code for its cabinet's credentials
    PROVIDER_CALLBACK = "provider_callback"
    READ_METRICS = "read_metrics"  # counts and latencies: nothing per cabinet, parcel or phone


# Acts that change who may do what, or touch a door or a deadline from afar: each writes an
# `audit_log` row in the transaction that does it (cloud.services.audit.record).
AUDITED = frozenset(
    {
        Action.OPEN_DOOR_REMOTELY,
        Action.SET_OUT_OF_SERVICE,
        Action.EXTEND_DEADLINE,
        Action.CANCEL_PARCEL,
        Action.HANDLE_ALARMS,
        Action.MANAGE_REGISTRY,
        Action.MANAGE_ACCOUNTS,
        Action.MANAGE_KEYS,
    }
)
# Of those, the ones a person must give a reason for (an empty reason is refused).
REASON_REQUIRED = frozenset(
    {
        Action.OPEN_DOOR_REMOTELY,
        Action.SET_OUT_OF_SERVICE,
        Action.EXTEND_DEADLINE,
        Action.CANCEL_PARCEL,
    }
)

_ALL = frozenset(Action)

# What each kind of principal may ever do; the scope rules below then say on which resources.
ROLE_ACTIONS: dict[PrincipalKind, frozenset[Action]] = {
    PrincipalKind.OPERATOR_ADMIN: _ALL,
    PrincipalKind.SITE_MANAGER: frozenset(
        {
            Action.READ_HEALTH,
            Action.READ_CABINET,
            Action.READ_ALARMS,
            Action.HANDLE_ALARMS,
            Action.READ_PARCEL,
            Action.READ_REPORTS,
            Action.READ_AUDIT,
            Action.OPEN_DOOR_REMOTELY,
            Action.SET_OUT_OF_SERVICE,
            Action.EXTEND_DEADLINE,
        }
    ),
    PrincipalKind.CARRIER: frozenset(
        {Action.READ_HEALTH, Action.READ_COURIERS, Action.READ_PARCEL, Action.READ_SETTLEMENTS}
    ),
    PrincipalKind.ERP_CLIENT: frozenset(
        {
            Action.READ_HEALTH,
            Action.READ_CABINET,
            Action.READ_PARCEL,
            Action.ANNOUNCE_SHIPMENT,
            Action.UPDATE_SHIPMENT,
            Action.CANCEL_PARCEL,
            Action.RECEIVE_WEBHOOK,
            Action.READ_SETTLEMENTS,  # a carrier's key: its couriers' statement (对账单)
        }
    ),
    PrincipalKind.TECHNICIAN: frozenset({Action.READ_HEALTH, Action.MAINTAIN_CABINET}),
    PrincipalKind.RECIPIENT: frozenset(
        {Action.READ_HEALTH, Action.READ_PARCEL, Action.PICK_UP, Action.SCAN_TO_OPEN}
    ),
    PrincipalKind.CABINET: frozenset({Action.READ_HEALTH, Action.CABINET_LINK}),
    PrincipalKind.ENROLMENT: frozenset({Action.READ_HEALTH, Action.ENROL_CABINET}),
    PrincipalKind.PROVIDER: frozenset({Action.READ_HEALTH, Action.PROVIDER_CALLBACK}),
    PrincipalKind.MONITOR: frozenset({Action.READ_HEALTH, Action.READ_METRICS}),
    PrincipalKind.ANYONE: frozenset({Action.READ_HEALTH, Action.SCAN_TO_OPEN}),
}


@dataclass(frozen=True)
class Principal:
    """Who is asking, with everything its scope depends on.

    `site_ids`: a site manager's or ERP client's sites. `carrier_id` / `merchant_id`: what a
    carrier account or an ERP key is bound to (a key holds exactly one of them). `cabinet_id`:
    the one cabinet of a technician, a recipient or a cabinet. `parcel_ids`: a recipient's
    parcels (row ids) at that cabinet.
    """

    kind: PrincipalKind
    id: str
    site_ids: frozenset[str] = frozenset()
    carrier_id: str | None = None
    merchant_id: str | None = None
    cabinet_id: str | None = None
    parcel_ids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.kind is PrincipalKind.ERP_CLIENT and (self.carrier_id is None) == (
            self.merchant_id is None
        ):
            raise ValueError("an ERP client is bound to exactly one carrier or merchant")
        if self.kind is PrincipalKind.CARRIER and not self.carrier_id:
            raise ValueError("a carrier account names its carrier")


class ResourceKind(StrEnum):
    SYSTEM = "system"  # nothing in particular: health, the registry as a whole, a callback
    SITE = "site"
    CABINET = "cabinet"
    PARCEL = "parcel"
    COURIER = "courier"
    ACCOUNT = "account"
    API_KEY = "api_key"
    CARRIER = "carrier"  # a carrier's statements (its id)


@dataclass(frozen=True)
class Resource:
    """What a principal asks about, with the facts its visibility depends on.

    For a parcel: `site_id` and `cabinet_id` where it is; `owner_carrier_id` /
    `owner_merchant_id` of the ERP client that announced it (None for a parcel a courier
    deposited unannounced); `courier_carrier_id`, the carrier of the courier who deposited it.
    For a courier, `courier_carrier_id` is its carrier.
    """

    kind: ResourceKind
    id: str | None = None
    site_id: str | None = None
    cabinet_id: str | None = None
    owner_carrier_id: str | None = None
    owner_merchant_id: str | None = None
    courier_carrier_id: str | None = None

    @property
    def announced(self) -> bool:
        return self.owner_carrier_id is not None or self.owner_merchant_id is not None


SYSTEM = Resource(ResourceKind.SYSTEM)


class Outcome(StrEnum):
    ALLOWED = "allowed"
    NOT_FOUND = "not_found"  # missing, or outside the caller's scope: the same answer
    FORBIDDEN = "forbidden"  # the caller's kind may never do this


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOWED

    @property
    def http_status(self) -> int:
        return {Outcome.ALLOWED: 200, Outcome.NOT_FOUND: 404, Outcome.FORBIDDEN: 403}[self.outcome]


def decide(principal: Principal, action: Action, resource: Resource | None) -> Decision:
    """Return whether `principal` may do `action` on `resource` (None: no such resource).

    The role is checked first: a refusal for the role depends on nothing that exists. Then
    the resource must exist and be in scope; out of scope answers as missing.
    """
    if action not in ROLE_ACTIONS[principal.kind]:
        return Decision(Outcome.FORBIDDEN, f"a {principal.kind} may not {action}")
    if resource is None:
        return Decision(Outcome.NOT_FOUND, "no such resource")
    if not sees(principal, resource):
        return Decision(Outcome.NOT_FOUND, "no such resource")  # the same words: no oracle
    return Decision(Outcome.ALLOWED, f"{principal.kind} {principal.id}: {action} in scope")


def sees(principal: Principal, resource: Resource) -> bool:
    """Whether `resource` is in `principal`'s scope (exists for it at all)."""
    kind = principal.kind
    if kind is PrincipalKind.OPERATOR_ADMIN:
        return True
    match resource.kind:
        case ResourceKind.SYSTEM:
            return True  # the role table alone decides system-wide acts
        case ResourceKind.SITE:
            return kind in (PrincipalKind.SITE_MANAGER, PrincipalKind.ERP_CLIENT) and (
                resource.id in principal.site_ids
            )
        case ResourceKind.CABINET:
            return cabinet_scope(principal).admits(site_id=resource.site_id, cabinet_id=resource.id)
        case ResourceKind.PARCEL:
            return parcel_scope(principal).admits(resource)
        case ResourceKind.COURIER:
            return kind is PrincipalKind.CARRIER and (
                resource.courier_carrier_id == principal.carrier_id
            )
        case ResourceKind.CARRIER:
            # Its own account or a key bound to it; a merchant's key is bound to no carrier.
            return kind in (PrincipalKind.CARRIER, PrincipalKind.ERP_CLIENT) and (
                principal.carrier_id is not None and resource.id == principal.carrier_id
            )
        case ResourceKind.ACCOUNT | ResourceKind.API_KEY:
            return False  # operator admins only, handled above
    return False  # pragma: no cover - every kind is matched


# --- the scoping rules of list queries ------------------------------------------------------------


@dataclass(frozen=True)
class CabinetScope:
    """Which cabinets a principal sees: all, those of `site_ids`, or the one `cabinet_id`.

    `everything` wins; otherwise a cabinet is seen if its site is in `site_ids` or it is
    `cabinet_id`. An empty scope sees nothing.
    """

    everything: bool = False
    site_ids: frozenset[str] = frozenset()
    cabinet_id: str | None = None

    def admits(self, *, site_id: str | None, cabinet_id: str | None) -> bool:
        if self.everything:
            return True
        if site_id is not None and site_id in self.site_ids:
            return True
        return self.cabinet_id is not None and cabinet_id == self.cabinet_id

    @property
    def empty(self) -> bool:
        return not self.everything and not self.site_ids and self.cabinet_id is None


@dataclass(frozen=True)
class ParcelScope:
    """Which parcels a principal sees; a parcel is seen if any clause admits it.

    - `everything`;
    - `site_ids`: every parcel at a cabinet of these sites (a site manager);
    - `owner_carrier_id` / `owner_merchant_id`: the parcels that owner announced;
    - `courier_carrier_id`: parcels deposited by that carrier's couriers, but only those no ERP
      client announced unless `courier_any_owner`, and only at `courier_site_ids` unless that
      is None (any site);
    - `cabinet_id` (with `parcel_ids`, if not None): the parcels at one cabinet.
    """

    everything: bool = False
    site_ids: frozenset[str] = frozenset()
    owner_carrier_id: str | None = None
    owner_merchant_id: str | None = None
    courier_carrier_id: str | None = None
    courier_any_owner: bool = False
    courier_site_ids: frozenset[str] | None = None
    cabinet_id: str | None = None
    parcel_ids: frozenset[str] | None = None

    def admits(self, parcel: Resource) -> bool:
        if self.everything:
            return True
        if parcel.site_id is not None and parcel.site_id in self.site_ids:
            return True
        if self.owner_carrier_id is not None and parcel.owner_carrier_id == self.owner_carrier_id:
            return True
        if (
            self.owner_merchant_id is not None
            and parcel.owner_merchant_id == self.owner_merchant_id
        ):
            return True
        if (
            self.courier_carrier_id is not None
            and parcel.courier_carrier_id == self.courier_carrier_id
            and (self.courier_any_owner or not parcel.announced)
            and (self.courier_site_ids is None or parcel.site_id in self.courier_site_ids)
        ):
            return True
        return (
            self.cabinet_id is not None
            and parcel.cabinet_id == self.cabinet_id
            and (self.parcel_ids is None or parcel.id in self.parcel_ids)
        )


_NOTHING_CABINETS = CabinetScope()
_NOTHING_PARCELS = ParcelScope()


def cabinet_scope(principal: Principal) -> CabinetScope:
    """Return the cabinets `principal` sees (READ_CABINET and the acts on a cabinet)."""
    match principal.kind:
        case PrincipalKind.OPERATOR_ADMIN:
            return CabinetScope(everything=True)
        case PrincipalKind.SITE_MANAGER | PrincipalKind.ERP_CLIENT:
            return CabinetScope(site_ids=principal.site_ids)
        case (
            PrincipalKind.TECHNICIAN
            | PrincipalKind.RECIPIENT
            | PrincipalKind.CABINET
            | PrincipalKind.ENROLMENT
        ):
            return CabinetScope(cabinet_id=principal.cabinet_id)
    return _NOTHING_CABINETS  # a carrier sees its couriers and parcels, not cabinets


def parcel_scope(principal: Principal) -> ParcelScope:
    """Return the parcels `principal` sees.

    An ERP client sees what its carrier or merchant announced, wherever it was deposited, and
    (a carrier's key) what its couriers deposited unannounced at its sites; never a parcel
    another client announced. A carrier account sees every parcel its couriers deposited and
    every one its ERP keys announced.
    """
    match principal.kind:
        case PrincipalKind.OPERATOR_ADMIN:
            return ParcelScope(everything=True)
        case PrincipalKind.SITE_MANAGER:
            return ParcelScope(site_ids=principal.site_ids)
        case PrincipalKind.CARRIER:
            return ParcelScope(
                owner_carrier_id=principal.carrier_id,
                courier_carrier_id=principal.carrier_id,
                courier_any_owner=True,
            )
        case PrincipalKind.ERP_CLIENT:
            return ParcelScope(
                owner_carrier_id=principal.carrier_id,
                owner_merchant_id=principal.merchant_id,
                courier_carrier_id=principal.carrier_id,
                courier_site_ids=principal.site_ids,
            )
        case PrincipalKind.RECIPIENT:
            return ParcelScope(cabinet_id=principal.cabinet_id, parcel_ids=principal.parcel_ids)
        case PrincipalKind.CABINET:
            return ParcelScope(cabinet_id=principal.cabinet_id)
    return _NOTHING_PARCELS


# --- a deposit that meets an announcement ---------------------------------------------------------


class DepositMatch(StrEnum):
    """What a courier's deposit does with a waiting announcement of its tracking number."""

    ANNOUNCED_PHONE = "announced_phone"  # completes it; the announced phone gets the code
    SAME_PHONE = "same_phone"  # completes it; both phones agree, nothing to choose
    TYPED_PHONE = "typed_phone"  # does not complete it: a parcel of its own, the typed phone


def deposit_match(
    *,
    announcer_carrier_id: str | None,
    courier_carrier_id: str | None,
    announced_phone: str,
    typed_phone: str,
) -> DepositMatch:
    """Decide which phone a deposit's code goes to when an announcement waits for it.

    The rule: the announced phone wins over the one typed at the cabinet only if the depositing
    courier belongs to the carrier whose ERP key announced it (that carrier's own order data
    corrects its courier's typo). Otherwise the announcement is completed only if it names the
    same phone; if not, nothing of it is used: the deposit is a parcel of its own for the typed
    phone, and the announcement stays announced and is flagged in the audit log. Without this,
    any key could announce another carrier's tracking number first and have that carrier's
    pickup code sent to a phone it chose.
    """
    if announced_phone == typed_phone:
        return DepositMatch.SAME_PHONE
    if announcer_carrier_id is not None and announcer_carrier_id == courier_carrier_id:
        return DepositMatch.ANNOUNCED_PHONE
    return DepositMatch.TYPED_PHONE


@dataclass(frozen=True)
class Announcement:
    """An announcement waiting for a deposit, as `choose_announcement` weighs it."""

    ref: object  # whatever the caller names it by (a row id)
    owner_carrier_id: str | None
    phone: str
    announced_at: float  # a timestamp: the latest of equals wins


def choose_announcement(
    announcements: Sequence[Announcement], *, courier_carrier_id: str | None, typed_phone: str
) -> tuple[Announcement | None, DepositMatch | None]:
    """Return the announcement a deposit completes (None: it completes none) and how.

    Several clients may have announced one tracking number (none blocks another). One of the
    depositing courier's carrier comes first, then one naming the typed phone; among equals
    the latest. One that `deposit_match` answers TYPED_PHONE is never completed.
    """
    ranked = []
    for announcement in announcements:
        match = deposit_match(
            announcer_carrier_id=announcement.owner_carrier_id,
            courier_carrier_id=courier_carrier_id,
            announced_phone=announcement.phone,
            typed_phone=typed_phone,
        )
        if match is DepositMatch.TYPED_PHONE:
            continue
        same_carrier = (
            announcement.owner_carrier_id is not None
            and announcement.owner_carrier_id == courier_carrier_id
        )
        ranked.append(((same_carrier, announcement.announced_at), announcement, match))
    if not ranked:
        return None, None
    _, best, match = max(ranked, key=lambda r: r[0])
    return best, match


# The audit action of a deposit that met announcements it did not complete.
FLAG_ANNOUNCEMENT = "flag_announcement"


@dataclass(frozen=True)
class AuditEntry:
    """What an `audit_log` row says: who did what to which resource, why, and how it ended."""

    principal_kind: PrincipalKind
    principal_id: str
    action: Action | str
    resource_kind: ResourceKind
    resource_id: str | None
    reason: str = ""
    outcome: str = "done"
    detail: dict[str, object] = field(default_factory=dict)
