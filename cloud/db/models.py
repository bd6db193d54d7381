"""The cloud's tables (SQLModel), portable across SQLite and PostgreSQL.

Naming follows the FastAPI full-stack template: `XBase` holds the shared fields, `X(table=True)`
the row. Times are aware UTC (`UtcDateTime`); free-form payloads are JSON columns. Secrets are
stored as hashes or sealed, never in clear: a parcel holds its code's keyed hash, a notice row
holds its code sealed under the cloud's secret key until it is sent (`cloud.db.sealing`).
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, text
from sqlmodel import Field, SQLModel

from cloud.db.console_models import (  # noqa: F401  (their tables join this metadata)
    ConsoleSession,
    SignInFailure,
)
from cloud.db.enrolment_models import (  # noqa: F401  (their tables join this metadata)
    CabinetConfigVersion,
    EnrolmentCode,
    EnrolmentTry,
)
from cloud.db.health_models import DoorHealth  # noqa: F401  (its table joins this metadata)
from cloud.db.reservation_models import Reservation  # noqa: F401  (its table joins this metadata)
from cloud.db.scan_models import ScanOtp, ScanTry  # noqa: F401  (their tables join this metadata)
from cloud.db.types import UtcDateTime
from cloud.db.webhook_models import (  # noqa: F401  (their tables join this metadata)
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

ID_LENGTH = 64  # the protocol's ids (cabinet, parcel, courier, message) are 1–64 characters


def _fk(target: str, *, index: bool = False, nullable: bool = False, ondelete: str | None = None):
    return Field(
        default=None if nullable else ...,
        sa_column_args=[ForeignKey(target, ondelete=ondelete)],
        sa_type=String(ID_LENGTH),
        index=index,
        nullable=nullable,
    )


def _owner_key(target: str) -> Any:
    """A primary-key column naming the row it belongs to, deleted with it (ON DELETE CASCADE)."""
    return Field(
        sa_column_args=[ForeignKey(target, ondelete="CASCADE")],
        primary_key=True,
        max_length=ID_LENGTH,
    )


def _time(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(
        default=None if nullable else ..., sa_type=UtcDateTime, nullable=nullable, index=index
    )


def _json(*, nullable: bool = False) -> Any:
    return Field(default=None if nullable else ..., sa_type=JSON, nullable=nullable)


def _none_means_none(default: Any) -> Any:
    """A nullable policy column whose None is a choice ("no quiet hours", "no reminder").

    The default applies to a new model object only. Without `sa_column_kwargs` SQLModel would
    also make it the column's INSERT default, and SQLAlchemy's ORM fires a column default in
    place of an explicit None, so a site created without quiet hours got 22:00-08:00.
    """
    return Field(default=default, sa_column_kwargs={"default": None})


# --- sites and their policies ---------------------------------------------------------------------


class SiteBase(SQLModel):
    """A site (a housing estate, a campus) and the policy its cabinets run by.

    The policy columns mirror `cloud.core.policies.SitePolicy` one for one, with its defaults.
    """

    name: str = Field(max_length=200)
    pickup_window_s: int = 72 * 3600
    reminder_before_s: int | None = _none_means_none(24 * 3600)
    code_length: int = 8
    quiet_start: time | None = _none_means_none(time(22, 0))
    quiet_end: time | None = _none_means_none(time(8, 0))
    timezone: str = Field(default="Asia/Shanghai", max_length=64)
    language: str = Field(default="zh-CN", max_length=8)
    overdue_fee_per_day_minor: int = 0
    overdue_fee_cap_minor: int | None = None
    currency: str = Field(default="CNY", max_length=3)
    resend_limit: int = 3
    resend_window_s: int = 3600
    # The SMS signature (【滨江快递柜】; "" for none) in Chinese and in English texts.
    sms_signature: str = Field(default="", max_length=16)
    sms_signature_en: str = Field(default="", max_length=24)
    offline_alarm_s: int = 600


class SiteCreate(SiteBase):
    """What creating a site takes."""

    id: str = Field(max_length=ID_LENGTH)


class Site(SiteBase, table=True):
    __tablename__ = "sites"

    id: str = Field(primary_key=True, max_length=ID_LENGTH)
    created_at: datetime = _time(nullable=False)


# --- cabinets and compartments --------------------------------------------------------------------


class CabinetBase(SQLModel):
    """A cabinet as a manager sees it."""

    name: str = Field(max_length=200)
    address: str = Field(default="", max_length=500)
    # The name and address in English, for English texts and pages ("": the ones above).
    name_en: str = Field(default="", max_length=200)
    address_en: str = Field(default="", max_length=500)


class CabinetCreate(CabinetBase):
    """What creating a cabinet takes (the credentials are made by the registry)."""

    id: str = Field(max_length=ID_LENGTH)
    site_id: str = Field(max_length=ID_LENGTH)


class Cabinet(CabinetBase, table=True):
    __tablename__ = "cabinets"

    id: str = Field(primary_key=True, max_length=ID_LENGTH)
    site_id: str = _fk("sites.id", index=True)
    # The HMAC key of its pickup-code hashes: provisioned with the cabinet, never on MQTT, and
    # stored sealed under the secret key (`cabinets.cabinet_code_key`): a 64-byte key seals to 127.
    code_key: str = Field(max_length=128)
    mqtt_password_hash: str | None = Field(default=None, max_length=256)
    online: bool | None = None  # None: never seen
    boot: int | None = Field(default=None, sa_type=BigInteger)
    firmware: str | None = Field(default=None, max_length=64)
    last_seen_at: datetime | None = _time()
    # When `online` last changed: the console's "online since" / "offline since".
    presence_since: datetime | None = _time()
    # The highest seq applied: every event up to it is applied, none beyond it.
    applied_upto: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = _time(nullable=False)


COMPARTMENT_FAULTED = "state = 'faulted'"


class Compartment(SQLModel, table=True):
    """A compartment, keyed by its cabinet and the label on its door."""

    __tablename__ = "compartments"
    __table_args__ = (
        # The fleet page's count of faulted doors: a handful among tens of thousands of doors.
        Index(
            "ix_compartments_faulted",
            "cabinet_id",
            postgresql_where=text(COMPARTMENT_FAULTED),
            sqlite_where=text(COMPARTMENT_FAULTED),
        ),
    )

    cabinet_id: str = _owner_key("cabinets.id")
    id: str = Field(primary_key=True, max_length=16)
    size: str = Field(max_length=4)
    low_door: bool = False  # reachable from a wheelchair
    state: str = Field(default="free", max_length=16)
    in_service: bool = True


# --- couriers -------------------------------------------------------------------------------------


class CourierBase(SQLModel):
    """A courier who may log in at the cabinets."""

    carrier: str = Field(max_length=100)
    name: str = Field(default="", max_length=200)


class Courier(CourierBase, table=True):
    __tablename__ = "couriers"

    id: str = Field(primary_key=True, max_length=ID_LENGTH)
    pin_hash: str = Field(max_length=256)  # protocol.hashing.pin_hash: scrypt, salted
    # E.164; where the courier is told a parcel of theirs expired (None: nobody to tell).
    phone: str | None = Field(default=None, max_length=16)
    created_at: datetime = _time(nullable=False)


# --- parcels and their timeline -------------------------------------------------------------------


class ParcelBase(SQLModel):
    """What the ERP and a tracking page may see of a parcel."""

    tracking_no: str = Field(max_length=ID_LENGTH, index=True)
    order_no: str | None = Field(default=None, max_length=ID_LENGTH, index=True)
    status: str = Field(max_length=16)


PARCELS_BEHIND_DOORS = "left_locker_at IS NULL AND status IN ('in_locker', 'expired')"


class Parcel(ParcelBase, table=True):
    """A parcel; its fields mirror `cloud.core.parcels.Parcel` (see `parcels.parcel_to_core`).

    `id` is the row's name: the cabinet's `parcel_id` for a parcel first seen at deposit, a
    cloud-made ULID for an ERP announcement (whose `parcel_id` is set when it is deposited).
    """

    __tablename__ = "parcels"
    __table_args__ = (
        Index("ix_parcels_cabinet_status", "cabinet_id", "status"),
        # What a courier statement reads: a carrier's couriers' deposits in a month.
        Index("ix_parcels_courier_deposited", "courier_id", "deposited_at"),
        # What the console's fleet counts: the parcels still behind a door, a small part of
        # every parcel ever kept (the fleet page reads these, not the whole history). With the
        # deadline in it, the overdue counts read the index alone (no heap visit per parcel).
        Index(
            "ix_parcels_behind_doors",
            "cabinet_id",
            "status",
            "told_deadline",
            postgresql_where=text(PARCELS_BEHIND_DOORS),
            sqlite_where=text(PARCELS_BEHIND_DOORS),
        ),
        # The shipment list's cursor order (and the parcel list's, reversed): a page reads its
        # 50 rows from here instead of sorting the key's whole scope (0023_query_indexes).
        Index("ix_parcels_created_id", "created_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=ID_LENGTH)
    parcel_id: str | None = Field(default=None, max_length=ID_LENGTH, unique=True)
    cabinet_id: str = _fk("cabinets.id")
    phone: str = Field(max_length=16)  # E.164
    compartment: str | None = Field(default=None, max_length=16)
    size: str | None = Field(default=None, max_length=4)
    courier_id: str | None = Field(default=None, max_length=ID_LENGTH)
    code_hash: str | None = Field(default=None, max_length=256)
    code_generation: int = 0
    announced_at: datetime | None = _time()
    deposited_at: datetime | None = _time()
    clock_started_at: datetime | None = _time()
    window_s: int | None = None
    # [{"reason", "started_at", "ended_at"}]: the deadline clock's pauses (cloud.core.pauses)
    pauses: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON, nullable=False)
    reminded_at: datetime | None = _time()
    told_deadline: datetime | None = _time()
    # The expiry the cabinet holds for the code (the deadline plus slack, cloud.core.parcels):
    # a resume whose new deadline it still covers sends no codes.put. None: resend on resume.
    code_expires_at: datetime | None = _time()
    left_locker_at: datetime | None = _time()
    # When the worker's expiry scan must judge it again (its next reminder or deadline; NULL:
    # at the next scan). Written by the scan only; any other write of the parcel clears it.
    due_check_at: datetime | None = _time()
    # Who announced it (cloud.core.access): the ERP key and the carrier or merchant it is bound
    # to. None for a parcel a courier deposited unannounced. No core transition changes them.
    owner_key_id: str | None = Field(default=None, max_length=ID_LENGTH)
    owner_carrier_id: str | None = Field(default=None, max_length=100, index=True)
    owner_merchant_id: str | None = Field(default=None, max_length=ID_LENGTH, index=True)
    # What the ERP announced of the parcel itself (validated by cloud.services.shipments).
    length_mm: int | None = None
    width_mm: int | None = None
    height_mm: int | None = None
    weight_g: int | None = None
    courier_company: str | None = Field(default=None, max_length=100)
    window_override_s: int | None = None  # the ERP's pickup window (core: window_override_s)
    created_at: datetime = _time(nullable=False)
    updated_at: datetime = _time(nullable=False)


class ParcelEvent(SQLModel, table=True):
    """One timeline row: every change of a parcel, as the ERP reads it."""

    __tablename__ = "parcel_events"

    id: int | None = Field(default=None, primary_key=True)
    parcel_row_id: str = _fk("parcels.id", index=True, ondelete="CASCADE")
    status: str = Field(max_length=16)
    at: datetime = _time(nullable=False)
    source: str = Field(max_length=16)
    note: str = Field(default="", max_length=2000)
    # The cabinet event that caused it, if any: (cab, seq) in the inbox.
    cabinet_id: str | None = Field(default=None, max_length=ID_LENGTH)
    seq: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime = _time(nullable=False)


# --- the events inbox -----------------------------------------------------------------------------


# Events stored and not applied yet: a handful at any time, however many the table holds.
EVENTS_UNAPPLIED = "NOT applied"


class InboxEvent(SQLModel, table=True):
    """A cabinet event as received: stored once by (cab, seq), applied in seq order."""

    __tablename__ = "events"
    __table_args__ = (
        # The ingest backlog /metrics reports (`cloud.db.figures`): its count and oldest receipt
        # read this partial index only, not the millions of applied events.
        Index(
            "ix_events_unapplied",
            "received_at",
            postgresql_where=text(EVENTS_UNAPPLIED),
            sqlite_where=text(EVENTS_UNAPPLIED),
        ),
    )

    cabinet_id: str = _owner_key("cabinets.id")
    seq: int = Field(primary_key=True, sa_type=BigInteger)
    event_id: str = Field(max_length=ID_LENGTH)
    type: str = Field(max_length=64)
    ts: datetime = _time(nullable=False)  # the cabinet's clock
    data: dict[str, Any] = _json()
    received_at: datetime = _time(nullable=False)
    applied: bool = False
    applied_at: datetime | None = _time()
    # Set when applying found something wrong (an illegal transition, an unknown parcel).
    anomaly: str | None = Field(default=None, max_length=2000)


# --- outboxes -------------------------------------------------------------------------------------


COMMANDS_IN_PLAY = "acked_at IS NULL AND ack_error IS NULL AND superseded_by IS NULL"


class CommandOutbox(SQLModel, table=True):
    """A command to a cabinet: resent until acked, expired or superseded. `id` is the envelope's.

    A `codes.put` names its parcel in `parcel_id`: a later `codes.revoke` or `codes.put` of that
    parcel sets `superseded_by` on it while unacked, and it is never sent again, so a resend can
    never bring back a revoked or replaced code (see `cloud.worker.commands`).
    """

    __tablename__ = "command_outbox"
    __table_args__ = (
        Index("ix_command_outbox_pending", "cabinet_id", "acked_at", "created_at"),
        Index("ix_command_outbox_parcel", "cabinet_id", "parcel_id"),
        # What the dispatcher reads every second: only the commands still in play, so its
        # query costs what is unacked (a few in-flight rows), not what the outbox ever held.
        Index(
            "ix_command_outbox_due",
            "created_at",
            "id",
            postgresql_where=text(COMMANDS_IN_PLAY),
            sqlite_where=text(COMMANDS_IN_PLAY),
        ),
    )

    id: str = Field(primary_key=True, max_length=ID_LENGTH)
    cabinet_id: str = _fk("cabinets.id", ondelete="CASCADE")
    type: str = Field(max_length=64)
    data: dict[str, Any] = _json()
    created_at: datetime = _time(nullable=False)
    expires_at: datetime = _time(nullable=False)
    sent_at: datetime | None = _time()
    send_count: int = 0
    acked_at: datetime | None = _time()
    ack_ok: bool | None = None
    ack_error: str | None = Field(default=None, max_length=1024)
    parcel_id: str | None = Field(default=None, max_length=ID_LENGTH)  # a codes.put's parcel
    superseded_by: str | None = Field(default=None, max_length=ID_LENGTH)  # the newer command


class NoticeOutbox(SQLModel, table=True):
    """A notice to a recipient or courier, held once by its dedupe key, sent once.

    `code_sealed` carries the pickup code (sealed, `cloud.db.sealing`) for the texts that show
    it; the dispatcher renders `body` at send time, then clears `code_sealed` and keeps only the
    scrubbed body.
    """

    __tablename__ = "notice_outbox"
    __table_args__ = (Index("ix_notice_outbox_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=200, unique=True)
    # The parcel it is about; None for a notice to a manager about an alarm (`alarm_id`).
    parcel_row_id: str | None = _fk("parcels.id", index=True, nullable=True, ondelete="CASCADE")
    alarm_id: int | None = Field(
        default=None,
        sa_column_args=[ForeignKey("alarms.id", ondelete="CASCADE")],
        nullable=True,
    )
    kind: str = Field(max_length=32)
    audience: str = Field(max_length=16)
    to_phone: str | None = Field(default=None, max_length=16)  # E.164; None for a courier
    # A notice that must reach one WeChat user whatever the phone is bound to by send time:
    # the old binding told of its replacement (`NoticeKind.WECHAT_REBOUND`).
    to_openid: str | None = Field(default=None, max_length=128)
    courier_id: str | None = Field(default=None, max_length=ID_LENGTH)
    deadline: datetime = _time(nullable=False)
    code_sealed: str | None = Field(default=None, max_length=256)
    channel: str | None = Field(default=None, max_length=16)  # wechat | sms, once chosen
    # The language the text must be in (a scan code: the page's); None: the recipient's.
    language: str | None = Field(default=None, max_length=8)
    body: str | None = Field(default=None, max_length=2000)  # scrubbed of the code once sent
    status: str = Field(default="queued", max_length=16)  # queued | sent | failed
    attempts: int = 0
    next_attempt_at: datetime = _time(nullable=False)
    last_error: str | None = Field(default=None, max_length=1024)
    provider_id: str | None = Field(default=None, max_length=128)  # Twilio SID, WeChat msgid
    delivery_status: str | None = Field(default=None, max_length=32)  # from status callbacks
    created_at: datetime = _time(nullable=False)
    sent_at: datetime | None = _time()


class WebhookOutbox(SQLModel, table=True):
    """A signed status webhook to the ERP, retried until delivered."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (Index("ix_webhook_outbox_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    parcel_row_id: str = _fk("parcels.id", index=True, ondelete="CASCADE")
    event: str = Field(max_length=32)  # the parcel status it reports
    payload: dict[str, Any] = _json()
    status: str = Field(default="queued", max_length=16)  # queued | delivered | failed
    attempts: int = 0
    next_attempt_at: datetime = _time(nullable=False)
    last_error: str | None = Field(default=None, max_length=1024)
    created_at: datetime = _time(nullable=False)
    delivered_at: datetime | None = _time()


