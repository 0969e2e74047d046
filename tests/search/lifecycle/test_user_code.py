"""A search over one's own data and model: each factory mistake ends on the driver in one line,
exit 2, before Ray starts and before any run folder exists; non-image data searched end to end
(real trainer, pruning, MLflow)."""
from __future__ import annotations

import pytest

from search.cli import main

FACTORY_SPACE = """
name: {name}
data: {{dataset: factory, factory: "{data}", batch_size: 32}}
model: {model}
train: {{epochs: 2, threads: 1}}
space:
  optimizer:
    lr: {{low: 1.0e-2, high: 5.0e-2, log: true}}
objective: {{metric: val_accuracy}}
budget: {{trials: {trials}}}
sampler: {{name: random}}
pruner: {pruner}
resources: {{cpu: 1}}
tracking: {{enabled: {tracking}}}
"""

MISTAKES = [
    ("shaped_data:wrong_keys", "{name: mlp}",
     "returned parts ['X', 'y']; expected the parts train, test"),
    ("shaped_data:generator", "{name: mlp}", "returned a generator/iterator"),
    ("shaped_data:float_labels", "{name: mlp}", "labels must be a 1-D integer tensor"),
    ("shaped_data:object_array", "{name: mlp}", "(object arrays are not)"),
    ("shaped_data:a_class", "{name: mlp}", "returned the class TensorDataset"),
    ("shaped_data:raises", "{name: mlp}", "failed: FileNotFoundError: /data/signals.npz"),
    ("shaped_data:short_labels", "{name: mlp}", "30 samples but 20 labels"),
    ("shaped_data:tabular", '{name: factory, factory: "shaped_data:five_outputs"}',
     "maps a (2, 6) batch to (2, 5); expected (2, 3) logits"),
    ("shaped_data:tabular", "{name: cnn}", "model.name: cnn takes image (N×C×H×W) data"),
    ("shaped_data:signals", "{name: mlp}\naugment: {hflip: 0.5}",
     "augment.hflip: an image augmentation, but the data are sequences"),
    ("no_such_module_xyz:f", "{name: mlp}", "data.factory: cannot import module"),
]


