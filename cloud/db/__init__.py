"""The cloud's database adapter: SQLModel tables, engine, Alembic migrations, data functions.

- `cloud.db.models`      the tables (SQLModel, portable across SQLite and PostgreSQL)
- `cloud.db.types`       column types: aware-UTC datetimes on both databases
- `cloud.db.engine`      `make_engine(url)`: SQLite in WAL with foreign keys, or PostgreSQL
- `cloud.db.migrate`     run Alembic programmatically (`upgrade`, `current`)
- `cloud.db.repo`        keyword-only data functions; services call these, routes never query
- `cloud.db.sealing`     seal a pickup code for the notice outbox under the cloud's secret key
"""
