"""What a cluster run ships of the user's own code (search/cluster/shipping.py): found on the driver,
ours and installed packages left out, run folders excluded, mistakes in one line."""
from __future__ import annotations

from pathlib import Path

import pytest

from search.cluster import shipping
from search.errors import UserError


def space_tree(data: str, model: str) -> dict:
    return {"name": "s", "data": {"dataset": "factory", "factory": data},
            "model": {"name": "factory", "factory": model, "kwargs": {"hidden": 3}},
            "space": {"model": {"name": {"choices": {"mlp": {}, "factory": {
                "factory": "branchmod:make"}}}}},
            "stages": [{"stage": "distill", "student": {"factory": "studentmod:make"}}],
            "fit": "fitmod.train:fit"}


def test_every_reference_in_the_space_and_the_fit_option_is_found_once():
    refs = shipping.references(space_tree("datamod:load", "datamod:model"), "cli.mod:fit")
    assert refs == [("--fit", "cli.mod:fit"), ("data.factory", "datamod:load"),
                    ("model.factory", "datamod:model"),
                    ("space.model.name.choices.factory.factory", "branchmod:make"),
                    ("stages[0].student.factory", "studentmod:make"), ("fit", "fitmod.train:fit")]


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """A package `upkg` (with a run folder and a checkpoint inside) and a module `umod.py` on
    the driver's path."""
    (tmp_path / "upkg" / "runs").mkdir(parents=True)
    (tmp_path / "upkg" / "__init__.py").write_text("")
    (tmp_path / "upkg" / "models.py").write_text("def make(**kw):\n    return None\n")
    (tmp_path / "upkg" / "runs" / "trial.bin").write_bytes(b"\0" * 4000)
    (tmp_path / "upkg" / "best.pt").write_bytes(b"\0" * 4000)
    (tmp_path / "umod.py").write_text("def load():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_user_packages_and_modules_are_shipped_ours_and_installed_ones_are_not(user_code):
    tree = space_tree("umod:load", "upkg.models:make")
    tree["space"] = {}
    tree["stages"] = [{"factory": "spaces.examples.wine:make_model"}]  # ours: on the nodes
    tree["fit"] = "numpy:zeros"  # installed in the interpreter
    assert shipping.modules_to_ship(tree, "upkg.models:make") == [
        str((user_code / "upkg").resolve()), str((user_code / "umod.py").resolve())]
    assert shipping.module_location("x", "json:loads") is None  # the standard library


def test_run_folders_and_checkpoints_do_not_count_nor_travel(user_code):
    size = shipping.shipped_size(user_code / "upkg")
    assert size == sum(len((user_code / "upkg" / f).read_bytes())
                       for f in ("__init__.py", "models.py"))
    assert {"runs/", "*.pt"} <= set(shipping.EXCLUDES)


def test_a_package_too_big_to_ship_is_one_line(user_code):
    (user_code / "upkg" / "table.npy").write_bytes(b"\0" * 5000)  # data inside: it travels
    tree = space_tree("umod:load", "upkg.models:make")
    tree["space"], tree["stages"], tree["fit"] = {}, [], None
    with pytest.raises(UserError) as err:
        shipping.modules_to_ship(tree, None, max_bytes=1000)
    text = str(err.value)
    assert text.startswith("model.factory: upkg.models:make: ") and "\n" not in text
    assert "to ship to the cluster's workers" in text and "install the package" in text


def test_a_module_the_driver_cannot_find_is_one_line():
    with pytest.raises(UserError) as err:
        shipping.modules_to_ship(space_tree("no_such_mod_xyz:load", "spaces:x"), None)
    assert str(err.value).startswith(
        "data.factory: module 'no_such_mod_xyz' of 'no_such_mod_xyz:load' is not importable "
        "here, so it cannot be shipped to the cluster's workers")


def test_only_a_cluster_run_outside_a_job_gets_a_runtime_env(user_code, monkeypatch):
    tree = space_tree("umod:load", "spaces:x")
    tree["space"], tree["stages"], tree["fit"] = {}, [], "upkg.models:make"
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert shipping.runtime_env(tree, None, None) is None  # a local Ray shares our path
    env = shipping.runtime_env(tree, None, "10.0.0.1:6379")
    assert env == {"py_modules": [str((user_code / "umod.py").resolve()),
                                  str((user_code / "upkg").resolve())],
                   "excludes": shipping.EXCLUDES}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", '{"runtime_env": {}}')
    assert shipping.runtime_env(tree, None, "10.0.0.1:6379") is None  # the job shipped it


def test_a_job_gets_packages_as_py_modules_and_single_files_in_its_working_dir(user_code,
                                                                                tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    tree = space_tree("umod:load", "upkg.models:make")
    tree["space"], tree["stages"], tree["fit"] = {}, [], None
    env = shipping.job_runtime_env(tree, None, job)
    assert env["working_dir"] == str(job) and env["py_modules"] == [
        str((user_code / "upkg").resolve())]
    assert (job / "umod.py").read_text() == (user_code / "umod.py").read_text()
