"""The quantize stage: outputs close to the float model's for every mode, int8 static much
smaller on disk, calibration on the stage's batches, FX graph mode with the eager fallback, every
registry model convertible, and clear errors for what cannot be quantised."""
from __future__ import annotations

import warnings

import pytest
import torch

import tiny_stages as ts
from tiny_stages import data_fixture, trained_fixture  # noqa: F401 (fixtures)
from trainers.errors import TrainerError
from trainers.loop import resolve_config
from trainers.models import MODELS
from trainers.stages import run_stage
from trainers.stages.measurement import state_size
from trainers.stages.model import build_float
from trainers.stages.quantization import to_int8_static

DIMS = {"in_channels": 1, "num_classes": 3, "image_size": (8, 8)}


def _close(float_model, q_model, data, tolerance: float) -> None:
    x = data.test.x
    with torch.no_grad():
        ref, out = float_model(x), q_model(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    agreement = (ref.argmax(1) == out.argmax(1)).float().mean().item()
    error = ((out - ref).abs().max() / ref.abs().max()).item()
    assert agreement >= 0.95 and error < tolerance, (agreement, error)


@pytest.mark.parametrize("mode, tolerance", [("float16", 0.01), ("int8_dynamic", 0.05),
                                             ("int8_static", 0.1)])
def test_quantised_outputs_stay_close(trained, data, mode, tolerance):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the torch.ao deprecation chatter is silenced
        out = run_stage(ts.stage("quantize", mode=mode), trained, data=data)
        _close(trained.model, out.model, data, tolerance)
    assert out.kind == mode and out.config == trained.config
    assert out.meta["steps"][-1]["op"] == mode
    assert trained.kind == "float32"  # the previous stage's model is not changed
    assert next(trained.model.parameters()).dtype == torch.float32


def test_int8_static_details(trained, data):
    out = run_stage(ts.stage("quantize", calibration_batches=3), trained, data=data)
    step = out.meta["steps"][-1]
    assert step == {"op": "int8_static", "backend": "x86", "api": "fx",
                    "calibration_images": 3 * trained.config["data"]["batch_size"]}
    assert out.meta["backend"] == "x86" and "deprecated" in out.meta["notes"][-1]
    names = {type(m).__name__ for m in out.model.modules()}
    assert "ConvReLU2d" in names  # conv + bn + relu fused into one quantised op
    assert not any(n.startswith("BatchNorm") for n in names)
    conv = next(m for m in out.model.modules() if type(m).__name__ == "ConvReLU2d")
    assert conv.weight().qscheme() == torch.per_channel_affine  # per-channel weights


def test_int8_static_is_much_smaller_on_disk():
    cfg = resolve_config({"model": {"name": "cnn", "width": 32, "hidden": 128}})
    model = build_float(cfg, {**DIMS, "image_size": (16, 16)}).eval()
    x = torch.randn(8, 1, 16, 16)
    q, _ = to_int8_static(model, "x86", [x])
    assert state_size(model) / state_size(q) > 3.5


def test_the_eager_fallback(trained, data):
    q, api = to_int8_static(trained.model, "x86", [data.train.x[:64]], api="eager")
    assert api == "eager"
    _close(trained.model, q, data, 0.1)


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"factory"}))
def test_every_registry_model_converts(name):
    dims = {**DIMS, "image_size": (16,)} if name == "cnn1d" else DIMS  # cnn1d: sequences
    model = build_float(resolve_config({"model": {"name": name}}), dims).eval()
    x = torch.randn(4, 1, *dims["image_size"], generator=torch.Generator().manual_seed(0))
    q, api = to_int8_static(model, "x86", [x], minmax=True)  # the structure, fast
    with torch.no_grad():
        assert api == "fx" and q(x).shape == (4, 3)


def test_padding_without_a_quantised_kernel_stays_float(trained):
    cfg = resolve_config({"model": {"name": "cnn", "width": 4, "padding_mode": "replicate"}})
    model = build_float(cfg, DIMS).eval()
    x = torch.randn(8, 1, 8, 8)
    q, api = to_int8_static(model, "x86", [x])
    with torch.no_grad():
        assert api == "fx" and torch.allclose(q(x), model(x), atol=0.05 * model(x).abs().max())


def test_what_cannot_be_quantised(trained, data, user_module):
    int8 = run_stage(ts.stage("quantize", mode="int8_dynamic"), trained, data=data)
    with pytest.raises(TrainerError, match="quantize: the previous stage's model is already "
                                           "int8_dynamic"):
        run_stage(ts.stage("quantize"), int8, data=data)
    name = user_module("""
        import torch
        class Branchy(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = torch.nn.Linear(64, 3), torch.nn.Linear(64, 3)
            def forward(self, x):  # control flow on values: FX cannot trace it
                x = x.flatten(1)
                return self.a(x) if x.sum() > 0 else self.b(x)
        def make(in_channels, num_classes):
            return Branchy()
    """)
    cfg = resolve_config({"model": {"name": "factory", "factory": f"{name}:make"}})
    model = build_float(cfg, DIMS).eval()
    with pytest.raises(TrainerError) as err:
        to_int8_static(model, "x86", [torch.randn(4, 1, 8, 8)])
    msg = str(err.value)
    assert msg.startswith("quantize int8_static: this model cannot be quantised (fx: ")
    assert "; eager: " in msg and msg.endswith("use mode float16 or int8_dynamic")
    assert "\n" not in msg
