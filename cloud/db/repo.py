"""The old single data module, kept as a facade while callers move to the modules by kind.

The functions live in `cloud.db.cabinets`, `.events`, `.parcels`, `.commands`, `.notices`,
`.effects`, `.wechat` and `.rows`; import them from there. This facade stays only for the
ingestion path (`cloud.services.ingest`, `.deposit_batch`, `cloud.worker.ingest_loop`,
`.presence`), which issue 12 section 2 rewrites, and for tests; delete it when they are done.
"""

from __future__ import annotations

from cloud.db.cabinets import (
    CODE_KEY_MAX_BYTES,
    cabinet_code_key,
    code_key_context,
    compartments_by_id,
    create_cabinet,
    create_site,
    get_cabinet,
    lock_cabinet,
    lock_cabinets,
    seal_key_opens_code_keys,
    set_compartment_states,
    site_policy,
    sites_and_compartments,
)
from cloud.db.commands import (
    COMMAND_TTL_S,
    command_values,
    enqueue_command,
    supersede_codes_puts,
    superseded_among,
    unclaim_commands,
)
from cloud.db.effects import (
    codes_put_data,
    timeline_values,
    webhook_values,
    write_effects,
)
from cloud.db.events import (
    StoredEvent,
    mark_events_applied,
    pending_events,
    pending_inbox,
    pending_seqs,
    set_applied_upto,
    stored_event_ids,
)
from cloud.db.notices import (
    enqueue_notice,
    notice_values,
    resend_history,
)
from cloud.db.parcels import (
    LIVE_STATUSES,
    announcements,
    cabinets_holding,
    deposit_reads,
    find_announcement,
    get_parcel_by_parcel_id,
    live_code_hashes,
    live_parcels,
    new_parcel_id,
    parcel_to_core,
    parcel_values,
    store_parcel,
)
from cloud.db.rows import (
    core_rows,
    count_rows,
    delete_older_than,
    insert_ignore,
    insert_rows,
    new_id,
    with_defaults,
)
from cloud.db.wechat import (
    bind_wechat,
    openid_for_phone,
    phone_for_openid,
)

__all__ = [
    "CODE_KEY_MAX_BYTES",
    "COMMAND_TTL_S",
    "LIVE_STATUSES",
    "StoredEvent",
    "announcements",
    "bind_wechat",
    "cabinet_code_key",
    "cabinets_holding",
    "code_key_context",
    "codes_put_data",
    "command_values",
    "compartments_by_id",
    "core_rows",
    "count_rows",
    "create_cabinet",
    "create_site",
    "delete_older_than",
    "deposit_reads",
    "enqueue_command",
    "enqueue_notice",
    "find_announcement",
    "get_cabinet",
    "get_parcel_by_parcel_id",
    "insert_ignore",
    "insert_rows",
    "live_code_hashes",
    "live_parcels",
    "lock_cabinet",
    "lock_cabinets",
    "mark_events_applied",
    "new_id",
    "new_parcel_id",
    "notice_values",
    "openid_for_phone",
    "parcel_to_core",
    "parcel_values",
    "pending_events",
    "pending_inbox",
    "pending_seqs",
    "phone_for_openid",
    "resend_history",
    "seal_key_opens_code_keys",
    "set_applied_upto",
    "set_compartment_states",
    "site_policy",
    "sites_and_compartments",
    "store_parcel",
    "stored_event_ids",
    "supersede_codes_puts",
    "superseded_among",
    "timeline_values",
    "unclaim_commands",
    "webhook_values",
    "with_defaults",
    "write_effects",
]
