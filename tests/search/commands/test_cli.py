"""The commands as a user types them: run, status, best, resume; exit codes and messages."""
from __future__ import annotations

import pytest

from search.cli import main
from spaces import load_space

pytestmark = pytest.mark.slow
FIT = ["--fit", "search.testing:known_work_fit"]
SPACE = """
name: {name}
data: {{dataset: digits}}
model: {{name: mlp}}
train: {{epochs: 2}}
space:
  optimizer:
    lr: {{low: 1.0e-4, high: 1.0, log: true}}
    name:
      choices:
        adamw: {{}}
        sgd:
          momentum: {{low: 0.0, high: 0.9}}
  model:
    width: {{choices: [16, 32, 64]}}
objective: {{metric: val_accuracy}}
budget: {{trials: 4}}
sampler: {{name: tpe, n_startup_trials: 2}}
pruner: {{name: asha, grace_period: 1, reduction_factor: 2}}
resources: {{cpu: 1}}
tracking: {{enabled: false}}
"""


@pytest.fixture
def space_file(tmp_path):
    def write(name="clitoy", text=SPACE):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text.format(name=name))
        return path
    return write


def test_run_status_best_and_run_the_best_again(ray_cluster, space_file, tmp_path, capsys):
    path, out = space_file(), str(tmp_path / "runs")
    assert main(["run", str(path), "--output", out, "--plain", *FIT]) == 0
    text = capsys.readouterr().out
    assert "4 done" in text and "top trials of study clitoy" in text
    assert "search best clitoy" in text

    assert main(["status", "clitoy", "--output", out]) == 0
    status = capsys.readouterr().out
    assert "study clitoy: 4 trials" in status and "finished" in status
    assert "best: trial #" in status

    assert main(["best", str(path), "--output", out]) == 0
    best_yaml = capsys.readouterr().out
    best = load_space(best_yaml, filename="best.yaml")  # a valid space file
    assert best.name == "clitoy-best" and best.params == [] and best.budget.trials == 1
    assert best.fixed["data"]["dataset"] == "digits" and best.fixed["train"]["epochs"] == 2
    best_path = tmp_path / "best.yaml"
    best_path.write_text(best_yaml)
    assert main(["run", str(best_path), "--output", str(tmp_path / "again"), "--plain",
                 *FIT]) == 0
    assert "1/1 done: 1 complete" in capsys.readouterr().out

    # nothing to resume once a run finished: a user error, exit 2, one line
    assert main(["resume", "clitoy", "--output", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: resume: the last run") and "\n" not in err


def test_user_mistakes_end_in_one_line_and_exit_2(space_file, tmp_path, capsys):
    bad = space_file("bad", SPACE.replace("tpe,", "tpee,"))
    assert main(["run", str(bad), "--output", str(tmp_path), *FIT]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "tpe" in err
    assert main(["run", str(space_file()), "--fit", "nowhere.module:fit",
                 "--output", str(tmp_path)]) == 2
    assert "--fit nowhere.module:fit: cannot import it" in capsys.readouterr().err
    assert main(["status", "never-ran", "--output", str(tmp_path / "none")]) == 2
    assert "no search found" in capsys.readouterr().err
    assert main(["resume", "never-ran", "--output", str(tmp_path / "none")]) == 2
    capsys.readouterr()


def test_best_of_unknown_trial_number(ray_cluster, space_file, tmp_path, capsys):
    path, out = space_file("few"), str(tmp_path / "runs")
    text = SPACE.replace("trials: 4", "trials: 2").format(name="few")
    path.write_text(text)
    assert main(["run", str(path), "--output", out, "--plain", *FIT]) == 0
    capsys.readouterr()
    assert main(["best", "few", "--output", out, "--trial", "99"]) == 2
    assert "--trial 99: not a completed trial" in capsys.readouterr().err


def test_two_objectives_are_pruned_by_pareto_rank(ray_cluster, space_file, tmp_path, capsys):
    """accuracy and size, pruned by ASHA over Pareto ranks: the stopped trials are PRUNED in
    the study with the epoch they stopped at, the others COMPLETE with both values; status
    shows the front and best prints a member of it."""
    from optuna.trial import TrialState

    from search.studies import study as studies

    text = (SPACE.replace("objective: {{metric: val_accuracy}}",
                          "objective: [val_accuracy, num_params]")
            .replace("trials: 4", "trials: 10").replace("epochs: 2", "epochs: 4"))
    path, out = space_file("pareto", text), str(tmp_path / "runs")
    assert main(["run", str(path), "--output", out, "--plain", *FIT]) == 0
    capsys.readouterr()
    study = studies.load_study(studies.open_storage(f"sqlite:///{out}/study.db"), "pareto")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(pruned) + len(complete) == 10 and pruned and complete
    for t in pruned:
        assert t.values is None and 1 <= t.user_attrs["stopped_at_epoch"] < 4
    for t in complete:
        assert len(t.values) == 2 and t.values[1] == t.user_attrs["num_params"]
        assert t.user_attrs["epochs_run"] == 4
    front = studies.best_trials(study)
    assert front and {t.number for t in front} <= {t.number for t in complete}

    assert main(["status", "pareto", "--output", out]) == 0
    status = capsys.readouterr().out
    assert f"{len(pruned)} pruned" in status and f"{len(complete)} complete" in status
    assert "Pareto front: trials " + ", ".join(f"#{t.number}" for t in front) in status
    assert main(["best", "pareto", "--output", out]) == 0
    best = load_space(capsys.readouterr().out, filename="best.yaml")
    assert best.fixed["model"]["width"] == front[0].params["model.width"]