# --- alarms ---------------------------------------------------------------------------------------


class Alarm(SQLModel, table=True):
    """A cabinet alarm (`cloud.core.alarms`): door left open or forced, lock fault, keypad
    lockout, cabinet offline, code guessing, a notice not delivered.

    `at` is when it was first seen, `cleared_at` when it was resolved. While open, `open_key`
    names it (cabinet, door, kind; unique), so a repeat raises `count` and `last_seen_at`.
    """

    __tablename__ = "alarms"
    __table_args__ = (Index("ix_alarms_open", "cabinet_id", "cleared_at"),)

    id: int | None = Field(default=None, primary_key=True)
    cabinet_id: str = _fk("cabinets.id", ondelete="CASCADE")
    compartment: str | None = Field(default=None, max_length=16)
    kind: str = Field(max_length=32)
    severity: str = Field(default="warning", max_length=16)
    detail: str = Field(default="", max_length=500)
    at: datetime = _time(nullable=False)  # first seen
    last_seen_at: datetime | None = _time()
    count: int = 1
    seq: int | None = Field(default=None, sa_type=BigInteger)  # the event that first raised it
    open_key: str | None = Field(default=None, max_length=200, unique=True)
    acked_at: datetime | None = _time()
    acked_by: str | None = Field(default=None, max_length=120)
    ack_note: str = Field(default="", max_length=2000)
    cleared_at: datetime | None = _time()  # resolved
    resolved_by: str | None = Field(default=None, max_length=120)
    resolve_note: str = Field(default="", max_length=2000)


