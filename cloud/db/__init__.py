"""The cloud's database adapter: SQLModel tables, engine, Alembic migrations, data functions.

- `cloud.db.models`      the tables (SQLModel, portable across SQLite and PostgreSQL)
- `cloud.db.types`       column types: aware-UTC datetimes on both databases
- `cloud.db.engine`      `make_engine(url)`: SQLite in WAL with foreign keys, or PostgreSQL
- `cloud.db.migrate`     run Alembic programmatically (`upgrade`, `current`)
- data functions, keyword-only, by kind of record (services call these; nothing outside
  `cloud.db` writes SQL, tests/test_layout.py holds it):
  `cabinets` (sites, cabinets, compartments, code keys), `events` (the inbox), `parcels`,
  `commands` (the command outbox; `IN_PLAY` names a command still in play), `notices` (the
  notice outbox), `effects` (a transition's rows), `wechat` (bindings), `scan` (scan-to-open's
  codes and tries), `accounts`, `audit`, `reads` (the API's scoped reads), `rows` (ids, bulk
  inserts), `scoping` (access scopes as WHERE clauses), `bulk` (set-based statements)
- `cloud.db.repo`        a facade over those for the ingestion path until issue 12 §2 moves it
- `cloud.db.sealing`     seal a pickup code for the notice outbox under the cloud's secret key
"""
