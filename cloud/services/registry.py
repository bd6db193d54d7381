"""The registry: sites, cabinets with their credentials and compartments, couriers.

A cabinet gets two secrets at registration, shown once and stored only as the cloud needs them:
its pickup-code key (the cloud must hash codes with it, so it is kept) and its MQTT password
(kept only as Mosquitto's PBKDF2-SHA512 hash, the `$7$` line `mosquitto_passwd` writes). Its
ACL lets it touch only its own topics (docs/mqtt.md#transport). A courier's
PIN is kept as `protocol.hashing.pin_hash` and pushed with `couriers.put` to the site's cabinets.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from cloud import errors
from cloud.core.access import Action, AuditEntry, Principal, ResourceKind
from cloud.core.errors import CoreError
from cloud.core.phones import normalize_phone
from cloud.db import cabinets as db_cabinets
from cloud.db import couriers as db_couriers
from cloud.db.cabinets import create_cabinet, create_site
from cloud.db.commands import enqueue_command
from cloud.db.engine import write_session
from cloud.db.models import (
    CARRIER_ID_LENGTH,
    Cabinet,
    CabinetCreate,
    Carrier,
    Compartment,
    Courier,
    ErpApiKey,
    ErpKeySite,
    Site,
    SiteCreate,
)
from cloud.services import audit
from cloud.services.queries import hash_api_key
from protocol.hashing import pin_hash
from protocol.messages import CourierEntry, PutCouriersData
from protocol.topics import (
    CABINET_ID_PATTERN,
    ack_topic,
    cmd_topic,
    event_ack_topic,
    event_topic,
    state_topic,
)

# What `mosquitto_passwd` (Mosquitto 2.0) writes: PBKDF2-SHA512, 101 rounds, a 12-byte salt.
MOSQUITTO_PBKDF2_ITERATIONS = 101
MOSQUITTO_SALT_BYTES = 12
MQTT_PASSWORD_BYTES = 24  # 32 URL-safe characters
CODE_KEY_BYTES = 32  # as 64 hex characters: the cabinet takes the key as that text's bytes
PIN_SALT_BYTES = 16
# The workers' broker users are this stem and a number: locker-cloud-1, locker-cloud-2, ... The
# broker pins each connection's client id to its user name (Mosquitto's
# `use_username_as_clientid`), so two workers must not share a user: the second would take the
# first one's session. One user per worker; compose and the systemd units number them.
DEFAULT_CLOUD_MQTT_USER = "locker-cloud"
DEFAULT_CLOUD_WORKERS = 2

SIZES = ("S", "M", "L", "XL")
_ID = re.compile(rf"^{CABINET_ID_PATTERN}$")
_COMPARTMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
_PIN = re.compile(r"^[0-9]{4,12}$")
# Keys a `[[layout.compartments]]` entry may carry: the cloud's own, and the wiring the cabinet's
# daemon config adds (its layout file can be the cabinet's config).
_LAYOUT_KEYS = frozenset(
    {"id", "size", "low_door", "driver", "board", "channel", "relay_pin", "sensor_pin"}
)


class RegistryError(errors.InvalidInput):
    """Bad input to the registry (an unknown site, a taken id, a bad layout); nothing written."""


@dataclass(frozen=True)
class CompartmentSpec:
    """A compartment of a layout as the cloud records it."""

    id: str
    size: str
    low_door: bool = False


@dataclass(frozen=True)
class CabinetCredentials:
    """What a new cabinet is provisioned with; the secrets exist in clear only here."""

    cabinet_id: str
    code_key: str = field(repr=False)
    mqtt_password: str = field(repr=False)
    mqtt_password_hash: str = field(repr=False)

    @property
    def password_file_line(self) -> str:
        """The cabinet's line for Mosquitto's `password_file`."""
        return password_file_line(self.cabinet_id, self.mqtt_password_hash)


@dataclass(frozen=True)
class MosquittoAuth:
    """Mosquitto's `password_file` and `acl_file` for a whole registry, as text."""

    password_file: str = field(repr=False)
    acl_file: str
    cabinets: tuple[str, ...]  # the cabinets that got a user
    without_password: tuple[str, ...] = ()  # cabinets with no MQTT password hash: left out


# --- Mosquitto credentials and ACLs ---------------------------------------------------------------


