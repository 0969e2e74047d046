"""A search folder copied or moved elsewhere: its settings and its MLflow database are read for
the folder where it is now (search/tracking/settings.py `Settings.at`, relocate.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import sqlalchemy

from search.tracking.backend import default_uri
from search.tracking.relocate import URI_COLUMNS, recorded_root, relocate
from search.tracking.settings import Settings, saved_runs


def _holding(uri: str, text: str) -> list[tuple[str, str]]:
    """(table, column) of every text value in the database that contains `text`."""
    engine = sqlalchemy.create_engine(uri)
    found = []
    with engine.connect() as conn:
        for table in sqlalchemy.inspect(conn).get_table_names():
            for column in sqlalchemy.inspect(conn).get_columns(table):
                n = conn.execute(sqlalchemy.text(
                    f'SELECT count(*) FROM "{table}" WHERE CAST("{column["name"]}" AS TEXT) '
                    "LIKE :t"), {"t": f"%{text}%"}).scalar()
                if n:
                    found.append((table, column["name"]))
    engine.dispose()
    return found


def test_a_copied_database_points_at_its_own_artifacts(tmp_path, _template_db):
    from mlflow import MlflowClient

    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    shutil.copy(_template_db, old / "mlflow.db")
    uri = default_uri(old)
    client = MlflowClient(uri, registry_uri=uri)
    exp = client.create_experiment("moved", artifact_location=(old / "mlartifacts").as_uri())
    run = client.create_run(exp)
    (tmp_path / "note.txt").write_text("written before the move")
    client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
    logged = client.create_logged_model(exp, name="model")
    client.create_registered_model("moved-model")
    client.create_model_version("moved-model", f"{run.info.artifact_uri}/model",
                                run.info.run_id)
    client.set_terminated(run.info.run_id)
    assert logged.artifact_location.startswith(old.as_uri())
    shutil.copytree(old, new)
    shutil.rmtree(old)
    new_uri = default_uri(new)
    assert set(_holding(new_uri, old.as_uri())) <= set(URI_COLUMNS)  # the list is complete
    root = recorded_root(new_uri, "moved")
    assert root == (old / "mlartifacts").as_uri()
    assert relocate(new_uri, root, (new / "mlartifacts").as_uri()) >= 5
    assert _holding(new_uri, old.as_uri()) == []
    client = MlflowClient(new_uri, registry_uri=new_uri)
    got = client.download_artifacts(run.info.run_id, "note.txt", str(tmp_path))
    assert Path(got).read_text() == "written before the move"
    assert relocate(new_uri, root, (new / "mlartifacts").as_uri()) == 0  # once is enough


def test_settings_read_for_the_folder_where_they_are_now(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    common = dict(experiment="e", search_id="s", name="n", run_id="run-1",
                  metric="val_accuracy")
    Settings(uri=default_uri(old), artifact_location=(old / "mlartifacts").as_uri(),
             output_dir=str(old), **common).save()
    Settings(uri="postgresql://u:***@db/mlflow", artifact_location=None, output_dir=str(old),
             **{**common, "run_id": "run-2"}).save()
    shutil.copytree(old, new)
    here, server = saved_runs(new)
    assert here.output_dir == str(new) and here.folder == new / "tracking" / "run-1"
    assert here.uri == default_uri(new)
    assert here.artifact_location == (new / "mlartifacts").as_uri()
    assert server.uri == "postgresql://u:***@db/mlflow"  # a database elsewhere stays
    assert saved_runs(old)[0].uri == default_uri(old)  # the original is untouched
