"""Fixtures for real services: a Mosquitto per test and a fresh PostgreSQL database per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import pytest

from tests.services import Mosquitto, TempDatabase, create_database

# Tests that use these fixtures get the matching marker, so `-m "not postgres"` deselects them.
SERVICE_MARKERS = {
    "mosquitto": "mosquitto",
    "mosquitto_factory": "mosquitto",
    "postgres_url": "postgres",
    "postgres_factory": "postgres",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            if marker := SERVICE_MARKERS.get(fixture):
                item.add_marker(marker)


MosquittoFactory = Callable[..., Mosquitto]


@pytest.fixture
def mosquitto_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoFactory]:
    """Start brokers on demand: `mosquitto_factory(users={name: password}, acl="...")`."""
    brokers: list[Mosquitto] = []

    def start(
        *,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        allow_anonymous: bool | None = None,
        extra_config: str = "",
    ) -> Mosquitto:
        broker = Mosquitto(
            tmp_path_factory.mktemp("mosquitto"),
            users=users,
            acl=acl,
            allow_anonymous=allow_anonymous,
            extra_config=extra_config,
        )
        brokers.append(broker)
        broker.start()
        return broker

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: MosquittoFactory) -> Mosquitto:
    """A running anonymous broker of this test's own, on a free port of 127.0.0.1."""
    return mosquitto_factory()


@pytest.fixture
def postgres_factory() -> Iterator[Callable[[], TempDatabase]]:
    """Create fresh databases on demand; every one is dropped (WITH FORCE) at teardown."""
    databases: list[TempDatabase] = []

    def create() -> TempDatabase:
        database = create_database()
        databases.append(database)
        return database

    yield create
    for database in databases:
        database.drop()


@pytest.fixture
def postgres_url(postgres_factory: Callable[[], TempDatabase]) -> str:
    """The SQLAlchemy URL (postgresql+psycopg://...) of an empty database of this test's own."""
    return postgres_factory().url
