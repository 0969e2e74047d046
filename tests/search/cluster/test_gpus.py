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

from search.cluster import gpus
from search.studies import study as studies
from search.errors import UserError
from search.lifecycle.plan import Resources, concurrency, node_slots, spread
from search.lifecycle.runner import run_search
from search.testing import toy_space
from search.tune.trainable import TrialPlan
from trainers.devices import MEMORY_FRACTION_ENV
from trainers.errors import TrainerError

HERE = Path(__file__).parents[1]


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
    from search.lifecycle.plan import Budget, Objective

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
def test_a_resumed_run_spreads_the_trials_it_has_left(ray_cluster, options, tmp_path):
    from search.lifecycle.runner import resume_search
    from search.lifecycle.runs import read_run_file, write_run_file, write_space

    meet, log = tmp_path / "meet", tmp_path / "calls.jsonl"
    meet.mkdir()
    res = {"cpu": 0.25, "gpu": 0.25, "max_concurrent": None}
    first = toy_space(name="gpuresume", trials=3, epochs=1, resources=res,
                     train={"device": "cpu"}, toy={"epoch_seconds": 0.01})
    out = io.StringIO()
    outcome = run_search(first, options(), stream=out)
    assert "GPUs: 3 trials at once on 4 GPUs; each holds 0.25 CPU and a GPU of its own" \
        in out.getvalue()
    # as if the driver had died with three trials of five done: a run of five at once would
    # hold half a GPU each, and Ray would put the two left both on GPU 0
    write_space(outcome.experiment_dir, toy_space(
        name="gpuresume", trials=5, epochs=1, resources=res, train={"device": "cpu"},
        toy={"epoch_seconds": 0.01, "log": str(log), "meet": f"2:{meet}"}))
    info = read_run_file(outcome.experiment_dir)
    write_run_file(outcome.experiment_dir, {**info, "state": "interrupted"})
    out = io.StringIO()
    resumed = resume_search(outcome.experiment_dir.parent, options(), stream=out)
    assert resumed.counts["COMPLETE"] == 5
    assert "GPUs: 2 trials at once on 4 GPUs; each holds 0.25 CPU and a GPU of its own" \
        in out.getvalue()
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 2 and calls[0]["gpus"] != calls[1]["gpus"]  # not both on GPU 0


@pytest.mark.slow
def test_on_two_nodes_requests_fit_a_node_trials_spread_and_stages_go_to_the_gpus():
    # not Ray's single-node mode (set by a local `search run` earlier in this process): the
    # cluster's worker node would refuse to start in it
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"},
           "PYTHONPATH": os.pathsep.join(
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


GPU_STAGES = """
name: gpustages
seed: 1
data: {dataset: digits, batch_size: 64}
model: {name: mlp, width: 16, depth: 1}
train: {epochs: 1, device: cpu}
space:
  optimizer:
    lr: {low: 1.0e-2, high: 3.0e-2, log: true}
objective: {metric: val_accuracy}
budget: {trials: 1}
sampler: {name: random}
pruner: {name: none}
resources: {cpu: 1, gpu: 0.25}
tracking: {enabled: false}
stages:
  - {stage: distill, student: {name: mlp, width: 8, depth: 1}, epochs: 1, trials: 2}
  - {stage: quantize, mode: float16}
"""


@pytest.mark.slow
def test_a_distill_search_trains_each_student_as_a_task_holding_a_gpu(ray_cluster, tmp_path):
    import contextlib

    import ray

    from search.cli import main

    path = tmp_path / "gpustages.yaml"
    path.write_text(GPU_STAGES)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", str(path), "--output", str(tmp_path / "out"), "--plain",
                     "--cpus", "2"])
    assert code == 0, err.getvalue()
    text = out.getvalue()
    # alone after the search, a stage's 0.25 GPU is widened to a whole one of the four
    assert "stage 1/2 distill: runs as one Ray task per student, holding 1 CPU and 1 GPU" \
        in text
    assert "stage 2/2 quantize: runs as a Ray task, holding 1 CPU and 1 GPU" in text
    folder = next((tmp_path / "out" / "stages").iterdir())
    distill = json.loads((folder / "1-distill" / "result.json").read_text())
    node = ray.get_runtime_context().get_node_id()
    assert distill["search"]["trials"] == 2
    assert [len(w["gpu_ids"]) for w in distill["ran_on"]] == [1, 1]  # a task per student
    assert {w["node"] for w in distill["ran_on"]} == {node}
    quantize = json.loads((folder / "2-quantize" / "result.json").read_text())
    assert len(quantize["ran_on"]) == 1 and len(quantize["ran_on"][0]["gpu_ids"]) == 1
