from __future__ import annotations

import pytest
import torch
from torch import nn

from trainers.catalog import OPTIMIZER
from trainers.errors import TrainerError
from trainers.optim import OPTIMIZERS, create_optimizer, optimizer_kwargs, split_decay

torch.set_num_threads(1)


def test_registry_matches_catalog():
    assert set(OPTIMIZERS) == set(OPTIMIZER.variants)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_catalog_option_reaches_the_optimizer(name):
    info = OPTIMIZERS[name]
    assert set(info.kwargs) == set(OPTIMIZER.variants[name])
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    opt = create_optimizer(model, {"name": name, "lr": 0.01})
    assert isinstance(opt, info.opt_class)
    defaults = {k: o.default for k, o in OPTIMIZER.options_for(name).items()}
    for key, torch_key in info.kwargs.items():
        expected = defaults[key]
        assert opt.defaults[torch_key] == (tuple(expected) if isinstance(expected, list)
                                           else expected)
    loss = model(torch.randn(5, 4)).pow(2).mean()
    loss.backward()
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_optimizer_kwargs_is_pure_and_maps_keys():
    cfg = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}
    kwargs = optimizer_kwargs(cfg)
    assert cfg == {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}
    assert kwargs == {"lr": 0.1, "weight_decay": 1e-4, "momentum": 0.9, "nesterov": True,
                      "dampening": 0.0}
    assert optimizer_kwargs({"name": "adam", "betas": [0.8, 0.99]})["betas"] == (0.8, 0.99)


def test_wrong_optimizer_settings_are_one_line_errors():
    with pytest.raises(TrainerError, match="did you mean 'sgd'"):
        optimizer_kwargs({"name": "sgdd"})
    with pytest.raises(TrainerError, match="optimizer.momentum.*adam"):
        optimizer_kwargs({"name": "adam", "momentum": 0.9})
    with pytest.raises(TrainerError, match="nesterov.*momentum > 0"):
        optimizer_kwargs({"name": "sgd", "nesterov": True})


def test_no_weight_decay_on_biases_and_norms():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(),
                          nn.Linear(4, 2))
    opt = create_optimizer(model, {"name": "adamw", "weight_decay": 0.05})
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    plain = {id(p) for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decayed == {id(model[0].weight), id(model[3].weight)}
    assert plain == {id(model[0].bias), id(model[1].weight), id(model[1].bias),
                     id(model[3].bias)}
    assert [p.ndim for p in split_decay(model)[0]] == [4, 2]


def _one_adam_step(name: str, w0: torch.Tensor, g: torch.Tensor, lr: float, wd: float):
    """One step on loss = <g, w> (gradient g) of a bias-free linear layer."""
    layer = nn.Linear(w0.shape[1], w0.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(w0)
    opt = create_optimizer(layer, {"name": name, "lr": lr, "weight_decay": wd})
    (layer.weight * g).sum().backward()
    opt.step()
    return layer.weight.detach()


def test_decoupled_and_coupled_weight_decay_follow_their_formulas():
    torch.manual_seed(0)
    w0, g = torch.randn(3, 4), torch.randn(3, 4) * 1e-2
    lr, wd, eps = 0.01, 0.5, 1e-8
    # Adam + weight_decay (coupled L2): the decay enters the gradient, then the Adam step.
    # First step, bias-corrected: m_hat = g', v_hat = g'^2, so the step is lr*g'/(|g'|+eps).
    coupled = _one_adam_step("adam", w0, g, lr, wd)
    g_l2 = g + wd * w0
    torch.testing.assert_close(coupled, w0 - lr * g_l2 / (g_l2.abs() + eps))
    # AdamW (decoupled): w <- w (1 - lr*wd), then the Adam step of the plain gradient.
    decoupled = _one_adam_step("adamw", w0, g, lr, wd)
    torch.testing.assert_close(decoupled, w0 * (1 - lr * wd) - lr * g / (g.abs() + eps))
    assert (coupled - decoupled).abs().max() > 1e-3


def test_sgd_weight_decay_is_the_l2_gradient():
    torch.manual_seed(1)
    w0, g = torch.randn(2, 3), torch.randn(2, 3)
    layer = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(w0)
    opt = create_optimizer(layer, {"name": "sgd", "lr": 0.1, "weight_decay": 0.2})
    (layer.weight * g).sum().backward()
    opt.step()
    torch.testing.assert_close(layer.weight.detach(), w0 - 0.1 * (g + 0.2 * w0))
