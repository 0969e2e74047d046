"""A data factory's small table loaded once, on the driver, and handed to every trial through
Ray's object store (`tune.with_parameters`).

A trial of `trainers.fit` otherwise calls the user's factory itself, in every trial process:
on small data that costs more than the training. The wine example's `load` imports
scikit-learn, which imports SciPy's statistics: about 4 s of CPU per trial process, against
a fifth of a second for twenty epochs of its MLP. Shared only when it is safe and cheap:
the run trains with `trainers.fit` on the CPU, the data come from a factory the driver calls
anyway (search/lifecycle/preflight.py checks it), all three splits are tensors in memory of
at most SHARE_MAX_BYTES, and no k-fold. A trial whose configuration changes what is loaded
(a searched `data.kwargs`, a searched split) has another key and loads its own, as before.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SHARE_MAX_BYTES = 64 * 2 ** 20  # the object store of a local Ray holds 512 MB (connect.py)
# Data settings that only batch what was loaded: trials differing in them share the data.
BATCHING = ("batch_size", "batch_size_max", "batch_size_double_every", "num_workers")


@dataclass(frozen=True)
class SharedData:
    key: str  # data_key of the configuration it was loaded for
    data: Any  # trainers.datasets.Data


def data_key(config: dict) -> str | None:
    """What a configuration's loaded data depend on (its resolved data group less the batching
    settings), or None when its data are not shared (not a factory's, or k-fold)."""
    from trainers.settings import resolve_group

    data = resolve_group("data", (config or {}).get("data"))
    if data.get("dataset") != "factory" or (data.get("kfold") or 0) > 1:
        return None
    kept = {k: v for k, v in data.items() if k not in BATCHING}
    return json.dumps(kept, sort_keys=True, default=repr)


def in_memory_bytes(data: Any) -> int | None:
    """The bytes of the three splits' tensors, or None when a split is not held in memory."""
    total = 0
    for split in (data.train, data.val, data.test):
        tensors = [getattr(split, n, None) for n in ("stored", "y", "indices")]
        if tensors[0] is None:
            return None  # read through a DataLoader
        total += sum(t.numel() * t.element_size() for t in tensors if t is not None)
    return total


def share_data(config: dict | None, *, default_fit: bool, gpu: float,
               loaded: Any = None) -> SharedData | None:
    """The data of `config` (the space's first configuration) loaded here to share, or None;
    `loaded`: those data already loaded by the driver's check (preflight), not loaded again."""
    if config is None or not default_fit or gpu:
        return None
    key = data_key(config)
    if key is None:
        return None
    from trainers.datasets import load_data

    data = loaded if loaded is not None else load_data(config["data"], device="cpu")
    size = in_memory_bytes(data)
    return SharedData(key, data) if size is not None and size <= SHARE_MAX_BYTES else None


def shared_for(shared: SharedData | None, config: dict) -> dict:
    """The `data` keyword for a trial's fit: the shared data when they are its own."""
    if shared is None or data_key(config) != shared.key:
        return {}
    return {"data": shared.data}