# --- WeChat ---------------------------------------------------------------------------------------


class WechatBinding(SQLModel, table=True):
    """A WeChat user (openid of the official account) bound to the phone they proved they hold.

    Notices to that phone go by WeChat first; a message from that openid to the account asks
    for the phone's live codes again (`cloud.services.wechat_codes`).
    """

    __tablename__ = "wechat_bindings"

    openid: str = Field(primary_key=True, max_length=128)
    phone: str = Field(max_length=16, index=True)  # E.164
    created_at: datetime = _time(nullable=False)


class WechatInbox(SQLModel, table=True):
    """A message WeChat pushed to the official account, kept by its MsgId.

    WeChat retries a push it got no answer to within 5 s: a retry must not issue codes again.
    """

    __tablename__ = "wechat_inbox"

    msg_id: str = Field(primary_key=True, max_length=64)
    openid: str = Field(max_length=128)
    received_at: datetime = _time(nullable=False, index=True)


# --- the ERP --------------------------------------------------------------------------------------


class ErpApiKey(SQLModel, table=True):
    """An ERP's API key (only its hash is kept); its webhooks are in `webhook_endpoints`."""

    __tablename__ = "erp_api_keys"

    id: str = Field(primary_key=True, max_length=ID_LENGTH)
    name: str = Field(max_length=200)
    key_prefix: str = Field(max_length=16)  # shown in lists so a key can be told apart
    key_hash: str = Field(max_length=128, unique=True)
    # What it acts for: exactly one of a carrier or a merchant (a key with neither, made before
    # keys were bound, is refused by the API), and its sites in `erp_key_sites`.
    carrier_id: str | None = Field(
        default=None,
        sa_column_args=[ForeignKey("carriers.id")],
        sa_type=String(100),
        nullable=True,
    )
    merchant_id: str | None = Field(default=None, max_length=ID_LENGTH)
    created_at: datetime = _time(nullable=False)
    revoked_at: datetime | None = _time()


