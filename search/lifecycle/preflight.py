"""Checks a run makes on its driver before Ray starts: mistakes that would otherwise fail every
trial, one by one, minutes later on the workers.

`check_data(space)`: the data files of every dataset the space can train on are there — the
fixed `data` settings, and each choice of a searched `data.dataset` (with the settings its
branch sets, e.g. its own `root`). Only names in folders are looked at
(`trainers.datasets.check_data`), so it takes a moment whatever the dataset's size.

`check_devices(space)`: fp16 asked for trials that get no GPU.

`check_user_code(space)`: a space with a data or model factory has its first configuration (the
lowest value or first choice of every searched parameter) tried on the driver
(`trainers.preflight.check_config`): the factories imported and called, the data loaded and
split once, the model built and run on two samples. A factory's deterministic mistake is then
one line (exit 2) before Ray starts, not a failure in every trial. Spaces without user code
skip it, so their driver never imports torch.
"""
from __future__ import annotations

from typing import Any


class _Pinned:
    """Enough of an Optuna trial for `define_by_run`: every suggestion gets a fixed answer (the
    pinned value of a parameter, else its lowest value or first choice)."""

    def __init__(self, pins: dict[str, Any]) -> None:
        self.pins = pins
        self.params: dict[str, Any] = {}

    def _answer(self, name: str, default: Any) -> Any:
        self.params[name] = self.pins.get(name, default)
        return self.params[name]

    def suggest_float(self, name: str, low: float, high: float, **kw: Any) -> float:
        return self._answer(name, low)

    def suggest_int(self, name: str, low: int, high: int, **kw: Any) -> int:
        return self._answer(name, low)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._answer(name, choices[0])


def data_settings(space: Any) -> list[dict]:
    """The distinct `data` groups the space's trials can train with, as far as the files go:
    the fixed one, or one per choice of each searched `data.dataset`."""
    pins = [{}]
    for p in getattr(space, "params", None) or []:
        if getattr(p, "path", "") == "data.dataset" and getattr(p, "choices", ()):
            dist = p.distribution
            pins += [{p.name: choice} for choice in getattr(dist, "choices", ())]
    out: list[dict] = []
    for pin in pins:
        try:
            data = space.define_by_run(_Pinned(pin)).get("data")
        except Exception:  # a combination the space does not allow: nothing to check there
            continue
        if data is not None and data not in out:
            out.append(data)
    if not out and isinstance(getattr(space, "fixed", None), dict):
        out.append(space.fixed.get("data") or {})
    return out


def has_files(data: dict) -> bool:
    """Whether the dataset of a `data` group reads files (its catalog variant has a `root`): the
    bundled ones and factories do not, and need no check, nor torch on the driver for one."""
    from trainers.catalog import DATA

    variant = DATA.variants.get(data.get("dataset", DATA.options["dataset"].default))
    return variant is None or "root" in variant  # an unknown name: the check says so


def check_data(space: Any) -> None:
    """TrainerError (one line: data.root, the files expected) when a dataset the space can
    train on has no files (a bundled dataset or a factory has none to check)."""
    for data in data_settings(space):
        if data and has_files(data):
            from trainers.datasets import check_data as check

            check(data)


def check_devices(space: Any) -> None:
    """UserError when a setting needs a GPU that no trial gets: fp16 (loss scaling) with
    resources.gpu 0 (Ray hides every GPU from such a trial)."""
    from search.errors import UserError

    if space.resources.gpu or not isinstance(getattr(space, "fixed", None), dict):
        return
    values = {(space.fixed.get("train") or {}).get("precision")}
    for p in getattr(space, "params", None) or []:
        if getattr(p, "path", "") == "train.precision":
            values |= set(getattr(getattr(p, "distribution", None), "choices", ()) or ())
    if "fp16" in values:
        raise UserError("train.precision: fp16 needs a CUDA device, but resources.gpu is 0, so "
                        "every trial trains on a CPU; use fp32 or bf16, or give trials a GPU")


def uses_user_code(config: dict) -> bool:
    """Whether a config trains on a data factory or a model factory."""
    data, model = config.get("data") or {}, config.get("model") or {}
    return data.get("dataset") == "factory" or model.get("name") == "factory"


def first_config(space: Any) -> dict | None:
    """The space's first configuration (each parameter at its lowest value or first choice),
    None when the space is not one of the trainer's settings (a --fit of one's own)."""
    try:
        config = space.define_by_run(_Pinned({}))
    except Exception:
        return None
    return config if isinstance(config, dict) else None


def check_user_code(space: Any) -> dict | None:
    """TrainerError (one line) when the space's first configuration fails with its user code;
    what was found (input shape, classes, split sizes) otherwise, None without user code."""
    config = first_config(space)
    if config is None or not uses_user_code(config):
        return None
    from trainers.preflight import check_config

    return check_config(config)
