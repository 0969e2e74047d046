"""A user's data factory: what it may return, checked, turned into a `Source`.

`data: {dataset: factory, factory: "pkg.mod:fn", kwargs: {...}}` calls fn(**kwargs), which returns

* one pool, split by `load_data` (seeded, stratified): `(samples, labels)` (tensors, numpy
  arrays, pandas frames or columns) or a torch Dataset (or list) of `(sample, label)`;
* or its own parts: a mapping (or an object with attributes) `train`, `test` and optionally `val`,
  each `(samples, labels)` or a Dataset. The test part is the test split; a missing `val` is
  carved from `train` (seeded by data.split_seed, stratified).

Samples are N×F rows, N×C×L sequences or N×C×H×W images (`sources.from_tensors`). Every mistake
(a generator, a class, a dict without the parts, a table returned alone, float or string labels,
labels of one class, object arrays, lengths that do not match, parts of different shapes, a
Dataset that raises) is one TrainerError line naming `data.factory`. Pure
torch, so a search's driver calls it before any trial starts (search/lifecycle/preflight.py).
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .errors import TrainerError
from .sources import SHAPES, Source, from_tensors

PARTS = ("train", "val", "test")
_EXPECTED = ("(samples, labels), a torch Dataset of (sample, label) pairs, or a mapping of "
             "train, test (and optionally val) parts, each one of those")


def as_sample(x: Any, where: str, i: int) -> Tensor:
    """One sample as a float tensor: a PIL or uint8 image (H×W or C×H×W) scaled to [0, 1], or
    float features F, a sequence C×L, an image C×H×W as they are."""
    from PIL import Image
    if isinstance(x, Image.Image):
        from torchvision.transforms.functional import pil_to_tensor
        x = pil_to_tensor(x)
    try:
        x = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TrainerError(f"{where}: sample {i} is not a tensor ({type(x).__name__}): "
                           f"{err}") from err
    if x.dtype == torch.uint8 and x.dim() in (2, 3):
        return (x.unsqueeze(0) if x.dim() == 2 else x).float() / 255.0
    if x.dim() not in (1, 2, 3) or not x.is_floating_point():
        raise TrainerError(f"{where}: sample {i} must be float features F, a float sequence "
                           f"C×L, an image C×H×W or a uint8/PIL image, got {x.dtype} of shape "
                           f"{tuple(x.shape)}")
    return x.float()


class _Items(Dataset):
    """A user's Dataset with its samples checked and brought to (float sample, int label)."""

    def __init__(self, ds: Any, where: str, shape: tuple[int, ...]) -> None:
        self.ds, self.where, self.shape = ds, where, shape

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x, y = self.ds[i]
        x = as_sample(x, self.where, i)
        if tuple(x.shape) != self.shape:
            raise TrainerError(f"{self.where}: sample {i} has shape {tuple(x.shape)}, sample 0 "
                               f"has {self.shape}; all samples must have one shape")
        return x, int(y)


class _Joined(Dataset):
    """Several item datasets one after the other (the parts a factory returned)."""

    def __init__(self, parts: list[Dataset]) -> None:
        self.parts = parts
        self.starts = [0]
        for p in parts:
            self.starts.append(self.starts[-1] + len(p))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, i: int):
        for k, p in enumerate(self.parts):
            if i < self.starts[k + 1]:
                return p[i - self.starts[k]]
        raise IndexError(i)


def _array(value: Any) -> Any:
    """A pandas (or polars) frame or column as its numpy array; anything else as it is."""
    to_numpy = getattr(value, "to_numpy", None)
    if not callable(to_numpy) or isinstance(value, Tensor):
        return value
    array = to_numpy()
    writeable = getattr(getattr(array, "flags", None), "writeable", True)
    return array if writeable else array.copy()  # torch shares memory with what it converts


def _no_string_labels(labels: Any, where: str) -> None:
    """TrainerError when the labels are names rather than class indices."""
    try:
        first = labels[0] if len(labels) else None
    except Exception:  # noqa: BLE001 - not a sequence: the tensor check says what it is
        return
    if isinstance(first, (str, bytes)):
        raise TrainerError(f"{where}: the labels are strings ({str(first)!r}, ...); map "
                           "them to class indices 0..C-1 (e.g. sklearn.preprocessing."
                           "LabelEncoder) and keep the names for your own reports")


