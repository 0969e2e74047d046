"""Small factory data loaded once on the driver are given to the trials whose configuration
loads the same data; any other trial loads its own."""
from __future__ import annotations

import torch

from search.tune.shared_data import data_key, share_data, shared_for
from trainers import fit
from trainers.catalog import defaults

FACTORY = {"dataset": "factory", "factory": "own_code_helpers:tiny_images",
           "kwargs": {"n": 60}, "val_fraction": 0.2, "test_fraction": 0.2}


def config(**data):
    c = defaults()
    c["data"] = {**FACTORY, **data}
    c["model"] = {"name": "mlp", "width": 8, "depth": 1}
    c["train"]["epochs"] = 1
    return c


def test_trials_loading_the_same_data_share_it_and_train_as_if_they_loaded_it():
    torch.set_num_threads(1)
    shared = share_data(config(), default_fit=True, gpu=0)
    assert shared is not None and len(shared.data.train) == 36
    same = config(batch_size=8)  # batching only: the same data
    assert shared_for(shared, same)["data"] is shared.data
    assert shared_for(shared, config(kwargs={"n": 80})) == {}  # a searched factory argument
    assert shared_for(shared, config(split_seed=1)) == {}  # another split
    assert shared_for(None, same) == {}
    own = fit(same, cpus=1)
    given = fit(same, cpus=1, **shared_for(shared, same))
    assert given.history[0]["val_accuracy"] == own.history[0]["val_accuracy"]
    assert given.test_accuracy == own.test_accuracy


def test_only_a_factorys_data_on_the_cpu_with_our_fit_is_shared():
    assert data_key(defaults()) is None  # a bundled dataset: the driver never imports torch
    assert data_key(config(kfold=3)) is None
    assert share_data(config(), default_fit=False, gpu=0) is None  # a fit of one's own
    assert share_data(config(), default_fit=True, gpu=0.5) is None  # a GPU trial loads its own
    assert share_data(None, default_fit=True, gpu=0) is None
