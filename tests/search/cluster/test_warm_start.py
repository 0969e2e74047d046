"""Warm starts of a changed space (search/studies/warmstart.py): on an SQLite study without Ray, then
end to end: two `search run`s on the two-node cluster, PostgreSQL study, MLflow linked."""
from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from cluster_helpers import FIT, MLFLOW_URI, PG_URL, search, space_yaml
from search.studies import study as studies
from search.studies import warmstart
from search.testing import quality
from spaces import load_space

DIRECTIONS, METRICS = ["maximize"], ["val_accuracy"]
# quality (search.testing: best at lr 0.01 and width 32) ranks them #3, #1, #2, #0
CONFIGS = [{"optimizer.lr": lr, "optimizer.name": "adamw", "model.width": w}
           for lr, w in ((0.2, 32), (0.01, 64), (0.001, 16), (0.02, 32))]


def space(lr=(1.0e-4, 1.0), widths=(16, 32, 64), extra: str = ""):
    return load_space(space_yaml("warm", lr=lr, widths=widths, tracking=False) + extra,
                      filename="warm.yaml")


@pytest.fixture
def storage(tmp_path):
    return studies.open_storage(studies.storage_url(None, tmp_path))


def first_run(storage, configs=CONFIGS):
    """The study after a run of the original space over `configs` (values from quality)."""
    old = space()
    study = warmstart.continue_study(storage, old, DIRECTIONS, METRICS).study
    for params in configs:
        study.enqueue_trial(params)
        trial = study.ask()
        study.tell(trial, quality(old.define_by_run(trial)))
    return study


def waiting(study) -> list[dict]:
    return [t.params or t.system_attrs["fixed_params"]
            for t in study.get_trials(states=(TrialState.WAITING,))]


def test_an_unchanged_space_continues_its_study_and_enqueues_nothing(storage):
    study = first_run(storage)
    again = warmstart.continue_study(storage, space(), DIRECTIONS, METRICS)
    assert again.study.study_name == study.study_name == "warm"
    assert not again.changed and again.lines() == [] and waiting(again.study) == []


def test_a_narrowed_range_enqueues_the_best_configs_that_still_fit(storage):
    old = first_run(storage)
    new = space(lr=(0.005, 0.05))
    start = warmstart.continue_study(storage, new, DIRECTIONS, METRICS, best=3)
    assert start.changed and start.study.study_name == "warm@2"
    assert start.considered == 3 and start.enqueued == [3, 1]  # lr 0.02, 0.01; 0.001 is out
    assert waiting(start.study) == [CONFIGS[3], CONFIGS[1]]
    assert start.lines() == [
        "warm start: the space changed; enqueued 2 of the 3 best earlier configs, to run "
        "first (trials #3, #1)",
        "warm start: changed distributions (optimizer.lr: range [0.0001, 1], log -> range "
        "[0.005, 0.05], log): the search continues in study warm@2, with the 2 earlier trials "
        "of warm that fit the new space",
        "warm start: skipped trial #2 of study warm: optimizer.lr = 0.001 is not in the new "
        "range [0.005, 0.05], log"]
    copied = start.study.get_trials(states=(TrialState.COMPLETE,))
    assert [(t.params, t.value) for t in copied] == [(old.trials[n].params, old.trials[n].value)
                                                     for n in (1, 3)]
    assert copied[0].distributions["optimizer.lr"].low == 0.005  # the new range
    # the sampler hands the enqueued configs out first, as the new space resolves them
    trial = start.study.ask()
    assert new.define_by_run(trial)["optimizer"]["lr"] == 0.02
    assert trial.user_attrs[warmstart.WARM_FROM] == "warm#3"
    # a second driver of the same new space finds it unchanged: nothing enqueued twice
    assert not warmstart.continue_study(storage, new, DIRECTIONS, METRICS).changed
    assert len(waiting(start.study)) == 1


def test_changed_choices_continue_in_a_successor_study_with_the_trials_that_fit(storage):
    old = first_run(storage)
    new = space(widths=(16, 32, 128))
    with pytest.raises(ValueError, match="dynamic value space"):  # what Optuna does alone
        new.define_by_run(old.ask())
    start = warmstart.continue_study(storage, new, DIRECTIONS, METRICS, best=2)
    study = start.study
    assert study.study_name == "warm@2" and start.changed
    assert old.user_attrs[studies.CONTINUED_IN] == "warm@2"
    assert study.user_attrs[warmstart.PREVIOUS_STUDY] == "warm"
    assert studies.current_name(storage, "warm") == "warm@2"
    copied = study.get_trials(states=(TrialState.COMPLETE,))
    assert [t.user_attrs[warmstart.COPIED_FROM] for t in copied] == \
        ["warm#0", "warm#2", "warm#3"]  # width 64 does not fit
    assert [t.value for t in copied] == [old.trials[n].value for n in (0, 2, 3)]
    assert start.enqueued == [3] and waiting(study) == [CONFIGS[3]]
    assert start.notes == [
        "changed distributions (model.width: CategoricalDistribution does not support "
        "dynamic value space): the search continues in study warm@2, with the 3 earlier "
        "trials of warm that fit the new space",
        "skipped trial #1 of study warm: model.width = 64 is not in the new choices "
        "[16, 32, 128]"]
    assert new.define_by_run(study.ask())["model"]["width"] == 32  # the enqueued #3
    assert new.define_by_run(study.ask())["model"]["width"] in (16, 32, 128)
    # --new starts afresh: the whole chain goes
    fresh = warmstart.continue_study(storage, new, DIRECTIONS, METRICS, new=True)
    assert fresh.study.study_name == "warm" and studies.study_names(storage) == ["warm"]
    assert fresh.study.trials == []