def _failing(where: str, what: str, err: Exception) -> TrainerError:
    text = str(err).strip().splitlines()
    return TrainerError(f"{where}: {what}: {type(err).__name__}"
                        f"{': ' + text[0] if text else ''}")


def _labels(labels: Tensor, n: int, where: str) -> Tensor:
    if labels.dtype == torch.bool:  # a binary task's labels: False is class 0, True class 1
        labels = labels.long()
    if labels.dim() != 1 or len(labels) != n or labels.is_floating_point() \
            or labels.dtype in (torch.complex64, torch.complex128):
        raise TrainerError(f"{where}: labels must be a 1-D integer tensor of {n} labels, got "
                           f"{labels.dtype} of shape {tuple(labels.shape)}")
    if n == 0 or int(labels.min()) < 0:
        raise TrainerError(f"{where}: labels must be non-empty class indices >= 0")
    return labels.long()


def _from_dataset(ds: Any, where: str) -> Source:
    try:
        n = len(ds)
    except TypeError as err:
        raise TrainerError(f"{where}: the Dataset has no len(): {err}") from err
    if n == 0:
        raise TrainerError(f"{where} returned an empty Dataset")
    try:
        first = ds[0]
    except Exception as err:  # noqa: BLE001 - the user's Dataset: whatever it raises
        raise _failing(where, "reading sample 0 of the Dataset failed", err) from err
    if not isinstance(first, (tuple, list)) or len(first) != 2:
        raise TrainerError(f"{where}: the Dataset must yield (sample, label) pairs, got "
                           f"{type(first).__name__} for sample 0")
    shape = tuple(as_sample(first[0], where, 0).shape)
    targets = getattr(ds, "targets", None)
    if targets is not None and len(targets) == n:
        raw = _array(targets)
    else:  # one pass over the samples to stratify
        raw = []
        for i in range(n):
            try:
                raw.append(_array(ds[i][1]))
            except Exception as err:  # noqa: BLE001 - the user's Dataset
                raise _failing(where, f"reading sample {i} of the Dataset failed", err) \
                    from err
    _no_string_labels(raw, where)
    try:
        raw = torch.as_tensor(raw)
    except (TypeError, ValueError, RuntimeError) as err:
        raise _failing(where, "the Dataset's labels are not class indices", err) from err
    labels = _labels(raw, n, where)
    n_classes = max(int(labels.max()) + 1, len(getattr(ds, "classes", None) or []))
    return Source(labels=labels, num_classes=n_classes, shape=shape,
                  dataset=_Items(ds, where, shape))


def _one(out: Any, where: str) -> Source:
    """One pool or part: (samples, labels) or a Dataset."""
    if inspect.isclass(out):
        raise TrainerError(f"{where} returned {_kind(out)}; expected {_EXPECTED}")
    if isinstance(out, (tuple, list)) and len(out) != 2 and out \
            and isinstance(out[0], (tuple, list)) and len(out[0]) == 2:
        return _from_dataset(out, where)  # a list of (sample, label) pairs
    if isinstance(out, (tuple, list)):
        if len(out) != 2:
            raise TrainerError(f"{where} returned a {type(out).__name__} of {len(out)} items; "
                               f"expected (samples, labels)")
        x, y = _array(out[0]), _array(out[1])
        _no_string_labels(y, where)
        try:
            x, y = torch.as_tensor(x), torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError, LookupError) as err:
            raise TrainerError(f"{where}: (samples, labels) are not numeric tensors or arrays "
                               f"(object arrays are not): {err}") from err
        if x.dim() == 0 or len(x) != (len(y) if y.dim() else -1):
            raise TrainerError(f"{where}: {len(x) if x.dim() else 0} samples but "
                               f"{len(y) if y.dim() else 0} labels; expected one label per "
                               f"sample")
        return from_tensors(x, _labels(y, len(x), where), where)
    if callable(getattr(out, "to_numpy", None)) and hasattr(out, "columns"):
        raise TrainerError(f"{where} returned a {type(out).__name__} (a table); return "
                           "(features, labels), e.g. (df.drop(columns='label').to_numpy("
                           "'float32'), df['label'].to_numpy())")
    if isinstance(out, Dataset) or (hasattr(out, "__getitem__") and hasattr(out, "__len__")
                                    and not isinstance(out, (str, bytes, Mapping))):
        return _from_dataset(out, where)
    raise TrainerError(f"{where} returned {_kind(out)}; expected {_EXPECTED}")