class IdempotencyKey(SQLModel, table=True):
    """A request an ERP made with an Idempotency-Key: the same key gets the same answer."""

    __tablename__ = "idempotency_keys"

    api_key_id: str = _owner_key("erp_api_keys.id")
    key: str = Field(primary_key=True, max_length=128)
    request_hash: str = Field(max_length=128)  # a reused key with another body is refused
    response_status: int | None = None
    response_body: dict[str, Any] | None = _json(nullable=True)
    created_at: datetime = _time(nullable=False, index=True)


# --- who may do what (cloud.core.access, docs/who-may-do-what.md) -------------------------------

CARRIER_ID_LENGTH = 100  # a courier's `carrier` names its carrier by this id


class Carrier(SQLModel, table=True):
    """A courier company. Its id is what its couriers' `carrier` column holds."""

    __tablename__ = "carriers"

    id: str = Field(primary_key=True, max_length=CARRIER_ID_LENGTH)
    name: str = Field(default="", max_length=200)
    created_at: datetime = _time(nullable=False)


class Account(SQLModel, table=True):
    """A console account: an operator admin, a site manager (`account_sites`) or a carrier."""

    __tablename__ = "accounts"

    id: str = Field(primary_key=True, max_length=ID_LENGTH)
    username: str = Field(max_length=120, unique=True)
    role: str = Field(max_length=32)  # cloud.core.access.ACCOUNT_ROLES
    password_hash: str = Field(max_length=256)  # argon2id (pwdlib), never the password
    # A TOTP secret, sealed like the outbox's codes, once the console offers a second factor.
    totp_secret_sealed: str | None = Field(default=None, max_length=256)
    carrier_id: str | None = Field(
        default=None,
        sa_column_args=[ForeignKey("carriers.id")],
        sa_type=String(CARRIER_ID_LENGTH),
        nullable=True,
    )
    disabled: bool = False
    # E.164; where a site manager is told of a new critical alarm (by WeChat if the phone is
    # bound, else SMS). None: the console only.
    phone: str | None = Field(default=None, max_length=16)
    created_at: datetime = _time(nullable=False)


