"""The cloud service: parcels, pickup codes, event ingestion, notices, expiry and the ERP API.

`cloud.core` is its pure domain core (no I/O; time and randomness are arguments). Around it sit
the adapters: SQLModel storage with Alembic migrations (SQLite by default, PostgreSQL in
production), the MQTT worker that ingests cabinet events and sends commands through an outbox,
the notice dispatcher (Twilio SMS, WeChat), the expiry scheduler, and the FastAPI service
(`/api/v1`) for the ERP and the manager dashboard. It imports `protocol` and never `cabinet`.
"""