def _kind(out: Any) -> str:
    if inspect.isclass(out):
        return f"the class {out.__name__} (return an instance of it)"
    if inspect.isgenerator(out) or (hasattr(out, "__next__") and not hasattr(out, "__len__")):
        return "a generator/iterator (it has no length; return a list, tensors or a Dataset)"
    if isinstance(out, Mapping):
        return f"a mapping with keys {sorted(map(str, out))}"
    return type(out).__name__


def _parts_of(out: Any) -> dict[str, Any] | None:
    """The parts a factory returned, or None for one pool."""
    if isinstance(out, Mapping):
        return dict(out)
    if not isinstance(out, (tuple, list, Dataset)) and not inspect.isclass(out) \
            and all(hasattr(out, k) for k in ("train", "test")):
        return {k: getattr(out, k) for k in PARTS if hasattr(out, k)}
    return None


def _join(sources: dict[str, Source], where: str) -> Source:
    shapes = {k: s.shape for k, s in sources.items()}
    if len(set(shapes.values())) > 1:
        raise TrainerError(f"{where}: the parts have different sample shapes "
                           f"{', '.join(f'{k} {v}' for k, v in shapes.items())}")
    scales = {s.scale for s in sources.values()}
    given, start = {}, 0
    for k, s in sources.items():
        given[k] = torch.arange(start, start + len(s.labels))
        start += len(s.labels)
    labels = torch.cat([s.labels for s in sources.values()])
    first = next(iter(sources.values()))
    n_classes = max(s.num_classes for s in sources.values())
    if all(s.images is not None for s in sources.values()):
        same = len(scales) == 1 and len({s.images.dtype for s in sources.values()}) == 1
        images = torch.cat([s.images if same else s.images.float() / s.scale
                            for s in sources.values()])
        return Source(labels=labels, num_classes=n_classes, shape=first.shape, images=images,
                      scale=first.scale if same else 1.0, given=given, split="given")
    joined = _Joined([s.item_dataset() for s in sources.values()])
    return Source(labels=labels, num_classes=n_classes, shape=first.shape, dataset=joined,
                  given=given, split="given")


def check_factory_output(out: Any, spec: str) -> Source:
    """The Source of what the factory `spec` returned, or one TrainerError line saying what is
    wrong with it."""
    where = f"data.factory: {spec}"
    parts = _parts_of(out)
    if parts is None:
        return _two_classes(_one(out, where), where)
    if any(k not in PARTS for k in parts) or "train" not in parts or "test" not in parts:
        raise TrainerError(f"{where} returned parts {sorted(map(str, parts))}; expected the "
                           f"parts train, test and optionally val (or one pool: (samples, "
                           f"labels) or a Dataset)")
    sources = {k: _one(parts[k], f"{where} (part {k!r})") for k in PARTS if k in parts}
    _two_classes(sources["train"], f"{where} (part 'train')")
    return _join(sources, where)


def _two_classes(source: Source, where: str) -> Source:
    """The source, unless its labels hold one class: a classifier of one class learns nothing
    and scores 100%, which a search would report as its best."""
    found = torch.unique(source.labels)
    if len(found) < 2:
        raise TrainerError(f"{where}: every sample has label {int(found[0])}; classification "
                           "needs at least two classes")
    return source


def load_factory(cfg: dict) -> Source:
    """Call the data factory of `cfg` (the resolved `data` group) and check what it returned."""
    from .settings import call_factory, import_factory
    spec = cfg["factory"]
    fn = import_factory(spec, "data.factory")
    return check_factory_output(call_factory(fn, spec, "data.factory", **cfg["kwargs"]), spec)


__all__ = ["PARTS", "SHAPES", "as_sample", "check_factory_output", "load_factory"]
