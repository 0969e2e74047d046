"""Fixtures of the cluster tests: a real two-node Ray cluster on loopback (once per session),
the machine's PostgreSQL for the studies and MLflow, and names no other test uses."""
from __future__ import annotations

import uuid

import pytest

from cluster_helpers import MLFLOW_SCHEMA, PG_URL, TwoNodes


@pytest.fixture(scope="session")
def two_nodes():
    """Head + worker, 1 CPU each; stopped (only these two nodes) even when a test failed."""
    cluster = TwoNodes()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


class Postgres:
    """Unique study names in the `test` database; their studies (and successors) are deleted
    at the end."""

    def __init__(self, storage) -> None:
        self.storage, self.names = storage, []

    def name(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        return name

    def cleanup(self) -> None:
        from search.studies import study as studies

        for name in self.names:
            studies.delete_chain(self.storage, name)


@pytest.fixture
def pg():
    import sqlalchemy

    from search.studies import study as studies
    from search.errors import UserError

    try:
        storage = studies.open_storage(studies.storage_url(PG_URL, "."))
    except UserError as err:
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {err}")
    engine = sqlalchemy.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA IF NOT EXISTS {MLFLOW_SCHEMA}"))
    engine.dispose()
    db = Postgres(storage)
    yield db
    db.cleanup()
