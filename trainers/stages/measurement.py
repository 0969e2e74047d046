"""What the stage table reports for a model: accuracy, parameters, size on disk, CPU latency.

- test/val accuracy on the data's test/validation splits (argmax of the logits; the CPU);
- params: the weights and biases of the model (for int8 modules, their packed weights and
  biases, so a conv+bn fused by quantisation counts as one conv); a kNN head's feature bank is
  data, not parameters;
- size_bytes: the bytes `torch.save(model.state_dict())` writes (everything the stage file
  needs to restore the model, bank included);
- latency: the median of `repeats` timed forward passes (after warm-up, under inference_mode)
  of batch 1 and batch 64 test images, with `torch.set_num_threads(threads)` (the previous
  thread count restored after); throughput_b64 = 64 / the batch-64 median, in images/s.
  Every kind is timed in the form it ships in (`deployable`: traced by TorchScript and
  frozen, as the registry stores int8 models), so the kinds compare in one execution mode: in
  eager mode the Python wrappers of torch.ao's quantised modules cost ~0.3-0.5 ms per call, as
  much as a small CNN's whole batch-1 forward, and hide what int8 does. The eager timings are
  kept too (`*_eager`); `timed_torchscript` is 1.0 when the main figures are TorchScript's.
"""
from __future__ import annotations

import io
import statistics
import time
import warnings

import torch
from torch import Tensor, nn

from ..batches import iterate_batches
from ..loop import evaluate
from .model import StageModel
from .quantization import quiet, set_engine

CPU = torch.device("cpu")


def count_params(model: nn.Module) -> int:
    """Parameters, plus the weights and biases held inside quantised modules."""
    total = sum(p.numel() for p in model.parameters())
    for m in model.modules():
        weight = getattr(m, "weight", None)
        if callable(weight) and not isinstance(weight, torch.Tensor):  # quantised: a method
            w, b = m.weight(), m.bias()
            total += w.numel() + (b.numel() if b is not None else 0)
    return total


def state_size(model: nn.Module) -> int:
    buf = io.BytesIO()
    with quiet():
        torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def time_forward(model: nn.Module, x: Tensor, repeats: int, warmup: int = 3) -> list[float]:
    """Wall times in ms of `repeats` forward passes of `x` (after `warmup` untimed ones)."""
    times = []
    with torch.inference_mode(), quiet():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return times


def deployable(model: nn.Module, x: Tensor) -> tuple[nn.Module, str]:
    """(the model traced on `x` and frozen, "torchscript"), or (the model, "eager") where
    tracing fails (a user's module with data-dependent control flow, say)."""
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # TracerWarnings, and torch 2.14's deprecation of trace and freeze in favour of
            # torch.compile/export (which do not take int8 torch.ao modules)
            warnings.simplefilter("ignore")
            traced = torch.jit.freeze(torch.jit.trace(model, x))
            traced(x)
        return traced, "torchscript"
    except Exception:  # tracing raises many kinds; eager timings are still right
        return model, "eager"


def sample_batch(data, n: int) -> Tensor:
    """The first `n` test images (repeated when the test split is smaller), on the CPU."""
    x, _ = next(iterate_batches(data.test, n, shuffle=False, device=CPU))
    while len(x) < n:
        x = torch.cat([x, x])[:n]
    return x.contiguous()


def measure(sm: StageModel, data, *, threads: int = 1, repeats: int = 20) -> dict:
    model = sm.model.eval()
    if sm.meta.get("backend"):
        set_engine(sm.meta["backend"])
    with quiet():
        _, test_accuracy = evaluate(model, data.test, CPU)
        _, val_accuracy = evaluate(model, data.val, CPU)
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    timed, forms = {}, set()
    try:
        for n in (1, 64):
            x = sample_batch(data, n)
            shipped, form = deployable(model, x)
            forms.add(form)
            timed[f"latency_ms_b{n}"] = statistics.median(time_forward(shipped, x, repeats))
            timed[f"latency_ms_b{n}_eager"] = (
                timed[f"latency_ms_b{n}"] if shipped is model else
                statistics.median(time_forward(model, x, repeats)))
    finally:
        torch.set_num_threads(previous)
    return {"test_accuracy": test_accuracy, "val_accuracy": val_accuracy,
            "params": count_params(model), "size_bytes": state_size(model), **timed,
            "throughput_b64": 64e3 / timed["latency_ms_b64"],
            "timed_torchscript": float(forms == {"torchscript"})}
