"""GPUs on a CPU machine: Ray's fake GPUs (the session Ray has four; torch sees none) and a
two-node cluster in a subprocess. Where trials go (spread, then pack; one node per trial), the
device check before and in a trial, a trial's memory given back, out of memory as a signal the
sampler learns from, and a stage trained as a task on the node with the GPUs."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from search import gpus
from search import study as studies
from search.errors import UserError
from search.plan import Resources, concurrency, node_slots, spread
from search.runner import run_search
from search.testing import toy_space
from search.trainable import TrialPlan
from trainers.devices import MEMORY_FRACTION_ENV
from trainers.errors import TrainerError

HERE = Path(__file__).parent


def test_trials_get_a_gpu_each_before_any_gpu_is_shared():
    box = [{"CPU": 32, "GPU": 4}]
    quarter = Resources(1, 0.25)
    # Ray packs a 0.25 request best-fit (all four on GPU 0): the share is widened instead
    assert [spread(quarter, box, n).gpu for n in (1, 4, 8, 12, 16)] == \
        [1.0, 1.0, 0.5, 0.3333, 0.25]
    assert spread(Resources(1, 0.5), box, 6).gpu == 0.5  # never below the user's share
    assert spread(Resources(1, 0), box, 4) == Resources(1, 0)  # CPU trials: nothing to spread
    # node by node: the small node's CPUs hold 2 trials, so 10 need 4 per GPU somewhere
    nodes = [{"CPU": 16, "GPU": 2}, {"CPU": 2, "GPU": 2}]
    running = concurrency(quarter, {"CPU": 18, "GPU": 4}, nodes)
    assert running == 10 and spread(quarter, nodes, running).gpu == 0.25
    assert spread(quarter, nodes, 4).gpu == 1.0
    assert sum(node_slots(quarter, n, 1.0) for n in nodes) == 4


def test_a_trial_must_fit_one_node():
    nodes = [{"CPU": 1.0, "GPU": 0.0}, {"CPU": 1.0, "GPU": 2.0}]
    with pytest.raises(UserError) as err:
        concurrency(Resources(2, 0), {"CPU": 2, "GPU": 2}, nodes)
    assert str(err.value) == ("resources: each trial asks for 2 CPUs and 0 GPUs on one node, "
                              "but no node of the Ray cluster has that much (nodes: 1 CPU/0 "
                              "GPU, 1 CPU/2 GPU); lower resources.cpu or .gpu")
    assert concurrency(Resources(1, 0.5), {"CPU": 2, "GPU": 2}, nodes) == 1  # one CPU with GPUs


def _plan(gpu: float) -> TrialPlan:
    from search.plan import Budget, Objective

    return TrialPlan((Objective("val_accuracy", "maximize"),), Budget(1), Resources(1, gpu))


def test_a_trial_given_a_gpu_torch_cannot_use_fails_with_the_reason(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    monkeypatch.delenv(MEMORY_FRACTION_ENV, raising=False)
    with pytest.raises(TrainerError, match=r"^train.device: this process was given GPU 2 "
                                           r"\(CUDA_VISIBLE_DEVICES\) but torch cannot use it: "):
        gpus.trial_setup(_plan(0.5), {"train": {"device": "auto"}})
    assert os.environ[MEMORY_FRACTION_ENV] == "0.5"  # its share caps its memory
    gpus.trial_setup(_plan(0.5), {"train": {"device": "cpu"}})  # asked for the CPU: no check
    from trainers.loop import select_device

    with pytest.raises(TrainerError, match="torch cannot use it"):
        select_device("auto")  # trainers.fit says the same, never a silent CPU run
    assert select_device("cpu") == torch.device("cpu")


def test_a_trial_gives_its_cached_gpu_memory_back(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats",
                        lambda *a: calls.append("reset_peak_memory_stats"))
    gpus.trial_cleanup()
    assert calls == ["empty_cache", "reset_peak_memory_stats"]


def test_the_preflight_refuses_gpus_torch_cannot_use(ray_cluster):
    space = toy_space(resources={"cpu": 0.5, "gpu": 0.25, "max_concurrent": None})
    with pytest.raises(UserError, match=r"^resources.gpu: on Ray node \w{12}, this process was "
                                        r"given GPU \d \(CUDA_VISIBLE_DEVICES\) but torch "
                                        r"cannot use it: .*set train.device: cpu"):
        gpus.preflight(space, _plan(0.25))
    explicit = toy_space(resources=space.resources, train={"device": "cpu"})
    assert gpus.preflight(explicit, _plan(0.25)) is None


@pytest.mark.slow
def test_four_trials_on_four_fake_gpus_get_one_each_and_oom_is_learned(ray_cluster, options,
                                                                        tmp_path):
    meet, log = tmp_path / "meet", tmp_path / "calls.jsonl"
    meet.mkdir()
    space = toy_space(name="gpus", trials=4, epochs=1, sampler={"seed": 3},
                      resources={"cpu": 0.5, "gpu": 0.25, "max_concurrent": None},
                      train={"device": "cpu"},  # fake GPUs: torch trains on the CPU, as asked
                      toy={"epoch_seconds": 0.05, "log": str(log), "meet": f"4:{meet}",
                          "oom_if_lr_above": 0.03})
    out = io.StringIO()
    outcome = run_search(space, options(), stream=out)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(c["gpus"] for c in calls) == ["0", "1", "2", "3"]  # all at once, one GPU each
    study = studies.load_study(studies.open_storage(outcome.storage_url), outcome.study_name)
    trials = studies.of_run(study.trials, outcome.run_id)
    oom = [t for t in trials if t.params["optimizer.lr"] > 0.03]
    assert oom and len(oom) < 4, "seed 3 draws both kinds"
    for t in trials:
        if t in oom:  # PRUNED with the reason: TPE ranks it below every trial that reported
            assert t.state == TrialState.PRUNED and not t.intermediate_values
            assert t.user_attrs["out_of_memory"].startswith("out of memory: OutOfMemoryError:")
        else:
            assert t.state == TrialState.COMPLETE
    assert out.getvalue().count("PRUNED out of memory: OutOfMemoryError") == len(oom)
    assert outcome.exit_code == 0
    from optuna.samplers._tpe.sampler import _split_trials

    below, above = _split_trials(study, trials, 1)  # what TPE models as good and as bad
    assert set(t.number for t in oom) <= set(t.number for t in above)


@pytest.mark.slow
def test_on_two_nodes_requests_fit_a_node_trials_spread_and_stages_go_to_the_gpus():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(HERE / "_two_node_gpus.py")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["fit_error"].startswith("resources: each trial asks for 2 CPUs and 0 GPUs on "
                                        "one node, but no node")
    assert seen["slots"] == 2 and seen["share"] == 1.0  # two trials: a GPU each
    assert sorted(seen["trial_gpus"]) == ["0", "1"]
    assert set(seen["trial_nodes"]) == {seen["worker"]}
    assert seen["preflight"].startswith(f"resources.gpu: on Ray node {seen['worker'][:12]}, "
                                        "this process was given GPU")
    stage = seen["stage"]  # the stage task: on the worker, holding the trial's request
    assert stage["node"] == seen["worker"] != seen["driver"]
    assert stage["gpus"] in ("0", "1") and stage["gpu_ids"] in ([0], [1])
    assert stage["error"] == "TrainerError: stage: unknown stage 'nope'; expected one of " \
                             "finetune, distill, quantize"
