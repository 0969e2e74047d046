"""measure: accuracy as evaluate computes it, parameters, size of the saved state_dict, and
latencies timed with the thread count asked for (and the previous one restored)."""
from __future__ import annotations

import io

import pytest
import torch

import tiny_stages as ts
from tiny_stages import data_fixture, trained_fixture  # noqa: F401 (fixtures)
from trainers.loop import evaluate
from trainers.models import count_parameters
from trainers.stages import measure, run_stage
from trainers.stages.measurement import count_params, deployable, time_forward
from trainers.stages.quantization import quiet

KEYS = {"test_accuracy", "val_accuracy", "params", "size_bytes", "latency_ms_b1",
        "latency_ms_b64", "throughput_b64", "latency_ms_b1_eager", "latency_ms_b64_eager",
        "timed_torchscript"}


def _saved_bytes(model) -> int:
    buf = io.BytesIO()
    with quiet():
        torch.save(model.state_dict(), buf)
    return len(buf.getvalue())


def test_measure_a_float_model(trained, data):
    torch.set_num_threads(2)
    m = measure(trained, data, threads=1, repeats=5)
    assert torch.get_num_threads() == 2  # restored
    assert set(m) == KEYS
    cpu = torch.device("cpu")
    assert m["test_accuracy"] == evaluate(trained.model, data.test, cpu)[1] == 1.0
    assert m["val_accuracy"] == evaluate(trained.model, data.val, cpu)[1]
    assert m["params"] == count_parameters(trained.model)
    assert m["size_bytes"] == _saved_bytes(trained.model)
    assert 0 < m["latency_ms_b1"] < m["latency_ms_b64"] < 1000
    assert m["throughput_b64"] == pytest.approx(64e3 / m["latency_ms_b64"])


def test_measure_every_kind(trained, data):
    float_params = count_parameters(trained.model)
    bn = sum(p.numel() for n, p in trained.model.named_parameters() if ".body.1." in n)
    for mode in ("float16", "int8_dynamic", "int8_static"):
        sm = run_stage(ts.stage("quantize", mode=mode, **(
            {"calibration_batches": 2} if mode == "int8_static" else {})), trained, data=data)
        m = measure(sm, data, repeats=3)
        assert m["test_accuracy"] >= 0.95 and m["size_bytes"] == _saved_bytes(sm.model)
        assert m["latency_ms_b1"] > 0 and m["throughput_b64"] > 0
        assert m["timed_torchscript"] == 1.0 and m["latency_ms_b1_eager"] > 0
        # int8 static folds each BatchNorm (scale and shift: 2 per channel) into its
        # convolution, which gains a bias (1 per channel)
        assert m["params"] == (float_params - bn // 2 if mode == "int8_static"
                               else float_params)
    assert count_params(sm.model) == m["params"]


def test_time_forward_counts_only_timed_passes():
    calls = []
    model = torch.nn.Identity()
    model.register_forward_hook(lambda *a: calls.append(1))
    times = time_forward(model, torch.zeros(1), repeats=4, warmup=2)
    assert len(times) == 4 and len(calls) == 6 and all(t >= 0 for t in times)


@pytest.mark.parametrize("mode", [None, "float16", "int8_dynamic", "int8_static"])
def test_every_kind_is_timed_as_a_frozen_torchscript_that_computes_the_same(trained, data, mode):
    sm = trained if mode is None else run_stage(ts.stage("quantize", mode=mode, **(
        {"calibration_batches": 2} if mode == "int8_static" else {})), trained, data=data)
    x = next(iter(data.test))[0][:3] if not hasattr(data.test, "x") else data.test.x[:3]
    shipped, form = deployable(sm.model.eval(), x.float())
    assert form == "torchscript" and isinstance(shipped, torch.jit.ScriptModule)
    with torch.no_grad():
        got, want = shipped(x.float()), sm.model(x.float())
    # freezing folds BatchNorm into the convolutions: in half precision that rounds differently
    assert torch.allclose(got, want, atol=2e-2 if mode == "float16" else 1e-4), (got - want).abs().max()


class NotTraceable(torch.nn.Module):
    """Returns a Python number beside the logits: torch.jit.trace refuses such outputs."""

    def forward(self, x):
        return x.flatten(1), 1.0


def test_a_model_that_cannot_be_traced_is_timed_eagerly():
    model = NotTraceable()
    shipped, form = deployable(model, torch.zeros(2, 1, 4, 4))
    assert form == "eager" and shipped is model