def mosquitto_password_hash(password: str, *, salt: bytes | None = None) -> str:
    """Hash a password the way `mosquitto_passwd` does: `$7$101$<salt b64>$<hash b64>`."""
    salt = salt if salt is not None else secrets.token_bytes(MOSQUITTO_SALT_BYTES)
    derived = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), salt, MOSQUITTO_PBKDF2_ITERATIONS, dklen=64
    )
    salt_b64 = base64.b64encode(salt).decode()
    hash_b64 = base64.b64encode(derived).decode()
    return f"$7${MOSQUITTO_PBKDF2_ITERATIONS}${salt_b64}${hash_b64}"


def verify_mosquitto_password(password: str, stored: str) -> bool:
    """Whether `password` matches a `$7$` hash (False for any other format)."""
    try:
        _, scheme, iterations, salt_b64, hash_b64 = stored.split("$")
        if scheme != "7":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(hash_b64)
        derived = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), salt, int(iterations), dklen=len(expected)
        )
    except ValueError:
        return False
    return secrets.compare_digest(derived, expected)


def password_file_line(user: str, password_hash: str) -> str:
    """One user's line of Mosquitto's `password_file`."""
    return f"{user}:{password_hash}"


def mosquitto_acl_lines(cab: str) -> str:
    """Return the ACL block letting cabinet `cab` touch only its own topics, as its user."""
    _check_id(cab, "cabinet id")
    return "\n".join(
        [
            f"user {cab}",
            f"topic write {event_topic(cab)}",
            f"topic write {state_topic(cab)}",  # the birth, and the Will the broker publishes
            f"topic write {ack_topic(cab)}",
            f"topic read {cmd_topic(cab)}",
            f"topic read {event_ack_topic(cab)}",
        ]
    )


def mosquitto_cloud_acl_lines(user: str = DEFAULT_CLOUD_MQTT_USER) -> str:
    """Return the ACL block of the cloud workers' user: every cabinet's topics.

    It covers the workers' shared subscriptions too: Mosquitto 2 checks a subscription to
    `$share/cloud/<filter>` against `<filter>` (tests/deploy/test_mosquitto_config.py).
    """
    return f"user {user}\ntopic readwrite lockers/v1/#"


def worker_mqtt_users(
    stem: str = DEFAULT_CLOUD_MQTT_USER, workers: int = DEFAULT_CLOUD_WORKERS
) -> tuple[str, ...]:
    """Return the broker user of each of `workers` workers: `<stem>-1` ... `<stem>-<workers>`.

    Worker n logs in as `<stem>-n` (`locker cloud worker --mqtt-username`), and that is its
    client id too, so no two workers, and no cabinet, can take each other's session.
    """
    if workers < 1:
        raise RegistryError(f"the number of workers must be at least 1, not {workers}")
    _check_id(stem, "the workers' broker user")
    return tuple(_check_id(f"{stem}-{n}", "a worker's broker user") for n in range(1, workers + 1))


def mosquitto_auth(
    *, session: Session, cloud_users: Sequence[str], cloud_password: str
) -> MosquittoAuth:
    """Return the password file and ACL of every registered cabinet plus the workers' users.

    The cabinets' lines are the ones `cabinet add` printed (the stored `$7$` hash, the same ACL
    block); the workers' password is hashed here, with a fresh salt per user.
    """
    if not cloud_users:
        raise RegistryError("at least one worker user is needed")
    for user in cloud_users:
        _check_id(user, "the cloud's broker user")
    cabinets = db_cabinets.all_cabinets(session=session)
    taken = sorted(set(cloud_users) & {c.id for c in cabinets})
    if taken:
        raise RegistryError(f"the cloud's broker user {taken[0]!r} is also a cabinet id")
    users = [c for c in cabinets if c.mqtt_password_hash]
    passwords = [
        password_file_line(user, mosquitto_password_hash(cloud_password)) for user in cloud_users
    ]
    passwords += [password_file_line(c.id, c.mqtt_password_hash or "") for c in users]
    blocks = [
        *(mosquitto_cloud_acl_lines(user) for user in cloud_users),
        *(mosquitto_acl_lines(c.id) for c in users),
    ]
    return MosquittoAuth(
        password_file="\n".join(passwords) + "\n",
        acl_file="\n\n".join(blocks) + "\n",
        cabinets=tuple(c.id for c in users),
        without_password=tuple(c.id for c in cabinets if not c.mqtt_password_hash),
    )


# --- the audit of registry changes ---------------------------------------------------------------


