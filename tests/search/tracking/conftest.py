"""Fixtures of the tracking tests: one small real Ray, a real `mlflow server`, PostgreSQL."""
from __future__ import annotations

import os
import uuid

# Before Ray starts: its workers inherit these.
os.environ.update({"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0",
                   "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0",
                   "TUNE_PRINT_ALL_TRIAL_ERRORS": "0", "OMP_NUM_THREADS": "1"})
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.pop("MLFLOW_TRACKING_URI", None)  # the tests choose their backends

import pytest  # noqa: E402

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
# MLflow and Optuna both keep an `alembic_version` table: MLflow gets its own schema in `test`.
PG_SCHEMA = "torch_search_tracking"


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(1)
    yield


# ray_cluster: tests/search/conftest.py's, the one Ray of a test process (two fixtures of one
# name each started Ray only if none ran, so which one a module got hung on the order).


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    from tracking_helpers import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_uri() -> str:
    """A PostgreSQL URI with its own schema; the tests are skipped (saying why) when the
    server on 127.0.0.1:5432 cannot be reached."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}"))
    except Exception as err:
        pytest.skip(f"PostgreSQL at {PG_URL} unreachable: {str(err).splitlines()[0]}")
    finally:
        engine.dispose()
    return f"{PG_URL}?options=-csearch_path%3D{PG_SCHEMA}"


@pytest.fixture(scope="session")
def _template_db(tmp_path_factory):
    """An MLflow SQLite database with its tables made once (MLflow's migrations take seconds
    per new file)."""
    from search.tracking.backend import default_uri, open_client

    folder = tmp_path_factory.mktemp("template-db")
    open_client(default_uri(folder))
    return folder / "mlflow.db"


@pytest.fixture
def sqlite_uri(tmp_path, _template_db) -> str:
    """The default tracking URI of `tmp_path` (sqlite:///<tmp_path>/mlflow.db), tables made."""
    import shutil

    from search.tracking.backend import default_uri

    shutil.copy(_template_db, tmp_path / "mlflow.db")
    return default_uri(tmp_path)


@pytest.fixture
def unique() -> str:
    """A name no other test (or earlier run against the same database) has used."""
    return f"t{uuid.uuid4().hex[:10]}"
