from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR

from trainers.catalog import SCHEDULER
from trainers.schedules import SCHEDULERS, Schedule

torch.set_num_threads(1)
LR, EPOCHS, STEPS = 0.1, 7, 3


def _optimizer(lr: float = LR) -> torch.optim.Optimizer:
    return torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=lr)


def _lrs(cfg: dict, epochs: int = EPOCHS, steps: int = STEPS, val_losses=None):
    """lrs[e][s]: the lr used by optimiser step s of epoch e."""
    opt = _optimizer()
    schedule = Schedule(opt, cfg, [steps] * epochs)
    out = []
    for e in range(epochs):
        row = []
        for _ in range(steps):
            row.append(schedule.lr)
            opt.step()
            schedule.step_batch()
        out.append(row)
        schedule.step_epoch(None if val_losses is None else val_losses[e])
    return out


FORMULAS = {  # lr of epoch e (0-based) of a schedule spanning E epochs
    "none": ({}, lambda e, E: LR),
    "step": ({"step_size": 2, "gamma": 0.5}, lambda e, E: LR * 0.5 ** (e // 2)),
    "exponential": ({"gamma": 0.8}, lambda e, E: LR * 0.8 ** e),
    "cosine": ({"eta_min": 0.01},
               lambda e, E: 0.01 + (LR - 0.01) * (1 + math.cos(math.pi * e / E)) / 2),
    "time": ({"decay": 0.5}, lambda e, E: LR / (1 + 0.5 * e)),
}


def test_registry_matches_catalog():
    assert set(SCHEDULERS) == set(SCHEDULER.variants)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_epoch_schedules_follow_their_formulas(name):
    extra, formula = FORMULAS[name]
    lrs = _lrs({"name": name, **extra})
    for e, row in enumerate(lrs):
        assert row == pytest.approx([formula(e, EPOCHS)] * STEPS, rel=1e-9)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_warmup_then_the_schedule_over_the_remaining_epochs(name):
    extra, formula = FORMULAS[name]
    w, f = 2, 0.1
    lrs = _lrs({"name": name, "warmup_epochs": w, "warmup_start_factor": f, **extra})
    warm = [lr for row in lrs[:w] for lr in row]
    assert warm == pytest.approx([LR * (f + (1 - f) * s / (w * STEPS))
                                  for s in range(w * STEPS)])
    for e, row in enumerate(lrs[w:]):
        assert row == pytest.approx([formula(e, EPOCHS - w)] * STEPS, rel=1e-9)


def _torch_onecycle(total: int, **kw) -> list[float]:
    opt = _optimizer()
    ref = OneCycleLR(opt, max_lr=LR, total_steps=total, cycle_momentum=False, **kw)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    return out


def test_onecycle_is_torchs_stepped_per_optimiser_step():
    cfg = {"name": "onecycle", "pct_start": 0.3, "div_factor": 10.0, "final_div_factor": 100.0,
           "anneal": "linear"}
    flat = [lr for row in _lrs(cfg) for lr in row]
    assert flat == pytest.approx(_torch_onecycle(EPOCHS * STEPS, pct_start=0.3, div_factor=10.0,
                                                 final_div_factor=100.0,
                                                 anneal_strategy="linear"))
    assert flat[0] == pytest.approx(LR / 10) and 0.9 * LR < max(flat) <= LR


def test_onecycle_after_warmup_spans_the_remaining_steps():
    flat = [lr for row in _lrs({"name": "onecycle", "warmup_epochs": 1}) for lr in row]
    assert flat[:STEPS] == pytest.approx([LR * (0.1 + 0.9 * s / STEPS) for s in range(STEPS)])
    assert flat[STEPS:] == pytest.approx(_torch_onecycle((EPOCHS - 1) * STEPS, pct_start=0.25))


@pytest.mark.parametrize("pct_start, epochs, steps", [(0.25, 1, 4), (0.25, 2, 2), (0.1, 5, 2)])
def test_onecycle_whose_rise_is_one_step_starts_at_its_peak(pct_start, epochs, steps):
    """torch's OneCycleLR divides by zero when pct_start × total steps is exactly 1 (the
    default 0.25 on 4 steps: one epoch of a 4-batch table); such a rise starts at the peak."""
    flat = [lr for row in _lrs({"name": "onecycle", "pct_start": pct_start}, epochs, steps)
            for lr in row]
    assert flat[0] == pytest.approx(LR, rel=1e-2) and flat == sorted(flat, reverse=True)


def test_plateau_drops_by_factor_after_patience_epochs():
    # Improving for 3 epochs, then flat: epochs 4 and 5 are the two bad epochs patience allows,
    # the third bad one (epoch 6, 1-based) cuts the lr for epoch 7.
    losses = [3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    lrs = _lrs({"name": "plateau", "factor": 0.5, "patience": 2}, val_losses=losses)
    assert [row[0] for row in lrs] == pytest.approx([LR] * 6 + [LR * 0.5])


def test_plateau_composes_with_warmup():
    losses = [9.0, 9.0, 3.0, 2.0, 2.0, 2.0, 2.0]  # warmup epochs' losses are not watched
    lrs = _lrs({"name": "plateau", "factor": 0.5, "patience": 1, "warmup_epochs": 2},
               val_losses=losses)
    assert lrs[0][0] == pytest.approx(LR * 0.1)
    assert [row[0] for row in lrs[2:]] == pytest.approx([LR, LR, LR, LR, LR * 0.5])


def test_warmup_spans_uneven_epochs():
    opt = _optimizer()
    schedule = Schedule(opt, {"name": "none", "warmup_epochs": 2, "warmup_start_factor": 0.5},
                        [4, 2, 1])
    seen = []
    for steps in (4, 2, 1):
        for _ in range(steps):
            seen.append(schedule.lr)
            schedule.step_batch()
        schedule.step_epoch(1.0)
    assert seen == pytest.approx([LR * (0.5 + 0.5 * s / 6) for s in range(6)] + [LR])


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_state_dict_resumes_the_same_sequence(name):
    cfg = {"name": name, "warmup_epochs": 1}
    losses = [3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    full = _lrs(cfg, val_losses=losses)
    opt = _optimizer()
    schedule = Schedule(opt, cfg, [STEPS] * EPOCHS)
    for e in range(3):
        for _ in range(STEPS):
            opt.step()
            schedule.step_batch()
        schedule.step_epoch(losses[e])
    opt2 = _optimizer()
    resumed = Schedule(opt2, cfg, [STEPS] * EPOCHS)
    opt2.load_state_dict(opt.state_dict())
    resumed.load_state_dict(schedule.state_dict())
    rest = []
    for e in range(3, EPOCHS):
        rest.append([])
        for _ in range(STEPS):
            rest[-1].append(resumed.lr)
            opt2.step()
            resumed.step_batch()
        resumed.step_epoch(losses[e])
    assert rest == full[3:]
