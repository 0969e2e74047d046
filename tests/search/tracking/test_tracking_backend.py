"""Where tracking goes: URI precedence, normalisation, the probe that fails fast with a UserError,
and which errors mean "unreachable" (spool) rather than "refused" (drop)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from search.errors import UserError
from search.tracking import backend
from search.tracking.backend import (default_uri, is_unreachable, normalise, open_client, probe,
                                     redact, resolve_uri)


def test_precedence_flag_then_env_then_space_then_default(tmp_path):
    env = {"MLFLOW_TRACKING_URI": "http://env:5000"}
    assert resolve_uri("http://flag:1", "http://space:2", tmp_path, env) == "http://flag:1"
    assert resolve_uri(None, "http://space:2", tmp_path, env) == "http://env:5000"
    assert resolve_uri(None, "http://space:2", tmp_path, {}) == "http://space:2"
    assert resolve_uri(None, None, tmp_path, {}) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert default_uri("rel/out") == f"sqlite:///{Path('rel/out').absolute() / 'mlflow.db'}"


def test_sqlite_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalise("sqlite:///x/m.db") == f"sqlite:///{tmp_path / 'x' / 'm.db'}"
    assert normalise("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    with pytest.raises(UserError, match="names no database file"):
        normalise("sqlite://")


@pytest.mark.parametrize("uri, hint", [("postgres://u@h/db", "postgresql://"),
                                       ("htp://host:5000", "http://"),
                                       ("mlruns", None)])
def test_unknown_schemes_are_user_errors_with_a_suggestion(uri, hint):
    with pytest.raises(UserError) as err:
        normalise(uri, "--tracking-uri")
    text = str(err.value)
    assert text.startswith("--tracking-uri: unsupported tracking URI") and "\n" not in text
    if hint:
        assert f"did you mean '{hint}'" in text


def test_bare_postgresql_gets_the_installed_driver():
    uri = normalise("postgresql://postgres@127.0.0.1:5432/test")
    if importlib.util.find_spec("psycopg") is None:
        assert uri == "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    else:
        assert uri == "postgresql://postgres@127.0.0.1:5432/test"
    assert normalise("postgresql+psycopg2://h/db") == "postgresql+psycopg2://h/db"


def test_passwords_never_reach_messages():
    assert redact("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert redact("http://host:5000") == "http://host:5000"
    from tracking_helpers import free_port

    with pytest.raises(UserError) as err:
        probe(f"postgresql+psycopg2://bob:s3cret@127.0.0.1:{free_port()}/x", timeout=2)
    assert "s3cret" not in str(err.value) and "bob:***@" in str(err.value)


def test_unreachable_server_is_a_user_error_before_anything_runs():
    from tracking_helpers import free_port

    port = free_port()  # nothing listens there
    with pytest.raises(UserError, match=rf"tracking server http://127.0.0.1:{port}: "
                                        r"unreachable .*--tracking-uri"):
        open_client(f"http://127.0.0.1:{port}")


def test_unreachable_database_is_a_user_error():
    from tracking_helpers import free_port

    with pytest.raises(UserError, match="cannot connect"):
        open_client(f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/test")


def test_a_study_database_is_refused_before_mlflow_touches_it(tmp_path):
    import optuna
    import sqlalchemy

    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.storages.RDBStorage(url)
    with pytest.raises(UserError, match="another application's tables.*own database"):
        open_client(url)
    engine = sqlalchemy.create_engine(url)
    assert "experiments" not in sqlalchemy.inspect(engine).get_table_names()
    engine.dispose()


def test_sqlite_default_opens_and_creates_its_folder(tmp_path):  # the one slow new database
    uri = default_uri(tmp_path / "new" / "out")
    client = open_client(uri)
    assert (tmp_path / "new" / "out" / "mlflow.db").is_file()
    assert client.search_experiments(max_results=1) is not None


@pytest.mark.postgres
def test_postgres_opens(pg_uri):
    assert open_client(pg_uri).search_experiments(max_results=1) is not None


def test_unreachable_versus_refused():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import (INTERNAL_ERROR, INVALID_PARAMETER_VALUE,
                                              RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE)

    assert is_unreachable(MlflowException("down", INTERNAL_ERROR))
    assert is_unreachable(MlflowException("busy", TEMPORARILY_UNAVAILABLE))
    assert is_unreachable(ConnectionRefusedError())
    assert not is_unreachable(MlflowException("bad", INVALID_PARAMETER_VALUE))
    assert not is_unreachable(MlflowException("gone", RESOURCE_DOES_NOT_EXIST))
    assert not is_unreachable(ValueError("a bug"))


def test_http_limits_are_scoped(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    import os

    with backend.http_limits(backend.PROBE_HTTP):
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ
