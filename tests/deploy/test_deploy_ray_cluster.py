"""deploy/ray-cluster.yaml: a valid Ray cluster-launcher config (checked by Ray's own schema and
validation), a CPU head and autoscaled GPU workers, file mounts that exist, setup commands that
install the package with the pinned constraints."""
from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from deploy_checks import DEPLOY, ROOT, deploy_ignored_names, load_yaml_docs, read_env_file

CONFIG_PATH = DEPLOY / "ray-cluster.yaml"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    (doc,) = load_yaml_docs(CONFIG_PATH)
    return doc


def test_ray_accepts_the_config(config: dict[str, Any]) -> None:
    # The same steps `ray up` takes before it talks to AWS: fill in defaults, then validate.
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


def test_ray_rejects_a_broken_config(config: dict[str, Any]) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    broken = copy.deepcopy(config)
    broken["head_node_type"] = "no-such-type"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(broken))


def test_head_runs_no_trials_and_workers_have_gpus(config: dict[str, Any]) -> None:
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "the head only runs the GCS, autoscaler and drivers"
    workers = {n: t for n, t in types.items() if n != config["head_node_type"]}
    assert workers
    for name, worker in workers.items():
        # GPU instance families on AWS: g (graphics/inference) and p (training).
        assert re.match(r"[gp]\d", worker["node_config"]["InstanceType"]), f"{name} is not a GPU instance"
        # Fixed size: `search run` sizes its concurrency from the cluster it finds at start.
        assert 1 <= worker["min_workers"] == worker["max_workers"] <= config["max_workers"]
    assert config["provider"]["type"] == "aws" and config["provider"]["region"]


def test_file_mounts_exist_or_are_operator_files(config: dict[str, Any]) -> None:
    ignored = deploy_ignored_names()
    for remote, local in config["file_mounts"].items():
        path = (ROOT / local).resolve()
        if path.name in ignored:  # the operator's env file: a committed example, never the file
            example = path.with_name(path.name + ".example")
            assert example.is_file(), f"{local} is git-ignored and has no {example.name} to copy"
            keys = set(read_env_file(example))
            assert {"SEARCH_STORAGE", "MLFLOW_TRACKING_URI"} <= keys
        else:
            assert path.exists(), f"file_mounts {remote}: {local} does not exist (relative to the repo)"
    assert ".gitignore" in config["rsync_filter"], "the checkout's .venv must not be synced"


def test_setup_installs_the_mounted_checkout_with_constraints(config: dict[str, Any]) -> None:
    checkout = next(r for r, local in config["file_mounts"].items() if local in (".", "./"))
    installs = [c for c in config["setup_commands"] if "pip install" in c]
    assert installs, "no setup command installs the package"
    for command in installs:
        assert f"-c {checkout}/constraints.txt" in command and f" {checkout} " in command + " "
        assert "ray[default]" in command and "boto3" in command  # dashboard/jobs, AWS autoscaler
    assert any("python install 3.11" in c for c in config["setup_commands"])


def test_start_commands_use_the_installed_ray(config: dict[str, Any]) -> None:
    head = " ".join(config["head_start_ray_commands"])
    worker = " ".join(config["worker_start_ray_commands"])
    assert "ray start --head" in head and "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "--address=$RAY_HEAD_IP:6379" in worker
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        assert "~/venv/bin/ray" in command, f"not the venv's ray: {command}"