def test_a_new_parameter_is_left_to_the_sampler_and_k_0_enqueues_nothing(storage):
    first_run(storage)
    extra = "  regularization:\n    label_smoothing: {low: 0.0, high: 0.1}\n"
    new = load_space(space_yaml("warm", tracking=False).replace(
        "  model:\n    width", extra + "  model:\n    width"), filename="warm.yaml")
    start = warmstart.continue_study(storage, new, DIRECTIONS, METRICS, best=1)
    assert start.changed and start.study.study_name == "warm"  # no distribution changed
    assert start.enqueued == [3] and waiting(start.study) == [CONFIGS[3]]
    trial = start.study.ask()
    config = new.define_by_run(trial)
    assert config["optimizer"]["lr"] == 0.02 and "regularization.label_smoothing" in trial.params
    off = warmstart.continue_study(storage, space(widths=(16, 32)), DIRECTIONS, METRICS, best=0)
    assert off.changed and off.enqueued == [] and waiting(off.study) == []
    assert off.lines()[0] == "warm start: the space changed; no earlier config enqueued"


@pytest.mark.postgres
@pytest.mark.slow
def test_a_scheduled_rerun_of_a_changed_space_runs_the_valid_best_first(two_nodes, pg,
                                                                         tmp_path):
    name = pg.name("warm")
    path, out = tmp_path / "space.yaml", str(tmp_path / "runs")
    common = ["--address", two_nodes.address, "--storage", PG_URL, "--tracking-uri",
              MLFLOW_URI, "--output", out, "--plain", "--fit", FIT]
    path.write_text(space_yaml(name, trials=3))
    first = search("run", str(path), *common)
    assert first.returncode == 0, first.stderr[-4000:]
    study = optuna.load_study(study_name=name, storage=pg.storage)
    best = studies.ranked(study, 3)
    top = best[0].params["optimizer.lr"]
    low, high = top / 1.2, top * 1.2  # the best still fits; the others almost surely not
    fits = [t for t in best if low <= t.params["optimizer.lr"] <= high]

    path.write_text(space_yaml(name, trials=3, lr=(low, high)))
    second = search("run", str(path), *common, "--warm-start", "3")
    assert second.returncode == 0, second.stderr[-4000:]
    assert f"enqueued {len(fits)} of the 3 best earlier configs, to run first" in second.stdout
    assert f"the search continues in study {name}@2" in second.stdout  # lr's range changed
    for t in best:
        if t not in fits:
            assert f"skipped trial #{t.number} of study {name}: optimizer.lr = " in \
                second.stdout
    assert len(study.trials) == 3  # the first study stays as it was
    trials = optuna.load_study(study_name=f"{name}@2", storage=pg.storage).trials
    copied = [t for t in trials if warmstart.COPIED_FROM in t.user_attrs]
    assert [t.user_attrs[warmstart.COPIED_FROM] for t in copied] == [
        f"{name}#{t.number}" for t in study.trials if low <= t.params["optimizer.lr"] <= high]
    runs = sorted({t.user_attrs["run_id"] for t in study.trials + trials})
    assert len(runs) == 2
    rerun = [t for t in trials if t.user_attrs["run_id"] == runs[1]]
    assert len(rerun) == 3 and all(t.state == TrialState.COMPLETE for t in rerun)
    warm = rerun[:len(fits)]  # the lowest numbers of the run: enqueued before it started
    assert [t.user_attrs[warmstart.WARM_FROM] for t in warm] == \
        [f"{name}#{t.number}" for t in fits]
    assert [t.params for t in warm] == [t.params for t in fits]

    # each run its own MLflow parent, the second linked to the first
    infos = [json.loads((tmp_path / "runs" / r / "search_run.json").read_text()) for r in runs]
    assert infos[1]["previous_run"]["run_id"] == runs[0]
    assert infos[1]["previous_run"]["mlflow_run_id"] == infos[0]["mlflow_run_id"]
    from mlflow import MlflowClient

    parent = MlflowClient(MLFLOW_URI).get_run(infos[1]["mlflow_run_id"])
    assert parent.data.tags["search.previous_run"] == infos[0]["mlflow_run_id"]
    assert parent.data.tags["search.previous_run_id"] == runs[0]
    assert parent.data.tags["search.studies.study"] == f"{name}@2"
    assert infos[1]["study_name"] == f"{name}@2"


def test_best_names_the_successor_study_it_read(tmp_path, storage, capsys):
    """After a warm start into warm@2, `search best warm` says whose trial it prints."""
    from search.cli import main
    from search.lifecycle.runs import write_run_file, write_space

    first_run(storage)
    new = space(lr=(0.005, 0.05))
    study = warmstart.continue_study(storage, new, DIRECTIONS, METRICS, best=3).study
    trial = study.ask()
    study.tell(trial, quality(new.define_by_run(trial)))
    run = tmp_path / "run-1"
    space_format = write_space(run, new)
    write_run_file(run, {"run_id": "run-1", "space_name": "warm", "study_name": "warm@2",
                         "storage_url": studies.storage_url(None, tmp_path), "state": "finished",
                         "space_format": space_format})
    assert main(["best", "warm", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"# best trial #{study.best_trial.number} of study warm@2:" in out
