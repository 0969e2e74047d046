"""Secrets in URLs: masked wherever written, given back from this process, a password file or
the environment; the one driver rewrite serves every place that opens the study."""
from __future__ import annotations

import json
import pickle

import pytest

from search.studies import study as studies
from search import urls
from search.errors import UserError

PG = "postgresql://root@127.0.0.1:5432/test"


@pytest.mark.parametrize("url, masked", [
    ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql+psycopg2://u:p%40ss@h/db", "postgresql+psycopg2://u:***@h/db"),
    ("postgresql://u:pa@ss@h/db", "postgresql://u:***@h/db"),
    ("https://user:tok@mlflow.example.com", "https://user:***@mlflow.example.com"),
    ("postgresql://h/db?user=u&password=pw&sslmode=require",
     "postgresql://h/db?user=u&password=***&sslmode=require"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ("not a url", "not a url"),
])
def test_mask_url(url, masked):
    assert urls.mask_url(url) == masked


def test_secret_free_masks_every_url_in_a_record():
    record = {"storage_url": "postgresql://u:pw@h/db", "options": {
        "tracking_uri": "http://a:b@m", "cpus": 2, "list": ["mysql://x:y@z/d"]}}
    text = json.dumps(urls.secret_free(record))
    assert "pw" not in text and ":b@" not in text and ":y@" not in text and '"cpus": 2' in text


def test_reveal_from_this_process_a_file_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(urls.ENV_PASSWORD_FILE, raising=False)
    monkeypatch.delenv("SEARCH_STORAGE", raising=False)
    masked = urls.remember("postgresql://u:first@h/db1")
    assert masked == "postgresql://u:***@h/db1" and urls.reveal(masked).endswith(":first@h/db1")
    other = "postgresql://u:***@h/db2"  # a record from another process
    assert urls.reveal(other) == "postgresql://u@h/db2"  # libpq: $PGPASSWORD, ~/.pgpass
    monkeypatch.setenv("SEARCH_STORAGE", "postgresql://u:fromenv@h/db2")
    assert urls.reveal(other) == urls.with_driver("postgresql://u:fromenv@h/db2")
    secret = tmp_path / "pw"
    secret.write_text("fromfile\n")
    urls.use_password_file(str(secret))
    assert urls.reveal(other) == "postgresql://u:fromfile@h/db2"
    assert urls.reveal("postgresql://u@h/db3") == "postgresql://u:fromfile@h/db3"


@pytest.mark.parametrize("content, rule", [(None, "does not exist"), ("", "empty"),
                                           ("x" * 5000, "larger than")])
def test_a_bad_password_file_is_one_line(tmp_path, content, rule):
    path = tmp_path / "pw"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=rule):
        urls.use_password_file(str(path))


def test_a_pickled_study_storage_keeps_no_password():
    try:
        storage = studies.open_storage("postgresql://root:s3cretPW@127.0.0.1:5432/test")
    except UserError as err:
        pytest.skip(f"PostgreSQL is unreachable: {err}")
    data = pickle.dumps(storage)
    assert b"s3cretPW" not in data and b"root:***@" in data
    assert pickle.loads(data).get_all_studies() is not None  # the secret came back


def test_a_bare_postgresql_url_opens_wherever_it_is_given():
    """The stages opened the raw --storage URL without the driver rewrite (psycopg 3 is not
    installed here): one function now rewrites for the driver and for every other opener."""
    try:
        studies.open_storage(urls.with_driver(PG))
    except UserError as err:
        pytest.skip(f"PostgreSQL is unreachable: {err}")
    storage = studies.open_storage(PG)
    assert storage.get_all_studies() is not None


def test_an_sqlite_storage_in_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        studies.storage_url(f"sqlite:///{tmp_path}/no/such/dir/x.db", tmp_path)
    assert not (tmp_path / "no").exists()


def test_submit_refuses_a_password_that_ray_would_keep(capsys):
    from search.cli import main

    assert main(["submit", "x.yaml", "--storage", "postgresql://u:pw@h/db"]) == 2
    err = capsys.readouterr().err
    assert "holds a password" in err and "pw@" not in err