class AccountSite(SQLModel, table=True):
    """A site a site-manager account may see and act on."""

    __tablename__ = "account_sites"

    account_id: str = _owner_key("accounts.id")
    site_id: str = _owner_key("sites.id")


class ErpKeySite(SQLModel, table=True):
    """A site an ERP key may announce for and see the cabinets of."""

    __tablename__ = "erp_key_sites"

    key_id: str = _owner_key("erp_api_keys.id")
    site_id: str = _owner_key("sites.id")


class AuditLog(SQLModel, table=True):
    """One privileged act: who (principal kind and id), what, on what, why, when, how it ended.

    Written by `cloud.services.audit.record` in the transaction of the act itself, so an act
    that committed always has its row and a rolled-back one never does.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_resource", "resource_kind", "resource_id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _time(nullable=False, index=True)
    principal_kind: str = Field(max_length=32)
    principal_id: str = Field(max_length=120)
    action: str = Field(max_length=64)
    resource_kind: str = Field(max_length=32)
    resource_id: str | None = Field(default=None, max_length=120)
    reason: str = Field(default="", max_length=2000)
    outcome: str = Field(default="done", max_length=32)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)


# --- courier settlement (cloud.core.statements, docs/statements.md) -------------------------------


class SitePrice(SQLModel, table=True):
    """What a carrier pays for one deposit in a door of `size` at a site, in minor units."""

    __tablename__ = "site_prices"

    site_id: str = Field(
        sa_column_args=[ForeignKey("sites.id", ondelete="CASCADE")],
        primary_key=True,
        max_length=ID_LENGTH,
    )
    carrier_id: str = Field(
        sa_column_args=[ForeignKey("carriers.id", ondelete="CASCADE")],
        primary_key=True,
        sa_type=String(CARRIER_ID_LENGTH),
    )
    size: str = Field(primary_key=True, max_length=4)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    updated_at: datetime = _time(nullable=False)


class StatementClosing(SQLModel, table=True):
    """A carrier's month that is closed: its lines are frozen in `statement_lines`."""

    __tablename__ = "statement_closings"

    carrier_id: str = Field(primary_key=True, max_length=CARRIER_ID_LENGTH)
    period: str = Field(primary_key=True, max_length=7)  # YYYY-MM
    closed_at: datetime = _time(nullable=False)


