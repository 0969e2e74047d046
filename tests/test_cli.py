"""The command line basics: help for every command, validate and sample."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
SPACE = """\
name: cli_demo
train: {epochs: 7}
space:
  optimizer:
    lr: {low: 3.0e-4, high: 1.0e-2, log: true}
    name:
      choices:
        adamw: {}
        sgd: {momentum: {low: 0.8, high: 0.99}}
        adam: {betas: {choices: [[0.9, 0.999], [0.8, 0.99]]}}
  model:
    width: {choices: [16, 32]}
"""


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "cli_demo.yaml"
    path.write_text(SPACE)
    return str(path)


def test_search_help_runs_as_a_program():
    done = subprocess.run([sys.executable, "-m", "search.cli", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "validate" in done.stdout and "sample" in done.stdout


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_every_command_module_is_reachable():
    assert len(_subcommands()) == len(COMMANDS)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: search {command}")


def test_no_command_is_a_one_line_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert capsys.readouterr().err == ("error: search: the following arguments are required: "
                                       "COMMAND; see `search --help`\n")


def test_validate_prints_the_tree(space_file, capsys):
    assert main(["validate", space_file]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"cli_demo  ({space_file})")
    assert "optimizer.lr: float in [0.0003, 0.01], log" in out
    assert "    optimizer.name: one of adamw, sgd, adam\n      if sgd:\n" \
           "        optimizer.name.sgd.momentum: float in [0.8, 0.99]\n      if adam:\n" \
           "        optimizer.name.adam.betas: one of [0.9, 0.999], [0.8, 0.99]" in out
    assert "fixed (differs from the defaults):\n    train.epochs: 7" in out
    assert "budget: trials 20, max_epochs 7," in out
    assert out.rstrip().endswith("5 searched parameters, 2 conditional branches")


@pytest.mark.parametrize("folder", ["", "a-folder-" + "x" * 120])  # a long path is not cut
def test_validate_missing_file(tmp_path, capsys, folder):
    tmp_path = tmp_path / folder
    tmp_path.mkdir(exist_ok=True)
    missing = tmp_path / "quickstrat.yaml"
    (tmp_path / "quickstart.yaml").write_text("seed: 1\n")
    assert main(["validate", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {missing}: no such space file (did you mean "
                   f"'{tmp_path / 'quickstart.yaml'}'?)\n")


def test_sample_is_reproducible_and_complete(space_file, capsys):
    assert main(["sample", space_file, "-n", "3", "--seed", "5"]) == 0
    first = capsys.readouterr().out
    assert main(["sample", space_file, "-n", "3", "--seed", "5"]) == 0
    assert capsys.readouterr().out == first
    docs = list(yaml.safe_load_all(first))
    assert len(docs) == 3
    for doc in docs:
        assert set(doc) == {"data", "model", "optimizer", "scheduler", "regularization",
                            "augment", "train"}
        assert doc["data"]["dataset"] == "mnist5k" and doc["train"]["epochs"] == 7
        assert 3e-4 <= doc["optimizer"]["lr"] <= 1e-2
    assert main(["sample", space_file, "-n", "3", "--seed", "6"]) == 0
    assert capsys.readouterr().out != first


def test_sample_params_only(space_file, capsys):
    assert main(["sample", space_file, "-n", "8", "--params"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert len(docs) == 8
    assert {d["optimizer.name"] for d in docs} == {"adamw", "sgd", "adam"}
    for doc in docs:
        assert {"model.width", "optimizer.name", "optimizer.lr"} <= set(doc)
        name = doc["optimizer.name"]
        assert ("optimizer.name.sgd.momentum" in doc) == (name == "sgd")
        assert ("optimizer.name.adam.betas" in doc) == (name == "adam")
        if name == "adam":
            assert doc["optimizer.name.adam.betas"] in ([0.9, 0.999], [0.8, 0.99])


def test_sample_reports_a_bad_space_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("space:\n  optimizer:\n    lr: {low: 1, high: 0.1}\n")
    assert main(["sample", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}:3: space.optimizer.lr.low: low must not exceed high")
    assert len(err.strip().splitlines()) == 1


def test_sample_rejects_a_bad_count(space_file, capsys):
    with pytest.raises(SystemExit) as info:
        main(["sample", space_file, "-n", "0"])
    assert info.value.code == 2
    assert capsys.readouterr().err == ("error: search sample: argument -n: must be between 1 "
                                       "and 100,000, got '0'; see `search sample --help`\n")


def test_one_error_tree_and_the_exit_code_comes_from_the_error(monkeypatch, capsys):
    import search.commands.validate as validate
    from search.errors import UserError
    from spaces import SpaceError
    from trainers.errors import TrainerError
    from trainers.errors import UserError as Base

    assert UserError is Base and issubclass(SpaceError, Base) and issubclass(TrainerError, Base)

    class Odd(UserError):
        exit_code = 5

    def refuse(args):
        raise Odd("file.yaml: something, got 1")

    monkeypatch.setattr(validate, "run", refuse)
    assert main(["validate", "x.yaml"]) == 5
    assert capsys.readouterr().err == "error: file.yaml: something, got 1\n"
    monkeypatch.setattr(validate, "run", lambda args: (_ for _ in ()).throw(TrainerError("t")))
    assert main(["validate", "x.yaml"]) == 2
