"""The cloud's pure domain core: parcel life, codes, deadlines, notices, ingestion rules.

Plain Python and no I/O: inputs in, decisions and effects out. Time comes in as `now` (aware UTC),
randomness as `randbelow`; the database, MQTT, HTTP, Twilio and WeChat adapters call in here.

- `cloud.core.parcels`   the parcel life as one transition table: `apply(parcel, event, now)`
- `cloud.core.codes`     pickup codes (`issue_code`), the `LKR1:` QR payload, one-time SMS codes
- `cloud.core.expiry`    deadlines, reminders outside quiet hours, expiry, overdue fee: `due()`
- `cloud.core.pauses`    the deadline clock's pauses (cabinet offline, compartment faulted)
- `cloud.core.notices`   notice texts (zh-CN, en), channel and fallback, dedupe key, resend limit
- `cloud.core.phones`    E.164 parsing and `mask_phone`, the one masking function
- `cloud.core.ingest`    exactly-once, in-order application of cabinet events and `event-ack`
- `cloud.core.policies`  a site's policy with its defaults and validation
- `cloud.core.errors`    the exception tree of all of the above
"""
