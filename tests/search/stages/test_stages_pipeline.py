"""The post-search stages end to end on a table: a real search (scikit-learn's wine rows, the
example's own MLP factory and its fixed split, real Ray, a real study, MLflow in SQLite) through `search run`, its stages' folders, table and MLflow
runs; resuming after a stage that broke; `--no-stages`; the one-line mistakes of `search stages`."""
from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest

from search.cli import main
from search.testing import toy_space

pytestmark = pytest.mark.slow

SPACE = """
name: stagetoy
seed: 1
data: {dataset: factory, factory: "spaces.examples.wine:load", batch_size: 32}
model: {name: factory, factory: "spaces.examples.wine:make_model", kwargs: {hidden: 32, depth: 1}}
augment: {shift: 0}
train: {epochs: 1}
space:
  optimizer:
    lr: {low: 1.0e-2, high: 3.0e-2, log: true}
objective: {metric: val_accuracy}
budget: {trials: 2}
sampler: {name: random}
pruner: {name: none}
resources: {cpu: 1}
tracking: {enabled: true, register_as: stagetoy-model}
stages:
  - {stage: finetune, epochs: 1}
  - {stage: distill, epochs: 1, trials: 2, student: {name: factory,
     factory: "spaces.examples.wine:make_model", kwargs: {hidden: 8, depth: 1}}}
  - {stage: quantize, mode: int8_dynamic}
"""
STAGES = ["best", "finetune", "distill", "quantize"]
FIGURES = {"test_accuracy", "val_accuracy", "params", "size_bytes", "latency_ms_b1",
           "latency_ms_b64", "throughput_b64"}


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def searched(ray_cluster, tmp_path_factory):
    """`search run` of SPACE: the search, then its three stages."""
    root = tmp_path_factory.mktemp("stages")
    path = root / "stagetoy.yaml"
    path.write_text(SPACE)
    out = root / "out"
    code, stdout, stderr = cli("run", str(path), "--output", str(out), "--plain", "--cpus", "2")
    assert code == 0, stderr
    run_id = sorted(p.name for p in out.iterdir() if p.name.startswith("run-"))[-1]
    return {"path": path, "out": out, "run_id": run_id, "stdout": stdout,
            "folder": out / "stages" / run_id}


def mlflow_runs(out):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}",
                          registry_uri=f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("stagetoy")
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def test_search_run_ends_with_the_stage_table(searched):
    text = searched["stdout"]
    assert "top trials of study stagetoy" in text  # the search's own summary came first
    table = text[text.rindex("stages of " + searched["run_id"]):]
    head = table.splitlines()[1]
    for column in ("stage", "kind", "test_accuracy", "params", "size", "lat b1 ms", "lat b64 ms",
                   "samples/s b64"):
        assert column in head
    rows = table.splitlines()[2:6]
    assert [r.split()[1] for r in rows] == STAGES
    assert rows[-1].split()[2] == "int8_dynamic"
    final = searched["folder"] / "3-quantize" / "model.pt"
    assert f"final model: {final} (int8_dynamic)" in table
    assert "alias candidate" in table


def test_each_stage_is_kept_with_its_figures(searched):
    from trainers.stages import load_stage_model

    folder = searched["folder"]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == \
        ["0-best", "1-finetune", "2-distill", "2-distill.trials", "3-quantize"]
    best = json.loads((folder / "0-best" / "result.json").read_text())
    assert best["source_checkpoint"].endswith("best.pt") and best["kind"] == "float32"
    for i, name in enumerate(STAGES[1:], 1):
        result = json.loads((folder / f"{i}-{name}" / "result.json").read_text())
        assert result["stage"]["stage"] == name and set(result["figures"]) >= FIGURES
        assert result["source_checkpoint"] == best["source_checkpoint"]
        assert result["seconds"]["stage"] > 0
        assert 0.0 <= result["figures"]["test_accuracy"] <= 1.0
        assert load_stage_model(folder / f"{i}-{name}" / "model.pt").kind == result["kind"]
    student = json.loads((folder / "2-distill" / "result.json").read_text())["figures"]
    assert student["params"] < best["figures"]["params"]  # the 8-unit student is smaller
    state = json.loads((folder / "pipeline.json").read_text())
    assert state["state"] == "finished" and state["final_model"].endswith("3-quantize/model.pt")


def test_distill_trials_are_a_small_study_in_the_search_storage(searched):
    import optuna

    folder = searched["folder"]
    name = f"stagetoy-distill-{searched['run_id']}"
    study = optuna.load_study(study_name=name,
                              storage=f"sqlite:///{searched['out'] / 'study.db'}")
    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert trials[0].params == {"alpha": 0.5, "temperature": 4.0, "lr_scale": 1.0}  # as written
    assert trials[1].params != trials[0].params
    searched_ = json.loads((folder / "2-distill" / "result.json").read_text())["search"]
    best = max(trials, key=lambda t: (t.value, -t.number))
    assert searched_ == {"study": name, "trials": 2, "best_trial": best.number,
                         "best": best.params, "val_accuracy": best.value}
    assert sorted(p.name for p in (folder / "2-distill.trials").iterdir()) == \
        ["trial-0.pt", "trial-1.pt"]


