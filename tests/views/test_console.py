"""The console of a small real `search run`: it speaks first (before Ray and MLflow start),
says what it plans and how to watch, keeps MLflow's start-up noise out, and ends with a table
whose numbers are right-aligned with the same decimals per column, under one set of names."""
from __future__ import annotations

import re

import pytest

from views_helpers import NAME

# the first test here also waits for the session's search (tests/views/conftest.py): ~40 s on
# a quiet machine, ten times that on a loaded one
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_the_first_lines_come_before_ray_and_mlflow_start(searched):
    first = searched.first
    assert first["text"].startswith(f"search {NAME}: 3 trials of at most 3 epochs, up to 1 at "
                                    "a time"), first
    assert not first["ray"] and not first["mlflow"] and not first["torch"], first
    lines = searched.stdout.splitlines()
    assert lines[0] == first["text"].splitlines()[0]
    assert str(searched.original) in lines[0]  # where the results go
    assert lines[1].strip().startswith("study sqlite:///") and "MLflow sqlite:///" in lines[1]
    watch = lines[2]
    for command in ("status", "ui", "dashboard"):
        assert f"search {command} --output {searched.original}" in watch, watch
    ray = next(i for i, line in enumerate(lines) if line.startswith("Ray ready (2 CPUs)"))
    assert ray > 2 and "one trial at a time" in lines[ray]
    print(f"first line after {first['seconds']:.2f} s; the search took {searched.seconds:.0f} s")


def test_no_mlflow_table_creation_noise(searched):
    text = searched.stdout + searched.stderr
    assert "Creating initial MLflow database tables" not in text
    assert "Updating database tables" not in text
    assert "alembic" not in text.lower()


def test_trial_lines_and_the_final_table_use_one_naming_scheme(searched):
    text = searched.stdout
    assert re.search(r"trial #\d+ COMPLETE val_accuracy=\d\.\d{4} test_accuracy=\d\.\d{4}", text)
    assert "test_acc " not in text and "test_acc=" not in text
    # a parameter is named in full everywhere (as in the space and the study)
    assert not re.search(r"(?<![.\w])label_smoothing", text), text


def _table(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("top trials of study"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("best: "))
    return lines[start + 1:end]


def test_the_final_table_is_aligned(searched):
    head, *rows = _table(searched.stdout)
    names = head.split()
    assert names[:5] == ["#", "state", "val_accuracy", "test_accuracy", "epochs"], head
    assert set(names[5:]) == {"optimizer.lr", "regularization.label_smoothing"}, head
    assert len(rows) == len([t for t in searched.study().trials if t.state.name == "COMPLETE"])
    spans = [[m.span() for m in re.finditer(r"\S+", line)] for line in [head, *rows]]
    assert all(len(s) == len(names) for s in spans), [head, *rows]
    for i, name in enumerate(names):
        cells = [row[spans[r + 1][i][0]:spans[r + 1][i][1]] for r, row in enumerate(rows)]
        if name == "state":  # words: left-aligned under the head
            assert {s[i][0] for s in spans} == {spans[0][i][0]}, [head, *rows]
            assert set(cells) <= {"COMPLETE", "PRUNED"}
            continue
        assert {s[i][1] for s in spans} == {spans[0][i][1]}, (name, [head, *rows])  # right
        assert len({len(c.partition(".")[2]) for c in cells}) == 1, (name, cells)  # decimals
        for cell in cells:
            float(cell)
