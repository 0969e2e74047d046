"""The YAML layer: lines of keys and values, duplicate keys, YAML 1.2 floats, writing back."""
from __future__ import annotations

import pytest
import yaml

from spaces import SpaceError
from spaces.yamlio import dotted, dump_yaml, load_yaml

TEXT = """\
name: demo
space:
  optimizer:
    lr: {low: 1e-4, high: 1e-2, log: true}
    name:
      choices: [sgd, adam]
stages:
  - stage: finetune
  - stage: quantize
"""


def test_lines_of_keys_and_values():
    data, loc = load_yaml(TEXT, "f.yaml")
    assert data["space"]["optimizer"]["lr"] == {"low": 1e-4, "high": 1e-2, "log": True}
    assert loc.line(("name",)) == 1
    assert loc.line(("space", "optimizer", "lr", "high")) == 4
    assert loc.line(("space", "optimizer", "name")) == 5  # a block value: the key's line
    assert loc.line(("space", "optimizer", "name", "choices", "[1]")) == 6
    assert loc.line(("stages", "[1]", "stage")) == 9
    # an unknown deeper path falls back to its nearest known parent
    assert loc.line(("space", "optimizer", "lr", "nope", "deeper")) == 4


def test_exponent_floats_are_floats():
    data, _ = load_yaml("a: 1e-4\nb: 2E3\nc: -1.5e-2\nd: 10\ne: '1e-4'\nf: 1.0\n")
    assert data == {"a": 1e-4, "b": 2000.0, "c": -0.015, "d": 10, "e": "1e-4", "f": 1.0}
    assert type(data["d"]) is int
    # and the stock SafeLoader is left alone
    assert yaml.safe_load("a: 1e-4") == {"a": "1e-4"}


@pytest.mark.parametrize("text, line, needle", [
    ("a: 1\nb: 2\na: 3\n", 3, "duplicate key (first given on line 1)"),
    ("x:\n  y: 1\n  z: 2\n  y: 3\n", 4, "x.y: duplicate key"),
    ("a: [1, 2\nb: 3\n", 2, "not valid YAML"),
    ("a: 1\n b: 2\n", 2, "not valid YAML"),
    ("a: &x [*x]\n", 1, "recursive"),
    ("a: !!python/object:os.system 1\n", 1, "not valid YAML"),
    ("", 1, "got an empty file"),
    ("# only a comment\n", 1, "got an empty file"),
    ("a: 1\n---\nb: 2\n", 2, "not valid YAML"),
])
def test_broken_yaml_is_one_line_with_its_line(text, line, needle):
    with pytest.raises(SpaceError) as info:
        load_yaml(text, "f.yaml")
    err = info.value
    assert err.file == "f.yaml" and err.line == line
    assert needle in str(err) and "\n" not in str(err)
    assert str(err).startswith(f"f.yaml:{line}: ")


def test_merge_keys_work():
    data, _ = load_yaml("base: &b {low: 1, high: 2}\nx:\n  <<: *b\n  log: true\n")
    assert data["x"] == {"low": 1, "high": 2, "log": True}


def test_dotted_paths():
    assert dotted(("space", "model", "choices", "[2]")) == "space.model.choices[2]"
    assert dotted(("stages", "[0]", "stage")) == "stages[0].stage"


def test_dump_round_trips_through_the_loader():
    doc = {"a": {"b": [1, 2], "c": {"x": 1e-05}}, "l": [[0.9, 0.999]], True: None,
           "text": "two\nlines"}
    for flow in (False, True):
        assert load_yaml(dump_yaml(doc, flow_leaves=flow))[0] == doc
    assert "b: [1, 2]" in dump_yaml(doc)