def test_every_stage_is_a_child_of_the_search_in_mlflow(searched):
    client, runs = mlflow_runs(searched["out"])
    parent = [r for r in runs if r.data.tags.get("search.key") == "parent"
              and searched["run_id"] in r.data.tags["search.id"]]
    assert len(parent) == 1
    ours = [r for r in runs if r.data.tags.get("search.id") == parent[0].data.tags["search.id"]]
    stages = {r.data.tags["search.stage"]: r for r in ours if "search.stage" in r.data.tags}
    assert sorted(stages) == sorted(STAGES)
    # apart from the trials: under one `stages` run of the search, ended with the pipeline
    [group] = [r for r in ours if r.data.tags.get("search.kind") == "stages"]
    assert group.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
    assert group.info.run_name == "stages" and group.info.status == "FINISHED"
    # the figures under the trials' names (num_params, not params)
    logged = {"num_params" if k == "params" else k for k in FIGURES}
    for name, run in stages.items():
        assert run.data.tags["mlflow.parentRunId"] == group.info.run_id
        assert run.info.status == "FINISHED" and run.data.tags["search.state"] == "COMPLETE"
        assert set(run.data.metrics) >= logged
        if name != "best":
            files = {f.path for f in client.list_artifacts(run.info.run_id, "stage")}
            assert files == {"stage/model.pt", "stage/result.json"}
    assert stages["finetune"].data.params["epochs"] == "1"
    assert stages["distill"].data.params["student.kwargs.hidden"] == "8"
    assert {"chosen.alpha", "chosen.temperature", "chosen.lr_scale"} <= \
        set(stages["distill"].data.params)
    trial_curve = client.get_metric_history(stages["distill"].info.run_id, "trial/val_accuracy")
    assert [m.step for m in trial_curve] == [0, 1]
    curve = client.get_metric_history(stages["finetune"].info.run_id, "epoch/val_accuracy")
    assert [m.step for m in curve] == [1]
    version = client.get_model_version_by_alias("stagetoy-model", "candidate")
    assert version.run_id == stages["quantize"].info.run_id
    assert version.tags["source"] == "stage 3-quantize"
    assert version.tags["search.stage_kind"] == "int8_dynamic"
    assert float(version.tags["test_accuracy"]) == pytest.approx(
        stages["quantize"].data.metrics["test_accuracy"], rel=1e-5)
    best = client.get_model_version_by_alias("stagetoy-model", "best")  # the search's own
    assert best.version != version.version


def test_the_registered_candidate_loads_and_predicts(searched):
    import mlflow.pytorch
    import torch

    from search.stages import registry_model

    client, _ = mlflow_runs(searched["out"])
    uri = f"sqlite:///{searched['out'] / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pytorch.load_model("models:/stagetoy-model@candidate")
    finally:
        mlflow.set_tracking_uri(None)
    local, example, meta = registry_model(str(searched["folder"] / "3-quantize" / "model.pt"))
    with torch.no_grad():
        assert torch.equal(model(example).argmax(1), local(example).argmax(1))
    assert meta["stage_kind"] == "int8_dynamic"


def test_resume_after_a_stage_breaks(searched, monkeypatch):
    """Stage 2 raises: stages 0-1 stay; run again: stage 1 is not re-run, its model reused."""
    import trainers.stages as trainer_stages

    real, calls = trainer_stages.run_stage, []

    def breaks_in_distill(stage, previous, **kw):
        calls.append(stage["stage"])
        if stage["stage"] == "distill":
            raise RuntimeError("out of luck in stage 2")
        return real(stage, previous, **kw)

    monkeypatch.setattr(trainer_stages, "run_stage", breaks_in_distill)
    out, folder = str(searched["out"]), searched["folder"]
    code, stdout, stderr = cli("stages", out, "--restart")
    assert code == 1 and calls == ["finetune", "distill"]  # distill's first trial broke
    assert stderr.count("\n") == 1 and "stage 2 (distill) failed: RuntimeError: out of luck" \
        in stderr and "Traceback" not in stderr
    assert (folder / "2-distill.error.txt").read_text().startswith("Traceback")
    assert (folder / "1-finetune" / "model.pt").is_file() and not (folder / "2-distill").exists()
    assert json.loads((folder / "pipeline.json").read_text())["state"] == "failed"
    _, runs = mlflow_runs(searched["out"])
    failed = [r for r in runs if r.data.tags.get("search.stage") == "distill"
              and r.info.status == "FAILED"]
    assert len(failed) == 1 and "out of luck" in failed[0].data.tags["search.reason"]
    # --restart: every stage's new attempt is a new MLflow run, the first ones stay as they were
    assert failed[0].info.run_name == "2-distill attempt 2"
    finetunes = {r.info.run_name: r for r in runs if r.data.tags.get("search.stage") == "finetune"}
    assert sorted(finetunes) == ["1-finetune", "1-finetune attempt 2"]
    assert [r.info.status for r in finetunes.values()] == ["FINISHED", "FINISHED"]

    kept = (folder / "1-finetune" / "model.pt").stat().st_mtime_ns
    monkeypatch.setattr(trainer_stages, "run_stage", lambda stage, previous, **kw: (
        calls.append(stage["stage"]), real(stage, previous, **kw))[1])
    calls.clear()
    code, stdout, stderr = cli("stages", "stagetoy", "--output", out)
    assert code == 0, stderr
    assert calls == ["distill", "distill", "quantize"]  # its two trials, then quantize
    assert (folder / "1-finetune" / "model.pt").stat().st_mtime_ns == kept
    assert "stage 1/3 finetune: finished earlier" in stdout
    assert "finetune (earlier)" in stdout and "final model:" in stdout

    calls.clear()  # everything finished: nothing runs, the table is printed again
    code, stdout, _ = cli("stages", out, "--run", searched["run_id"])
    assert code == 0 and calls == [] and "quantize (earlier)" in stdout


