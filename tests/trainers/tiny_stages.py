"""Shared pieces of the stage tests: a small CNN trained by trainers.fit on the tiny band data
(a real best.pt), and stage settings validated by the space language, as a search passes them."""
from __future__ import annotations

import pytest
import torch
import yaml

from spaces import load_space
from tiny_training import tiny_config, tiny_data
from trainers import fit
from trainers.stages import from_checkpoint

torch.set_num_threads(1)

MODEL = {"name": "cnn", "width": 8, "depth": 2, "hidden": 16, "dropout": 0.0}


def data():
    return tiny_data(384, size=8)


def train(folder, *, model: dict | None = None, epochs: int = 4, **groups) -> str:
    """best.pt of a small CNN trained on `data()` (100% accurate in 4 epochs)."""
    cfg = tiny_config(model=model or MODEL, train={"epochs": epochs},
                      optimizer={"lr": 0.01}, augment={"shift": 0}, **groups)
    fit(cfg, data=data(), checkpoint_dir=str(folder))
    return str(folder / "best.pt")


def stage(name: str, **options) -> dict:
    """One stage exactly as `Space.stages` holds it (validated, defaults filled)."""
    text = yaml.safe_dump({"name": "t", "stages": [{"stage": name, **options}]})
    return load_space(text).stages[0].as_dict()


def outputs(model, split, n: int = 64) -> torch.Tensor:
    with torch.no_grad():
        return model(split.x[:n])


# Module-scoped fixtures the stage tests import (`from tiny_stages import data_fixture, ...`):
# the tiny data, and the stage model of a CNN trained on it.
@pytest.fixture(scope="module", name="data")
def data_fixture():
    return data()


@pytest.fixture(scope="module", name="trained")
def trained_fixture(tmp_path_factory, data):
    return from_checkpoint(train(tmp_path_factory.mktemp("fit")), data=data)