def _audit(
    session: Session,
    actor: Principal | None,
    action: Action,
    kind: ResourceKind,
    resource_id: str,
    now: datetime,
    **detail: Any,
) -> None:
    """Record a registry change, in its transaction; `actor` None: the operator at the CLI."""
    who = actor or audit.cli_principal()
    entry = AuditEntry(who.kind, who.id, action, kind, resource_id, detail=detail)
    audit.record(session=session, entry=entry, now=now)


# --- sites ----------------------------------------------------------------------------------------


def add_site(
    *, session: Session, site_create: SiteCreate, now: datetime, actor: Principal | None = None
) -> Site:
    """Add a site and commit; raise RegistryError (nothing written) on bad input."""
    _check_id(site_create.id, "site id")
    write_session(session)
    try:
        if session.get(Site, site_create.id) is not None:
            raise RegistryError(f"site {site_create.id!r} exists already")
        try:
            site = create_site(session=session, site_create=site_create, now=now)
        except (CoreError, ValueError) as err:
            raise RegistryError(f"bad site policy: {err}") from err
        _audit(session, actor, Action.MANAGE_REGISTRY, ResourceKind.SITE, site.id, now, op="add")
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return site


# --- cabinets -------------------------------------------------------------------------------------


def layout_compartments(layout: Mapping[str, Any]) -> list[CompartmentSpec]:
    """Return the compartments of a parsed layout file (`[[layout.compartments]]`), validated."""
    section = layout.get("layout")
    entries = section.get("compartments") if isinstance(section, Mapping) else None
    if not isinstance(entries, list) or not entries:
        raise RegistryError("the layout has no [[layout.compartments]] entries")
    specs: list[CompartmentSpec] = []
    for n, entry in enumerate(entries, start=1):
        where = f"compartment #{n}"
        if not isinstance(entry, Mapping):
            raise RegistryError(f"{where} is not a table")
        unknown = sorted(set(entry) - _LAYOUT_KEYS)
        if unknown:
            raise RegistryError(f"{where}: unknown key(s) {', '.join(unknown)}")
        compartment_id = entry.get("id")
        if not isinstance(compartment_id, str) or not _COMPARTMENT_ID.match(compartment_id):
            raise RegistryError(
                f"{where}: id must be 1-16 of A-Z a-z 0-9 _ -, not {compartment_id!r}"
            )
        size = entry.get("size")
        if size not in SIZES:
            raise RegistryError(
                f"compartment {compartment_id}: size must be one of {SIZES}, not {size!r}"
            )
        low_door = entry.get("low_door", False)
        if not isinstance(low_door, bool):
            raise RegistryError(f"compartment {compartment_id}: low_door must be true or false")
        specs.append(CompartmentSpec(compartment_id, size, low_door))
    ids = [spec.id for spec in specs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise RegistryError(f"compartment id(s) listed twice: {', '.join(duplicates)}")
    return specs


def add_cabinet(
    *,
    session: Session,
    cabinet_create: CabinetCreate,
    compartments: Sequence[CompartmentSpec],
    now: datetime,
    seal_key: bytes,
    token_bytes: Callable[[int], bytes] = secrets.token_bytes,
    actor: Principal | None = None,
) -> CabinetCredentials:
    """Add a cabinet, its compartments and credentials and commit; return the credentials.

    The code key is stored sealed under `seal_key` (the settings' secret key).

    Raise RegistryError (nothing written) for an unknown site or a taken id.
    """
    cab = _check_id(cabinet_create.id, "cabinet id")
    if not compartments:
        raise RegistryError("a cabinet needs at least one compartment")
    code_key = token_bytes(CODE_KEY_BYTES).hex()
    password = base64.urlsafe_b64encode(token_bytes(MQTT_PASSWORD_BYTES)).decode().rstrip("=")
    password_hash = mosquitto_password_hash(password, salt=token_bytes(MOSQUITTO_SALT_BYTES))
    write_session(session)
    try:
        if session.get(Site, cabinet_create.site_id) is None:
            raise RegistryError(f"no site {cabinet_create.site_id!r}: add it first")
        if session.get(Cabinet, cab) is not None:
            raise RegistryError(f"cabinet {cab!r} exists already")
        cabinet = create_cabinet(
            session=session,
            cabinet_create=cabinet_create,
            code_key=code_key.encode(),
            seal_key=seal_key,
            now=now,
        )
        cabinet.mqtt_password_hash = password_hash
        session.add(cabinet)
        for spec in compartments:
            session.add(
                Compartment(cabinet_id=cab, id=spec.id, size=spec.size, low_door=spec.low_door)
            )
        _audit(
            session,
            actor,
            Action.MANAGE_REGISTRY,
            ResourceKind.CABINET,
            cab,
            now,
            op="add",
            site_id=cabinet_create.site_id,
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return CabinetCredentials(
        cabinet_id=cab,
        code_key=code_key,
        mqtt_password=password,
        mqtt_password_hash=password_hash,
    )


# --- couriers -------------------------------------------------------------------------------------


def add_courier(
    *,
    session: Session,
    courier_id: str,
    carrier: str,
    pin: str,
    site_id: str,
    now: datetime,
    name: str = "",
    phone: str | None = None,
    salt: bytes | None = None,
    actor: Principal | None = None,
) -> list[str]:
    """Add a courier and queue `couriers.put` to every cabinet of the site; commit.

    `phone` (any format `phonenumbers` reads; China by default) is where the courier is told
    that a parcel of theirs expired and must be taken back. Return the cabinet ids the courier
    was pushed to. Raise RegistryError (nothing written) for a bad id, PIN or phone, an unknown
    site or a taken courier id.
    """
    _check_id(courier_id, "courier id")
    if phone is not None:
        try:
            phone = normalize_phone(phone)
        except ValueError as err:
            raise RegistryError(f"the courier's phone: {err}") from None
    if not _PIN.match(pin):
        raise RegistryError("the PIN must be 4 to 12 digits")
    carrier = _check_carrier(carrier)
    hashed = pin_hash(pin, salt if salt is not None else secrets.token_bytes(PIN_SALT_BYTES))
    # The carrier goes too: a door held for a carrier's shipment opens only for its couriers.
    entry = CourierEntry(courier_id=courier_id, pin_hash=hashed, carrier_id=carrier)
    data = PutCouriersData(couriers=[entry])
    write_session(session)
    try:
        if session.get(Site, site_id) is None:
            raise RegistryError(f"no site {site_id!r}")
        # Ids are compared case-insensitively (the kiosk's keyboard has capitals only): `SF-001`
        # beside `sf-001` would be two couriers nobody at a cabinet could tell apart.
        taken = db_couriers.courier_with_key(session=session, courier_id=courier_id)
        if taken is not None:
            same = "" if taken.id == courier_id else f" (as {taken.id!r}: ids ignore case)"
            raise RegistryError(f"courier {courier_id!r} exists already{same}")
        # A courier's carrier is a carrier row (ERP keys and carrier accounts bind to it): the
        # first courier of a carrier registers it.
        if session.get(Carrier, carrier) is None:
            session.add(Carrier(id=carrier, name=carrier, created_at=now))
            session.flush()
        session.add(
            Courier(
                id=courier_id,
                carrier=carrier,
                name=name,
                pin_hash=hashed,
                phone=phone,
                created_at=now,
            )
        )
        cabinets = db_cabinets.cabinet_ids_at_site(session=session, site_id=site_id)
        for cab in cabinets:
            enqueue_command(session=session, cab=cab, type="couriers.put", data=data, now=now)
        _audit(
            session,
            actor,
            Action.MANAGE_REGISTRY,
            ResourceKind.COURIER,
            courier_id,
            now,
            op="add",
            carrier=carrier,
            site_id=site_id,
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return cabinets


def _check_carrier(value: str) -> str:
    carrier = value.strip()
    if not carrier:
        raise RegistryError("the carrier must not be empty")
    if len(carrier) > CARRIER_ID_LENGTH:
        raise RegistryError(f"the carrier must be at most {CARRIER_ID_LENGTH} characters")
    return carrier


def add_carrier(
    *, session: Session, carrier_id: str, name: str, now: datetime, actor: Principal | None = None
) -> Carrier:
    """Add a carrier (a courier company) and commit; RegistryError if it exists already."""
    carrier_id = _check_carrier(carrier_id)
    write_session(session)
    try:
        if session.get(Carrier, carrier_id) is not None:
            raise RegistryError(f"carrier {carrier_id!r} exists already")
        carrier = Carrier(id=carrier_id, name=name.strip() or carrier_id, created_at=now)
        session.add(carrier)
        _audit(
            session,
            actor,
            Action.MANAGE_REGISTRY,
            ResourceKind.SYSTEM,
            carrier_id,
            now,
            op="add carrier",
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return carrier


def _check_id(value: str, what: str) -> str:
    if not _ID.match(value):
        raise RegistryError(f"{what} must be 1-64 of A-Z a-z 0-9 _ -, not {value!r}")
    return value


def courier_phone(*, session: Session, courier_id: str) -> str | None:
    """Return a courier's phone (E.164), None if unknown or not given."""
    courier = session.get(Courier, courier_id)
    return courier.phone if courier else None


# --- ERP API keys ---------------------------------------------------------------------------------

ERP_KEY_BYTES = 32  # 43 URL-safe characters
ERP_KEY_PREFIX = "lk_"  # says what the string is when it turns up in a config or a log


@dataclass(frozen=True)
class ErpKeyCredentials:
    """A new ERP API key: the clear key exists only here, the cloud keeps its hash."""

    key_id: str
    key: str = field(repr=False)


def add_erp_key(
    *,
    session: Session,
    key_id: str,
    name: str,
    now: datetime,
    carrier_id: str | None = None,
    merchant_id: str | None = None,
    site_ids: Sequence[str] = (),
    token_bytes: Callable[[int], bytes] = secrets.token_bytes,
    actor: Principal | None = None,
) -> ErpKeyCredentials:
    """Add an ERP API key (kept as its SHA-256) and commit; return the clear key, once.

    The key acts for exactly one carrier (an existing carrier row) or one merchant, and may
    announce for and see the cabinets of `site_ids` only (docs/who-may-do-what.md). Raise
    RegistryError (nothing written) for a bad or taken id, a missing or double binding, an
    unknown carrier or site.
    """
    _check_id(key_id, "key id")
    if not name.strip():
        raise RegistryError("the ERP's name must not be empty")
    if (carrier_id is None) == (merchant_id is None):
        raise RegistryError(
            "an ERP key acts for exactly one carrier (--carrier) or one merchant (--merchant)"
        )
    if merchant_id is not None:
        _check_id(merchant_id, "merchant id")
    if not site_ids:
        raise RegistryError("an ERP key needs at least one site (--site) it may announce for")
    sites = sorted(set(site_ids))
    key = ERP_KEY_PREFIX + base64.urlsafe_b64encode(token_bytes(ERP_KEY_BYTES)).decode().rstrip("=")
    write_session(session)
    try:
        if session.get(ErpApiKey, key_id) is not None:
            raise RegistryError(f"ERP key {key_id!r} exists already")
        if carrier_id is not None and session.get(Carrier, carrier_id) is None:
            raise RegistryError(
                f"no carrier {carrier_id!r}: add it first (`locker cloud carrier add`)"
            )
        for site_id in sites:
            if session.get(Site, site_id) is None:
                raise RegistryError(f"no site {site_id!r}")
        session.add(
            ErpApiKey(
                id=key_id,
                name=name,
                key_prefix=key[:8],
                key_hash=hash_api_key(key),
                carrier_id=carrier_id,
                merchant_id=merchant_id,
                created_at=now,
            )
        )
        session.flush()
        session.add_all(ErpKeySite(key_id=key_id, site_id=site_id) for site_id in sites)
        _audit(
            session,
            actor,
            Action.MANAGE_KEYS,
            ResourceKind.API_KEY,
            key_id,
            now,
            op="add",
            carrier_id=carrier_id,
            merchant_id=merchant_id,
            site_ids=sites,
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return ErpKeyCredentials(key_id=key_id, key=key)


def revoke_erp_key(
    *, session: Session, key_id: str, reason: str, now: datetime, actor: Principal | None = None
) -> None:
    """Revoke an ERP key (the API refuses it from now on) and commit, with its audit row.

    RegistryError (nothing written) for an unknown or already revoked key or an empty reason.
    """
    if not reason.strip():
        raise RegistryError("say why the key is revoked (--reason)")
    write_session(session)
    try:
        key = session.get(ErpApiKey, key_id)
        if key is None:
            raise RegistryError(f"no ERP key {key_id!r}")
        if key.revoked_at is not None:
            raise RegistryError(f"ERP key {key_id!r} was revoked already")
        key.revoked_at = now
        session.add(key)
        who = actor or audit.cli_principal()
        entry = AuditEntry(
            who.kind,
            who.id,
            Action.MANAGE_KEYS,
            ResourceKind.API_KEY,
            key_id,
            reason=reason.strip(),
            detail={"op": "revoke"},
        )
        audit.record(session=session, entry=entry, now=now)
        session.commit()
    except BaseException:
        session.rollback()
        raise
