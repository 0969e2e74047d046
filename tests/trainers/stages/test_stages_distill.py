"""The distill stage: the loss equals its formula for every distance (computed here by hand with
other torch ops), soft targets still work for the CE part, and the stage trains a seeded
student against a frozen teacher."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import tiny_stages as ts
from tiny_stages import data_fixture  # noqa: F401 (fixtures)
from trainers.losses import ClassificationTask
from trainers.stages import DISTANCES, DistillationTask, from_checkpoint, run_stage


class Fixed(nn.Module):
    """A 'model' whose logits are given: the loss then depends on nothing else."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, x):
        return self.logits


def _by_hand(s: torch.Tensor, t: torch.Tensor, distance: str, T: float) -> torch.Tensor:
    """The per-batch distance written out element by element."""
    b, n = s.shape
    ps, pt = torch.exp(s / T), torch.exp(t / T)
    ps, pt = ps / ps.sum(1, keepdim=True), pt / pt.sum(1, keepdim=True)
    total = torch.zeros((), dtype=torch.float64)
    for i in range(b):
        if distance == "kl":
            total += (pt[i] * (pt[i].log() - ps[i].log())).sum() * T * T
        elif distance == "mse":
            total += ((s[i] - t[i]) ** 2).sum() / n
        else:  # W1 on the line 0..n-1: the mass crossing each gap k|k+1 pays 1
            gap = 0.0
            for k in range(n - 1):
                gap += abs(ps[i, :k + 1].sum() - pt[i, :k + 1].sum())
            total += gap
    return total / b


@pytest.mark.parametrize("distance", ["kl", "mse", "wasserstein"])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_the_loss_is_its_formula(distance, alpha):
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(6, 5, generator=g) * 3, torch.randn(6, 5, generator=g) * 3
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    T = 2.5
    task = DistillationTask(Fixed(t), alpha=alpha, temperature=T, distance=distance)
    out = task(Fixed(s), torch.zeros(6, 1), y)
    s64, t64 = s.double(), t.double()
    ce = -torch.log_softmax(s64, 1)[torch.arange(6), y].mean()
    expected = (1 - alpha) * ce + alpha * _by_hand(s64, t64, distance, T)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    assert torch.equal(out["output"], s)


def test_wasserstein_is_the_transport_cost_between_classes():
    far = torch.tensor([[30.0, 0, 0, 0]]), torch.tensor([[0, 0, 30.0, 0]])
    assert DISTANCES["wasserstein"](*far, 1.0).item() == pytest.approx(2.0, abs=1e-6)
    assert DISTANCES["wasserstein"](far[0], far[0], 1.0).item() == 0.0


def test_soft_targets_and_smoothing_go_to_the_ce_part():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.2, 0.2, 0.6]])
    ce = ClassificationTask(label_smoothing=0.1)
    task = DistillationTask(Fixed(t), alpha=0.4, temperature=3.0, distance="kl", ce=ce)
    out = task(Fixed(s), torch.zeros(4, 1), soft)
    q = soft * 0.9 + (1 - soft) * 0.1 / 2  # the notes' smoothing of soft targets
    expected = 0.6 * -(q * torch.log_softmax(s, 1)).sum(1).mean() + 0.4 * _by_hand(
        s.double(), t.double(), "kl", 3.0)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_no_gradient_reaches_the_teacher():
    teacher = nn.Linear(4, 3)
    task = DistillationTask(teacher, alpha=0.5, temperature=2.0, distance="kl")
    student = nn.Linear(4, 3)
    task(student, torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]))["loss"].backward()
    assert student.weight.grad is not None and teacher.weight.grad is None


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data):
    return from_checkpoint(ts.train(tmp_path_factory.mktemp("fit")), data=data)


STUDENT = {"name": "cnn", "width": 2, "depth": 1, "hidden": 8, "dropout": 0.0}


