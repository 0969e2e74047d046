"""`search train`: one real training run from a space file or a trial's config file."""
from __future__ import annotations

import pytest
import torch

from search.cli import main

torch.set_num_threads(1)
SPACE = """\
name: tiny
data: {dataset: digits, batch_size: 64}
model: {name: mlp, width: 32, depth: 1}
augment: {shift: 0}
optimizer: {lr: 0.01}
train: {epochs: 5, threads: 1}
space:
  optimizer:
    lr: {low: 1.0e-3, high: 1.0e-1, log: true}
"""


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    return path


def test_trains_the_fixed_settings_with_overrides(space, tmp_path, capsys):
    rc = main(["train", str(space), "--epochs", "2", "--set", "optimizer.lr=3e-2",
               "--set", "scheduler.name=cosine", "--checkpoint-dir", str(tmp_path / "ck")])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert [line.split()[1] for line in out[:2]] == ["1/2", "2/2"]
    assert "lr 3.00e-02" in out[0]  # the override reached the optimiser (cosine starts at lr)
    assert out[2].startswith("test accuracy ") and "parameters" in out[2]
    accuracy = float(out[2].split()[2])
    assert accuracy > 0.8  # real digits, learnt in two epochs
    assert (tmp_path / "ck" / "best.pt").exists() and out[3] == f"checkpoint {tmp_path}/ck/best.pt"


def test_trains_a_config_file(tmp_path, capsys):
    cfg = tmp_path / "trial.yaml"
    cfg.write_text("config:\n  data: {dataset: digits}\n  model: {name: mlp, width: 16, depth: 1}"
                   "\n  train: {epochs: 3, threads: 1}\n")
    assert main(["train", "--config", str(cfg), "--epochs", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("epoch   1/1") and out[1].startswith("test accuracy")


def test_takes_the_config_files_the_tool_writes(space, tmp_path, capsys):
    """A trial's MLflow config.yaml and best_config.yaml (the tracker's writer, a resolved
    settings tree) and `search sample --params` are read as settings; one `search sample`
    document trains."""
    from search.commands.train import load_config_file
    from search.tracking.tracker import _yaml
    from trainers import resolve_config

    tree = resolve_config({"data": {"dataset": "digits", "batch_size": 64},
                           "model": {"name": "mlp", "width": 16, "depth": 1}})
    for name in ("config.yaml", "best_config.yaml"):
        (tmp_path / name).write_text(_yaml(tree))
        assert load_config_file(str(tmp_path / name), {}) == tree
    assert main(["sample", str(space), "-n", "1", "--seed", "0", "--params"]) == 0
    (tmp_path / "params.yaml").write_text(capsys.readouterr().out)
    lr = load_config_file(str(tmp_path / "params.yaml"), {})["optimizer"]["lr"]
    assert 1e-3 <= lr <= 1e-1
    assert main(["sample", str(space), "-n", "1", "--seed", "0"]) == 0
    (tmp_path / "sample.yaml").write_text(capsys.readouterr().out)
    assert main(["train", "--config", str(tmp_path / "sample.yaml"), "--epochs", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("epoch   1/1")
    assert "test accuracy" in out[1]
    assert main(["sample", str(space), "-n", "2"]) == 0
    (tmp_path / "two.yaml").write_text(capsys.readouterr().out)
    assert main(["train", "--config", str(tmp_path / "two.yaml")]) == 2
    assert "holds 2 YAML documents" in capsys.readouterr().err
    assert main(["train", "--config", str(space)]) == 2
    assert "is a space file; train it with `search train" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--set", "optimizer.lrr=0.1"], "optimizer.lrr: unknown optimizer option, got 'lrr' "
                                     "(did you mean 'lr'?)"),
    (["--set", "optimizer.lr"], "--set optimizer.lr: expected KEY=VALUE"),
    (["--set", "optimizer.lr=fast"], "optimizer.lr"),
])
def test_mistakes_are_one_line_errors(space, capsys, argv, message):
    assert main(["train", str(space), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_config_file_mistakes(tmp_path, capsys):
    assert main(["train"]) == 2
    assert "either a space file or --config" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataa: {dataset: digits}\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "expected the settings groups (data, model," in capsys.readouterr().err
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("config:\n  train: {epochz: 1}\n")
    assert main(["train", "--config", str(wrong)]) == 2
    assert "train.epochz" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: does not exist" in capsys.readouterr().err
