"""A search folder copied or moved elsewhere shows its own runs: the MLflow database inside it
records absolute artifact URIs (MLflow has no relative ones), so those under the experiment's
old artifact root are rebased onto the folder's own before a UI reads them.

MLflow has no API to change a recorded artifact location: the columns that hold one are listed
here, the one place that knows them (tests/search/tracking/test_relocate.py checks that after a move no
column holds a URI of the old folder).
"""
from __future__ import annotations

# (table, column) of MLflow 3.17's SQL store that hold artifact URIs
URI_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
               ("logged_models", "artifact_location"), ("model_versions", "source"),
               ("model_versions", "storage_location"))


def recorded_root(uri: str, experiment: str) -> str | None:
    """The artifact location the database records for `experiment` (None: no such experiment)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.connect() as conn:
            row = conn.execute(sqlalchemy.text(
                "SELECT artifact_location FROM experiments WHERE name = :n"),
                {"n": experiment}).first()
    finally:
        engine.dispose()
    return row[0] if row else None


def relocate(uri: str, old_root: str, new_root: str) -> int:
    """Rebase every artifact URI under `old_root` onto `new_root` in the SQLite database `uri`,
    in one transaction; how many values changed."""
    import sqlalchemy

    old, new = old_root.rstrip("/"), new_root.rstrip("/")
    changed = 0
    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.begin() as conn:
            tables = set(sqlalchemy.inspect(conn).get_table_names())
            for table, column in URI_COLUMNS:
                if table not in tables:
                    continue
                for exact in (True, False):  # the root itself, then what lies below it
                    where = f"{column} = :old" if exact else \
                        f"substr({column}, 1, length(:old) + 1) = :old || '/'"
                    changed += conn.execute(sqlalchemy.text(
                        f"UPDATE {table} SET {column} = :new || substr({column}, "
                        f"length(:old) + 1) WHERE {where}"), {"old": old, "new": new}).rowcount
    finally:
        engine.dispose()
    return changed