def test_distill_trains_a_seeded_student(teacher, data):
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    seen = []
    stage = ts.stage("distill", student=STUDENT, epochs=3, distance="wasserstein", seed=7)
    out = run_stage(stage, teacher, data=data, report=seen.append)
    assert [m["epoch"] for m in seen] == [1, 2, 3]
    assert out.kind == "float32" and out.config["model"]["width"] == 2
    assert out.config["train"]["seed"] == 7 and out.config["train"]["epochs"] == 3
    n_student = sum(p.numel() for p in out.model.parameters())
    assert n_student < sum(p.numel() for p in teacher.model.parameters()) / 4
    with torch.no_grad():
        accuracy = (out.model(data.test.x).argmax(1) == data.test.y).float().mean()
    assert accuracy > 0.8  # three classes: chance is 1/3
    assert all(torch.equal(v, teacher.model.state_dict()[k]) for k, v in before.items())
    again = run_stage(stage, teacher, data=data)
    other = run_stage(ts.stage("distill", student=STUDENT, epochs=3, distance="wasserstein",
                               seed=8), teacher, data=data)
    w = "blocks.0.body.0.weight"
    assert torch.equal(again.model.state_dict()[w], out.model.state_dict()[w])
    assert not torch.equal(other.model.state_dict()[w], out.model.state_dict()[w])


def test_an_int8_teacher_teaches_on_the_cpu(teacher, data):
    int8 = run_stage(ts.stage("quantize", mode="int8_static", calibration_batches=2), teacher,
                     data=data)
    out = run_stage(ts.stage("distill", student=STUDENT, epochs=1, distance="mse"), int8,
                    data=data)
    assert out.meta["teacher"] == "int8_static" and out.kind == "float32"


def test_alpha_zero_is_the_same_student_trained_from_scratch(tmp_path, teacher, data):
    """The student starts from the weights fit would build for its config and seed, so
    alpha 0 reproduces plain training exactly: what the distillation benchmark compares to."""
    from trainers import fit
    from trainers.checkpoints import load_weights
    from trainers.stages.distillation import distill_config
    stage = ts.stage("distill", student=STUDENT, epochs=2, alpha=0.0, seed=3)
    out = run_stage(stage, teacher, data=data)
    fit(distill_config(teacher.config, stage), data=data, checkpoint_dir=str(tmp_path))
    scratch = load_weights(tmp_path / "best.pt")
    assert all(torch.equal(v, scratch[k]) for k, v in out.model.state_dict().items())


def test_mixup_batches_reach_both_parts_of_the_loss(teacher, data):
    import copy
    from trainers.stages import StageModel
    config = copy.deepcopy(teacher.config)
    config["augment"].update(mixup=0.4, cutmix=0.4)
    mixed = StageModel(config, teacher.model, teacher.kind, teacher.meta)
    seen = []
    out = run_stage(ts.stage("distill", student=STUDENT, epochs=1), mixed, data=data,
                    report=seen.append)
    assert out.config["augment"]["mixup"] == 0.4 and len(seen) == 1
    assert seen[0]["train_loss"] > 0


def test_lr_scales_start_from_the_searched_lr_whatever_came_between(teacher, data):
    """finetune (lr × 0.1) → quantize → distill (lr_scale 2): the student trains at the
    searched lr × 2, not × 0.2; a second finetune also starts from the searched lr."""
    lr = teacher.config["optimizer"]["lr"]
    tuned = run_stage(ts.stage("finetune", epochs=1, lr_scale=0.1), teacher, data=data)
    assert tuned.config["optimizer"]["lr"] == pytest.approx(lr * 0.1)
    assert tuned.base_lr == pytest.approx(lr)
    again = run_stage(ts.stage("finetune", epochs=1, lr_scale=0.5), tuned, data=data)
    assert again.config["optimizer"]["lr"] == pytest.approx(lr * 0.5)
    int8 = run_stage(ts.stage("quantize", mode="int8_static", calibration_batches=2), again,
                     data=data)
    assert int8.base_lr == pytest.approx(lr)
    student = run_stage(ts.stage("distill", student=STUDENT, epochs=1, lr_scale=2.0), int8,
                        data=data)
    assert student.config["optimizer"]["lr"] == pytest.approx(lr * 2.0)
    assert student.base_lr == pytest.approx(lr * 2.0)  # a student's own lr is its base


def test_the_student_can_train_on_other_augmentation_and_scratch_gets_the_same(teacher, data):
    from trainers.stages.distillation import distill_config
    stage = ts.stage("distill", student=STUDENT, epochs=1, augment={"mixup": 0.4})
    assert teacher.config["augment"]["mixup"] == 0.0
    assert distill_config(teacher.config, stage)["augment"]["mixup"] == 0.4
    out = run_stage(stage, teacher, data=data)
    assert out.config["augment"]["mixup"] == 0.4 and teacher.config["augment"]["mixup"] == 0.0