def test_no_stages_flag_then_stages_later_without_tracking(ray_cluster, tmp_path):
    """`--no-stages`: the search only; `search stages` later; tracking off: no MLflow at all."""
    text = SPACE.replace("stagetoy", "stagequiet").replace("trials: 2}", "trials: 1}")
    text = text[:text.index("tracking:")] + "tracking: {enabled: false}\n" + \
        "stages: [{stage: quantize, mode: int8_dynamic}]\n"
    path, out = tmp_path / "stagequiet.yaml", tmp_path / "out"
    path.write_text(text)
    code, stdout, stderr = cli("run", str(path), "--output", str(out), "--plain", "--cpus", "2",
                               "--no-stages")
    assert code == 0, stderr
    assert "1 complete" in stdout and "stages of" not in stdout
    assert not (out / "stages").exists()

    code, stdout, stderr = cli("stages", str(path), "--output", str(out))
    assert code == 0, stderr
    run_id = sorted(p.name for p in out.iterdir() if p.name.startswith("run-"))[-1]
    final = out / "stages" / run_id / "1-quantize" / "model.pt"
    assert final.is_file()
    assert f"final model: {final} (int8_dynamic); tracking is off: not registered" in stdout
    assert not (out / "mlflow.db").exists() and not (out / "tracking").exists()


# ------------------------------------------------------------------------------ mistakes
def toy_search(options, **kw):
    """A search of known_work_fit trials (no model trained) whose space has stages."""
    from search.lifecycle.runner import run_search

    stages = kw.pop("stages", [{"stage": "quantize", "mode": "float16", "enabled": True}])
    space = toy_space(name="stagemiss", trials=2, epochs=1, stages=stages)
    return run_search(space, options(**kw))


def test_no_stages_no_finished_trial_no_checkpoint_exit_2(ray_cluster, tmp_path, options):
    out = str(tmp_path / "out")
    toy_search(options, stages=[{"stage": "quantize", "mode": "float16", "enabled": False}])
    code, _, err = cli("stages", "stagemiss", "--output", out)
    assert code == 2 and err.count("\n") == 1 and "has no enabled stages" in err

    shutil.rmtree(out)
    toy_search(options, fit="search.testing:failing_fit")  # every trial fails
    code, _, err = cli("stages", "stagemiss", "--output", out)
    assert code == 2 and err.count("\n") == 1
    assert "study 'stagemiss' has no completed trial" in err

    shutil.rmtree(out)
    toy_search(options)  # known_work_fit's best.pt is no trainer checkpoint
    code, _, err = cli("stages", "stagemiss", "--output", out)
    assert code == 2 and err.count("\n") == 1 and "best.pt: cannot be read" in err

    for folder in (tmp_path / "out").glob("run-*/trial_*/checkpoint_*"):
        shutil.rmtree(folder)
    code, _, err = cli("stages", "stagemiss", "--output", out)
    assert code == 2 and err.count("\n") == 1
    assert "has no checkpoint: no checkpoint_*/best.pt in" in err

    code, _, err = cli("stages", "stagemiss", "--output", out, "--run", "run-1")
    assert code == 2 and "--run run-1: no such run" in err


def test_a_quantize_stage_that_is_not_faster_says_so():
    from search.stages.pipeline import Row, slower_note

    fp32 = Row(2, "distill", "float32", {"latency_ms_b1": 0.25, "size_bytes": 110_000}, 9.0)
    slow = Row(3, "quantize", "int8_static", {"latency_ms_b1": 0.29, "size_bytes": 36_000}, 0.4)
    fast = Row(3, "quantize", "int8_static", {"latency_ms_b1": 0.12, "size_bytes": 36_000}, 0.4)
    note = slower_note(fp32, slow)
    assert "not faster than its input at batch 1 (0.290 vs 0.250 ms" in note
    assert "3.1× smaller" in note
    assert slower_note(fp32, fast) == ""
    assert slower_note(fp32, Row(3, "finetune", "float32", {"latency_ms_b1": 0.3}, 1.0)) == ""
