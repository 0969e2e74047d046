"""A user's own code named by the space: factories whose arguments are searched and a `fit:`
function with its own params, through `search run` and `search train` (own_code_helpers.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.cli import main
from search.lifecycle.usercode import DEFAULT_FIT, fit_keywords, fit_result, space_fit
from spaces import load_space

# Ray's workers import the user's code by name, from the driver's folder (Ray puts it on their
# path; the suite runs from the repository root), hence the helpers' full dotted name.
SPACE = """
name: owncode
seed: 0
fit: "tests.search.own_code_helpers:scaled_fit"
data:
  dataset: factory
  factory: "tests.search.own_code_helpers:tiny_images"
  kwargs: {n: 160}
  batch_size: 32
model: {name: factory, factory: "tests.search.own_code_helpers:flat_net"}
optimizer: {name: adamw, lr: 0.01}
scheduler: {name: none}
augment: {shift: 0}
train: {epochs: 2}
params: {tag: t1}
space:
  model:
    kwargs:
      hidden: {choices: [4, 12]}
      layers: {low: 1, high: 2}
  data:
    kwargs:
      size: {low: 4, high: 8, step: 4}
  params:
    lr_scale: {choices: [0.5, 2.0]}
budget: {trials: 2}
sampler: {name: random}
pruner: {name: none}
resources: {cpu: 1}
tracking: {enabled: false}
"""


@pytest.mark.slow
def test_search_run_trains_the_sampled_arguments_and_params(ray_cluster, tmp_path, capsys):
    from own_code_helpers import count_params

    from search.studies import study as studies

    path, out = tmp_path / "owncode.yaml", tmp_path / "out"
    path.write_text(SPACE)
    assert main(["run", str(path), "--output", str(out), "--plain", "--cpus", "2"]) == 0
    assert "2 complete" in capsys.readouterr().out
    space = load_space(path)
    study = studies.load_study(studies.open_storage(studies.storage_url(None, out)), "owncode")
    (exp_dir,) = out.glob("run-*")
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(trials) == 2
    for t in trials:
        config = space.config_from_params(t.params)
        kw, size = config["model"]["kwargs"], config["data"]["kwargs"]["size"]
        assert kw == {"hidden": t.params["model.kwargs.hidden"],
                      "layers": t.params["model.kwargs.layers"]}
        assert config["data"]["kwargs"] == {"n": 160, "size": t.params["data.kwargs.size"]}
        assert config["params"] == {"tag": "t1", "lr_scale": t.params["params.lr_scale"]}
        folder = exp_dir / f"trial_{t.user_attrs['tune_trial_id']}"
        final = json.loads((folder / "search_result.json").read_text())
        # the factories got the sampled arguments: the first layer's size is the data
        # factory's `size` squared, the hidden width and depth the model factory's
        assert final["num_params"] == count_params(kw["hidden"], kw["layers"], size, 4)
        # the fit function got its params: it scaled the lr the built-in loop reported
        history = json.loads((folder / "history.json").read_text())
        assert [h["epoch"] for h in history] == [1, 2] and final["tag"] == "t1"
        assert all(h["lr"] == pytest.approx(0.01 * config["params"]["lr_scale"])
                   for h in history)


def test_search_train_runs_the_space_fit(tmp_path, capsys):
    path = tmp_path / "owncode.yaml"
    path.write_text(SPACE)
    assert main(["train", str(path), "--epochs", "1", "--set", "params.lr_scale=2.0",
                 "--set", "model.kwargs.hidden=4", "--set", "data.kwargs.size=4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("epoch 1  ") and "tag t1" in out and "lr 0.02 " in out
    assert "test accuracy " in out
    assert main(["train", str(path), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "params.lr_scale: searched, with no value outside a " \
        "search: give it with --set params.lr_scale=VALUE" in err


def test_the_fit_flag_overrides_the_space_and_keywords_follow_the_signature():
    space = load_space(SPACE)
    assert space_fit(space) == "tests.search.own_code_helpers:scaled_fit"
    assert space_fit(space, "search.testing:known_work_fit") == "search.testing:known_work_fit"
    assert space_fit(load_space("name: plain")) == DEFAULT_FIT

    def small(config, *, report):
        return None

    offered = dict(report=print, checkpoint_dir="d", resume_from=None, cpus=2)
    assert fit_keywords(small, offered) == {"report": print}
    assert fit_keywords(lambda config, **kw: None, offered) == offered
    record = fit_result(None, [{"epoch": 1, "val_accuracy": 0.5}])
    assert record.history == [{"epoch": 1, "val_accuracy": 0.5}]
    assert fit_result({"test_accuracy": 0.9}, []).test_accuracy == 0.9


def test_search_best_writes_the_fit_its_params_and_the_factory_arguments():
    from types import SimpleNamespace

    from search.lifecycle.summary import best_space

    space = load_space(SPACE)
    (params, config), = space.sample(1, 0)
    text = best_space(space, config, SimpleNamespace(number=1, values=[0.9], user_attrs={}),
                      "owncode")
    again = load_space(text)
    assert again.fit == space.fit and not again.params
    assert again.fixed["params"] == config["params"]
    assert again.fixed["model"]["kwargs"] == config["model"]["kwargs"]
    assert again.fixed["data"]["kwargs"] == config["data"]["kwargs"]


def test_the_example_fit_resumes_from_its_own_checkpoint(tmp_path):
    from spaces.examples.own_fit import fit

    config = load_space(Path(__file__).parents[3] / "spaces" / "own_fit.yaml").config_with(
        {"params.hidden": 32, "params.layers": 1, "params.lr": 0.01, "params.weight_decay": 0,
         "params.noise": 0.1, "train.epochs": 3})
    straight = fit(config, report=lambda m: False)
    seen: list[int] = []
    first = fit({**config, "train": {**config["train"], "epochs": 2}},
                report=lambda m: seen.append(m["epoch"]), checkpoint_dir=str(tmp_path))
    assert seen == [1, 2] and len(first["history"]) == 2
    resumed = fit(config, report=lambda m: seen.append(m["epoch"]),
                  checkpoint_dir=str(tmp_path), resume_from=str(tmp_path / "last.pt"))
    assert seen == [1, 2, 3]
    strip = lambda h: [{k: v for k, v in m.items() if k != "epoch_time"} for m in h]  # noqa
    assert strip(resumed["history"]) == strip(straight["history"])
    assert resumed["test_accuracy"] == straight["test_accuracy"] > 0.5
    stopped = fit(config, report=lambda m: m["epoch"] == 1)  # report() -> True stops
    assert len(stopped["history"]) == 1


@pytest.mark.slow
def test_a_fit_that_crashes_alike_in_its_first_trials_stops_the_run(ray_cluster, tmp_path,
                                                                      capsys):
    """Every trial would crash on the same line: the run stops after the first three instead
    of spending its budget (and a retry each) on the same error, and says where it is."""
    import re

    from search.lifecycle.runs import read_run_file
    from search.studies import study as studies

    path, out = tmp_path / "typo.yaml", tmp_path / "out"
    path.write_text("name: typo\nfit: \"tests.search.own_code_helpers:typo_fit\"\n"
                    "train: {epochs: 2}\nspace:\n  params:\n"
                    "    lr: {low: 1.0e-3, high: 1.0e-1, log: true}\n"
                    "budget: {trials: 8}\nsampler: {name: random}\npruner: {name: none}\n"
                    "resources: {cpu: 1}\ntracking: {enabled: false}\n")
    assert main(["run", str(path), "--output", str(out), "--plain", "--cpus", "2"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"stopped: the first 3 trials crashed with the same error, as every trial "
                     r"would: KeyError: 'learning_rate' \(at own_code_helpers\.py:\d+, in "
                     r"typo_fit\)\. Fix the training code", err), err
    study = studies.load_study(studies.open_storage(studies.storage_url(None, out)), "typo")
    assert 3 <= len(study.trials) < 8
    assert {t.state.name for t in study.trials} == {"FAIL"}
    (exp_dir,) = out.glob("run-*")
    info = read_run_file(exp_dir)
    assert info["state"] == "finished" and info["gave_up"].startswith("KeyError")


CONTRACT = [  # what report() was given after which epochs, and what fit returned
    ({"epoch": 0, "val_accuracy": 0.5}, [], None, r"metrics must be a dict with the epoch number"),
    ({"epoch": 2, "val_accuracy": 0.5}, [{"epoch": 2}], None, r"epoch 2 after epoch 2"),
    ({"epoch": 4, "val_accuracy": 0.5}, [{"epoch": 3}], None,
     r"epoch 4 is beyond the trial's 3 epochs"),
    ({"epoch": 1, "acc": 0.5}, [], None, r"the objective val_accuracy is not among the "
                                         r"reported metrics \(acc, epoch\)"),
    (None, [], [0.5], r"fit returned a list; return a dict"),
    (None, [], {"test_accuracy": "high"}, r"fit returned test_accuracy 'high'; expected a "
                                          r"number"),
    (None, [], {"best_epoch": 9}, r"fit returned best_epoch 9, not an epoch it trained "
                                  r"\(1\.\.3\)"),
    (None, [], {"history": "h"}, r"fit returned history of str"),
]


@pytest.mark.parametrize("metrics,earlier,returned,message", CONTRACT)
def test_each_break_of_the_fit_contract_is_a_contract_error(metrics, earlier, returned,
                                                            message):
    from search.lifecycle.usercode import ContractError, check_report

    reported = [{"epoch": e, "val_accuracy": 0.5} for e in (1, 2, 3)]
    with pytest.raises(ContractError, match=message):
        if metrics is not None:
            check_report(metrics, earlier, 3, ("val_accuracy",))
        else:
            fit_result(returned, reported)
    check_report({"epoch": 3, "val_accuracy": 0.5}, [{"epoch": 2}], 3, ("val_accuracy",))
    assert fit_result({"best_epoch": 2, "test_accuracy": 0.9}, reported).best_epoch == 2
    # resumed after epoch 3, it reports 4 and 5 only: its best may be an earlier epoch
    assert fit_result({"best_epoch": 2}, [{"epoch": 4}, {"epoch": 5}]).best_epoch == 2
    assert fit_result(None, reported).history == reported


def test_search_train_holds_a_fit_to_the_contract_a_search_does(tmp_path, capsys):
    path = tmp_path / "twice.yaml"
    path.write_text("name: twice\nfit: \"tests.search.own_code_helpers:epochs_twice\"\n"
                    "train: {epochs: 2}\ntracking: {enabled: false}\n")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: fit tests.search.own_code_helpers:epochs_twice: report(metrics): "
                   "epoch 1 after epoch 2; report each epoch once, in order (1, 2, ...)")