class StatementLine(SQLModel, table=True):
    """A frozen line of a closed statement (`cloud.core.statements.Line`); never updated.

    One parcel is settled once per carrier: the unique key keeps a late deposit from being
    frozen twice.
    """

    __tablename__ = "statement_lines"
    __table_args__ = (
        Index("ix_statement_lines_period", "carrier_id", "period", "id"),
        Index("ux_statement_lines_parcel", "carrier_id", "parcel_row_id", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    carrier_id: str = Field(max_length=CARRIER_ID_LENGTH)
    period: str = Field(max_length=7)
    parcel_row_id: str = Field(max_length=ID_LENGTH)
    tracking_no: str = Field(max_length=ID_LENGTH)
    site_id: str = Field(max_length=ID_LENGTH)
    cabinet_id: str = Field(max_length=ID_LENGTH)
    compartment: str | None = Field(default=None, max_length=16)
    size: str | None = Field(default=None, max_length=4)
    courier_id: str | None = Field(default=None, max_length=ID_LENGTH)
    status: str = Field(max_length=16)
    deposited_at: datetime = _time(nullable=False)
    left_at: datetime | None = _time()
    duration_s: int = Field(sa_type=BigInteger)
    price_minor: int = Field(sa_type=BigInteger)
    price_currency: str = Field(max_length=3)
    priced: bool
    overdue_days: int
    overdue_fee_minor: int = Field(sa_type=BigInteger)
    fee_currency: str = Field(max_length=3)
    returned: bool
    late: bool
