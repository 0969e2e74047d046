"""A run folder from someone else: payload pickles planted where pickles used to be read, and a
guard that fails any pickle, cloudpickle or full torch load of a file in the folder."""
from __future__ import annotations

import contextlib
import pickle
from pathlib import Path

# Where run folders held pickles, or Tune writes them (relative to a run folder).
PICKLE_NAMES = ("space.pkl", "tuner.pkl", "searcher-state-2026-12-06_00-00-00.pkl")


class Payload:
    """Unpickling it creates `marker`: proof that code from the folder ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(output: Path, marker: Path) -> list[Path]:
    """A payload at every old pickle path of each run folder and at every *.pkl under
    `output`; the paths written."""
    data = pickle.dumps(Payload(marker))
    paths = set(output.rglob("*.pkl"))
    for run in output.glob("run-*"):
        paths |= {run / name for name in PICKLE_NAMES}
    for path in paths:
        path.write_bytes(data)
    return sorted(paths)


@contextlib.contextmanager
def no_loads_from(output: Path, monkeypatch):
    """Fail every pickle/cloudpickle load of a file under `output` (by path, or by bytes equal
    to such a file's) and every torch.load of one without weights_only=True. Ray's own IPC
    unpickles bytes of its own, which pass."""
    import ray.cloudpickle
    import torch

    output = output.resolve()
    contents = {p.read_bytes() for p in output.rglob("*") if p.is_file()
                and p.stat().st_size < 10_000_000}
    seen: list[str] = []

    def inside(f) -> bool:
        name = getattr(f, "name", f)
        try:
            return isinstance(name, (str, Path)) and output in Path(name).resolve().parents
        except OSError:
            return False

    def guard_load(real):
        def load(f, *args, **kwargs):
            if inside(f):
                seen.append(f"load {getattr(f, 'name', f)}")
                raise AssertionError(f"unpickled a run-folder file: {f}")
            return real(f, *args, **kwargs)
        return load

    def guard_loads(real):
        def loads(data, *args, **kwargs):
            if bytes(data) in contents:
                seen.append("loads of a run-folder file's bytes")
                raise AssertionError("unpickled the bytes of a run-folder file")
            return real(data, *args, **kwargs)
        return loads

    real_torch_load = torch.load

    def torch_load(f, *args, weights_only=None, **kwargs):
        if weights_only is not True and inside(f):
            seen.append(f"torch.load {f} weights_only={weights_only}")
            raise AssertionError(f"torch.load of {f} without weights_only=True")
        return real_torch_load(f, *args, weights_only=weights_only, **kwargs)

    for module in (pickle, ray.cloudpickle):
        monkeypatch.setattr(module, "load", guard_load(module.load))
        monkeypatch.setattr(module, "loads", guard_loads(module.loads))
    monkeypatch.setattr(torch, "load", torch_load)
    yield seen
