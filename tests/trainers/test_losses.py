from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainers.errors import TrainerError
from trainers.losses import (ClassificationTask, penalized_weights, penalty, smooth,
                             smoothed_targets, soft_cross_entropy, temperature_at)

torch.set_num_threads(1)


def test_notes_formula_true_class_one_minus_s_others_s_over_n_minus_1():
    t = smoothed_targets(torch.tensor([2, 0]), 5, 0.1, "notes")
    assert t[0].tolist() == pytest.approx([0.025, 0.025, 0.9, 0.025, 0.025])
    assert t[1].tolist() == pytest.approx([0.9, 0.025, 0.025, 0.025, 0.025])
    assert t.sum(1).tolist() == pytest.approx([1.0, 1.0])


def test_torch_formula_spreads_s_over_all_classes():
    t = smoothed_targets(torch.tensor([1]), 4, 0.2, "torch")
    assert t[0].tolist() == pytest.approx([0.05, 0.85, 0.05, 0.05])  # 1-s+s/n, s/n


def test_torch_formula_equals_torchs_builtin_loss():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 5), torch.randint(0, 5, (6,))
    ours = soft_cross_entropy(logits, smoothed_targets(y, 5, 0.2, "torch"))
    torch.testing.assert_close(ours, F.cross_entropy(logits, y, label_smoothing=0.2))


def test_smoothing_of_soft_targets_keeps_them_distributions():
    q = torch.tensor([[0.3, 0.7, 0.0, 0.0]])
    for formula in ("notes", "torch"):
        assert smooth(q, 0.1, formula).sum().item() == pytest.approx(1.0)
    assert smooth(q, 0.1, "notes")[0].tolist() == pytest.approx(
        [0.3 * 0.9 + 0.7 * 0.1 / 3, 0.7 * 0.9 + 0.3 * 0.1 / 3, 0.1 / 3, 0.1 / 3])


def test_unknown_formula_is_a_trainer_error():
    with pytest.raises(TrainerError, match="smoothing_formula"):
        ClassificationTask(0.1, "timm")


class _Fixed(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits


@pytest.mark.parametrize("formula", ["notes", "torch"])
def test_classification_task_loss_and_temperature(formula):
    torch.manual_seed(1)
    logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    task = ClassificationTask(0.1, formula)
    out = task(_Fixed(logits), torch.zeros(4, 1), y, temperature=2.0)
    q = smoothed_targets(y, 3, 0.1, formula)
    expected = -(q * torch.log_softmax(logits / 2.0, 1)).sum(1).mean()
    torch.testing.assert_close(out["loss"], expected)
    assert out["output"] is logits  # the raw logits: accuracy is not affected by T


def test_classification_task_takes_soft_targets():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    soft = torch.tensor([[0.6, 0.4], [0.25, 0.75]])
    out = ClassificationTask(0.0)(_Fixed(logits), torch.zeros(2, 1), soft)
    torch.testing.assert_close(out["loss"], -(soft * torch.log_softmax(logits, 1)).sum(1).mean())


def test_temperature_schedule_values():
    assert temperature_at(3.0, "constant", 0.01, 0.1) == 3.0
    assert temperature_at(3.0, "lr", 0.1, 0.1) == pytest.approx(3.0)  # at peak lr: T
    assert temperature_at(3.0, "lr", 0.05, 0.1) == pytest.approx(2.0)  # 1 + (T-1) * 1/2
    assert temperature_at(3.0, "lr", 0.0, 0.1) == pytest.approx(1.0)  # lr gone: T -> 1
    assert temperature_at(1.0, "lr", 0.05, 0.1) == 1.0


def test_l1_and_l2_penalties_over_weights_only():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0]]))
        model[0].bias.fill_(100.0)
        model[1].weight.fill_(100.0)
    weights = penalized_weights(model)
    assert len(weights) == 1 and weights[0] is model[0].weight
    assert penalty(weights, l1=0.1).item() == pytest.approx(0.1 * 3.5)
    assert penalty(weights, l2=0.2).item() == pytest.approx(0.2 / 2 * (1 + 4 + 0.25))
    assert penalty(weights, l1=0.1, l2=0.2).item() == pytest.approx(0.35 + 0.525)
    assert penalty(weights) is None


def test_l1_penalty_gradient_is_alpha_sign_w():
    w = nn.Parameter(torch.tensor([[1.5, -0.5]]))
    penalty([w], l1=0.3).backward()
    assert w.grad[0].tolist() == pytest.approx([0.3, -0.3])