def _space(tmp_path, name="usertoy", *, data, model, trials=1, pruner="{name: none}",
           tracking="false"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(FACTORY_SPACE.format(name=name, data=data, model=model, trials=trials,
                                         pruner=pruner, tracking=tracking))
    return path


@pytest.mark.parametrize("data,model,message", MISTAKES,
                         ids=[f"{d.split(':')[1]}-{i}" for i, (d, _, _) in enumerate(MISTAKES)])
def test_a_factory_mistake_is_one_line_before_ray_starts(tmp_path, capsys, data, model,
                                                        message):
    import ray

    ray_before = ray.is_initialized()
    path, out = _space(tmp_path, data=data, model=model), tmp_path / "runs"
    assert main(["run", str(path), "--output", str(out), "--plain"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], \
        captured.err
    assert not out.exists()  # no run folder, no study, no trial
    assert ray.is_initialized() == ray_before  # Ray was not started for it


def test_validate_tries_the_factories_and_run_accepts_what_it_accepts(tmp_path, capsys):
    bad = _space(tmp_path, "bad", data="shaped_data:float_labels", model="{name: mlp}")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}: data.factory: ")
    good = _space(tmp_path, "good", data="shaped_data:signals",
                  model="{name: cnn1d, width: 4, depth: 1}")
    assert main(["validate", str(good)]) == 0


@pytest.mark.slow
def test_tabular_search_end_to_end_with_pruning_and_mlflow(ray_cluster, tmp_path, capsys):
    from mlflow import MlflowClient

    from search.studies import study as studies

    path = _space(tmp_path, "tabular_e2e", data="tests.trainers.shaped_data:tabular",
                  model="{name: mlp, width: 16, depth: 1}", trials=3,
                  pruner="{name: asha, grace_period: 1, reduction_factor: 2}", tracking="true")
    out = tmp_path / "runs"
    assert main(["run", str(path), "--output", str(out), "--plain", "--retries", "0",
                 "--no-stages"]) == 0, capsys.readouterr().err
    assert "test split: carved: validation 10%, test 20%" in capsys.readouterr().out
    study = studies.load_study(studies.open_storage(f"sqlite:///{out / 'study.db'}"),
                               "tabular_e2e")
    states = [t.state.name for t in study.trials]
    assert len(states) == 3 and set(states) <= {"COMPLETE", "PRUNED"} and "COMPLETE" in states
    best = study.best_trial
    assert best.value > 0.6 and best.user_attrs["test_accuracy"] > 0.6  # chance: 1/3
    assert best.user_attrs["split"] == "carved: validation 10%, test 20%"
    db = f"sqlite:///{out / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=db, registry_uri=db)
    exp = client.get_experiment_by_name("tabular_e2e")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    children = [r for r in runs if r.data.tags.get("search.key", "").startswith("trial/")]
    assert len(children) == 3
    assert all("val_accuracy" in r.data.metrics for r in children)


def test_fp16_for_trials_without_a_gpu_is_refused_before_ray(tmp_path, capsys):
    path = tmp_path / "half.yaml"
    path.write_text("name: half\ndata: {dataset: digits}\ntrain: {precision: fp16}\n"
                    "space:\n  optimizer:\n    lr: {low: 1.0e-3, high: 1.0e-2}\n"
                    "resources: {cpu: 1}\n")
    assert main(["validate", str(path)]) == 2
    assert "train.precision: fp16 needs a CUDA device, but resources.gpu is 0" in \
        capsys.readouterr().err
    assert main(["run", str(path), "--output", str(tmp_path / "runs"), "--plain"]) == 2
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_the_driver_loads_a_factorys_data_once_for_all_trials(ray_cluster, tmp_path, capsys):
    """The driver's check loads the first configuration's data; those same data go to every
    trial (Ray's object store), so a slow factory runs once per search, not twice or per trial."""
    log = tmp_path / "calls.log"
    path = _space(tmp_path, "counted", model="{name: mlp, width: 8, depth: 1}", trials=3,
                  data="tests.trainers.shaped_data:counted_tabular")
    path.write_text(path.read_text().replace("batch_size: 32}",
                                             f"batch_size: 32, kwargs: {{log: '{log}'}}}}"))
    assert main(["run", str(path), "--output", str(tmp_path / "runs"), "--plain",
                 "--no-stages"]) == 0, capsys.readouterr().err
    assert "3 complete" in capsys.readouterr().out
    assert log.read_text().splitlines() == ["loaded"]


def test_a_space_imports_its_code_from_the_folder_it_is_run_in(tmp_path, monkeypatch, capsys):
    """`search validate space.yaml` next to mydata.py finds it, as `python script.py` would; the
    folder comes last on the path, so a file there cannot shadow an installed module."""
    import sys

    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mydata_cwd.py").write_text(
        "import torch\n\ndef load():\n    g = torch.Generator().manual_seed(0)\n"
        "    x = torch.randn(120, 4, generator=g)\n    return x, (x[:, 0] > 0).long()\n")
    _space(tmp_path, "cwd_code", data="mydata_cwd:load", model="{name: mlp}")
    assert main(["validate", "cwd_code.yaml"]) == 0, capsys.readouterr().err
    assert sys.path[-1] == str(tmp_path) and "mydata_cwd" in sys.modules


def test_resume_never_imports_from_inside_the_output_folder(tmp_path, monkeypatch):
    import sys

    from search.lifecycle.usercode import importable_from_cwd

    out = tmp_path / "runs"
    (out / "run-1").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != ""])
    for inside in (out, out / "run-1"):
        monkeypatch.chdir(inside)
        importable_from_cwd(unless_inside=out)
        assert str(inside) not in sys.path
    monkeypatch.chdir(tmp_path)
    importable_from_cwd(unless_inside=out)
    assert sys.path[-1] == str(tmp_path)
