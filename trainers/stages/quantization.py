"""The quantize stage: float16, int8 dynamic and int8 static post-training quantisation.

- float16: the weights in half precision inside a wrapper that casts the float inputs to half
  and the logits back to float, so every kind takes and returns float32 tensors.
- int8_dynamic: `quantize_dynamic` on the Linear layers (int8 per-channel weights, activations
  quantised on the fly). Convolutions stay float, so a CNN barely shrinks (STACK.md).
- int8_static: post-training static quantisation: weights per channel (the backend's default
  qconfig: x86, fbgemm and onednn are per-channel, qnnpack per-tensor), activation scales
  calibrated on `calibration_batches` training batches (seeded, not augmented), conv+bn(+relu)
  fused. torch 2.14.1 still ships FX graph mode (`torch.ao.quantization.quantize_fx`), which
  traces the model and fuses generically, so it is used; where it is missing or cannot trace a
  model, eager mode (QuantWrapper, `fuse_modules` on Conv/BN/ReLU runs of Sequentials) is the
  fallback. PT2E, the successor, lives in torchao, which is not installed. Convolutions whose
  padding mode the quantised kernels lack (replicate, circular) stay float in FX mode.
Both torch.ao APIs are deprecated in torch 2.14.1; their deprecation warnings are silenced
(`quiet`, in model.py) and one note is kept in the model's meta instead. Quantised kernels run
on the CPU with the engine (`backend`) the model was converted with; it is set when quantising,
loading and measuring.
"""
from __future__ import annotations

import copy
import os
from typing import Callable

import torch
from torch import Tensor, nn

from ..batches import iterate_batches
from ..errors import TrainerError
from ..layers import DropConnectLinear
from .finetuning import KNNClassifier, load_stage_data
from .model import StageModel, quiet

NOTE = ("int8 through torch.ao.quantization ({api} mode), deprecated in torch 2.14.1 in favour "
        "of torchao's PT2E (not installed); its deprecation warnings are silenced")
QUANTIZED_PADDING = ("zeros", "reflect")


def set_engine(backend: str) -> None:
    if backend not in torch.backends.quantized.supported_engines:
        raise TrainerError(f"quantize.backend: engine {backend!r} is not available in this "
                           f"torch build (available: "
                           f"{', '.join(torch.backends.quantized.supported_engines)})")
    torch.backends.quantized.engine = backend


class Float16Model(nn.Module):
    """Half-precision weights; float32 inputs and logits."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner.half()

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x.half()).float()


class Flatten(nn.Module):
    """nn.Flatten as a call of torch.flatten, which FX keeps in the quantised domain (it
    dequantises around an nn.Flatten module, and the float copy costs time at batch 1)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(x, self.start_dim, self.end_dim)


def quantisable(model: nn.Module) -> nn.Module:
    """DropConnectLinear -> nn.Linear (the same at inference: the quantisers map exact types),
    nn.Flatten -> Flatten; neither has state of its own, so the state_dict keys stay."""
    for name, child in model.named_children():
        if isinstance(child, DropConnectLinear):
            linear = nn.Linear(child.in_features, child.out_features, child.bias is not None)
            linear.load_state_dict(child.state_dict())
            setattr(model, name, linear)
        elif type(child) is nn.Flatten:
            setattr(model, name, Flatten(child.start_dim, child.end_dim))
        else:
            quantisable(child)
    return model


# ------------------------------------------------------------------------------- the modes
def to_float16(model: nn.Module, backend: str | None = None, batches=None) -> nn.Module:
    return Float16Model(model)


def to_int8_dynamic(model: nn.Module, backend: str, batches=None) -> nn.Module:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    model = quantisable(model)
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise TrainerError("quantize int8_dynamic: quantises Linear layers only and this model "
                           "has none; use mode int8_static")
    set_engine(backend)
    with quiet():
        return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig},
                                dtype=torch.qint8)


def _cheap_observers(mapping):
    """The same mapping with MinMax instead of histogram observers: the same converted
    structure without the histogram's parameter search (~0.1 s per layer), for rebuilding a
    saved model whose scales come from its state_dict."""
    from torch.ao.quantization import HistogramObserver, MinMaxObserver, QConfig

    def cheap(qconfig):
        act = getattr(qconfig, "activation", None)
        if getattr(getattr(act, "p", None), "func", None) is not HistogramObserver:
            return qconfig
        return QConfig(activation=MinMaxObserver.with_args(**act.p.keywords),
                       weight=qconfig.weight)

    mapping.global_qconfig = cheap(mapping.global_qconfig)
    for key, qconfig in list(mapping.object_type_qconfigs.items()):
        mapping.object_type_qconfigs[key] = cheap(qconfig)
    return mapping


def _fx_static(model: nn.Module, backend: str, batches: list[Tensor],
               minmax: bool = False) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    mapping = get_default_qconfig_mapping(backend)
    if minmax:
        mapping = _cheap_observers(mapping)
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.padding_mode not in QUANTIZED_PADDING:
            mapping.set_module_name(name, None)  # no quantised kernel: stays float
    prepared = prepare_fx(model, mapping, example_inputs=(batches[0],))
    with torch.no_grad():
        for x in batches:
            prepared(x)
    return convert_fx(prepared)


_FUSABLE = ((nn.Conv2d, nn.BatchNorm2d, nn.ReLU), (nn.Conv2d, nn.BatchNorm2d),
            (nn.Conv2d, nn.ReLU), (nn.Linear, nn.BatchNorm1d), (nn.Linear, nn.ReLU),
            (nn.BatchNorm2d, nn.ReLU))


def fuse_sequentials(model: nn.Module) -> nn.Module:
    """Eager mode: fuse every Conv/BN/ReLU (and Linear/BN, Linear/ReLU) run in a Sequential."""
    from torch.ao.quantization import fuse_modules
    groups = []
    for prefix, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        kids, i = list(seq.children()), 0
        while i < len(kids):
            for pattern in _FUSABLE:
                run = kids[i:i + len(pattern)]
                if len(run) == len(pattern) and all(type(m) is t for m, t in zip(run, pattern)):
                    groups.append([f"{prefix}.{j}" if prefix else str(j)
                                   for j in range(i, i + len(pattern))])
                    i += len(pattern) - 1
                    break
            i += 1
    return fuse_modules(model, groups, inplace=True) if groups else model


def _eager_static(model: nn.Module, backend: str, batches: list[Tensor],
                  minmax: bool = False) -> nn.Module:
    from torch.ao.quantization import QuantWrapper, convert, get_default_qconfig, prepare
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.padding_mode not in QUANTIZED_PADDING:
            raise TrainerError(f"quantize int8_static: padding_mode {m.padding_mode!r} has no "
                               "quantised convolution in eager mode")
    wrapped = QuantWrapper(fuse_sequentials(model))
    wrapped.qconfig = get_default_qconfig(backend)
    prepare(wrapped, inplace=True)
    with torch.no_grad():
        for x in batches:
            wrapped(x)
    return convert(wrapped, inplace=True)


STATIC_APIS: dict[str, Callable[..., nn.Module]] = {
    "fx": _fx_static, "eager": _eager_static}


def _gist(err: Exception, limit: int = 160) -> str:
    """The first sentence of torch's (often very long) message."""
    text = (str(err).strip().splitlines() or [""])[0].split(". ")[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _fx_available() -> bool:
    try:
        import torch.ao.quantization.quantize_fx  # noqa: F401
    except ImportError:
        return False
    return True


def to_int8_static(model: nn.Module, backend: str, batches: list[Tensor],
                   api: str | None = None, minmax: bool = False) -> tuple[nn.Module, str]:
    """(the quantised model, the API that made it): FX first, eager as the fallback. A kNN
    model is quantised in its features; the vote over the bank stays float."""
    if isinstance(model, KNNClassifier):
        q, used = to_int8_static(model.features, backend, batches, api, minmax)
        return KNNClassifier(q, model.bank, model.labels, model.k, model.num_classes), used
    set_engine(backend)
    apis = [api] if api else (["fx", "eager"] if _fx_available() else ["eager"])
    reasons = []
    for name in apis:
        try:
            with quiet():
                q = STATIC_APIS[name](quantisable(copy.deepcopy(model)).eval(), backend,
                                      batches, minmax)
                with torch.no_grad():
                    q(batches[0])  # fails here rather than in the first user's forward
            return q, name
        except TrainerError as err:
            reasons.append(f"{name}: {err}")
        except Exception as err:  # tracing and conversion raise many kinds
            reasons.append(f"{name}: {type(err).__name__}: {_gist(err)}")
    raise TrainerError("quantize int8_static: this model cannot be quantised (" +
                       "; ".join(reasons) + "); use mode float16 or int8_dynamic")


# ------------------------------------------------------------------------------- the stage
def calibration_batches(data, cfg: dict, count: int) -> list[Tensor]:
    """The first `count` batches of a seeded shuffle of the training split, on the CPU."""
    g = torch.Generator(data.train.device).manual_seed(cfg["train"]["seed"])
    out = []
    for x, _ in iterate_batches(data.train, cfg["data"]["batch_size"], shuffle=True,
                                generator=g, device="cpu"):
        out.append(x)
        if len(out) == count:
            break
    return out


def _float16(model: nn.Module, stage: dict, cfg: dict, data) -> tuple[nn.Module, dict]:
    return to_float16(model), {}


def _int8_dynamic(model: nn.Module, stage: dict, cfg: dict, data) -> tuple[nn.Module, dict]:
    return to_int8_dynamic(model, stage["backend"]), {"backend": stage["backend"],
                                                      "api": "dynamic"}


def _int8_static(model: nn.Module, stage: dict, cfg: dict, data) -> tuple[nn.Module, dict]:
    if data is None:
        data = load_stage_data(cfg)
    batches = calibration_batches(data, cfg, stage["calibration_batches"])
    q, api = to_int8_static(model, stage["backend"], batches)
    return q, {"backend": stage["backend"], "api": api,
               "calibration_images": sum(len(x) for x in batches)}


# mode -> f(float model, stage, config, data) -> (quantised model, what the step records)
MODES: dict[str, Callable[[nn.Module, dict, dict, object], tuple[nn.Module, dict]]] = {
    "float16": _float16, "int8_dynamic": _int8_dynamic, "int8_static": _int8_static}


def quantize(stage: dict, previous: StageModel, *, data=None, cpus: int | None = None,
             report=None) -> StageModel:
    if previous.kind != "float32":
        raise TrainerError(f"quantize: the previous stage's model is already "
                           f"{previous.kind}; quantize a float32 model (one quantize stage)")
    mode, cfg = stage["mode"], previous.config
    if mode not in MODES:
        raise TrainerError(f"quantize.mode: expected one of {', '.join(MODES)}, got {mode!r}")
    torch.set_num_threads(int(cfg["train"]["threads"] or cpus or os.cpu_count() or 1))
    q, step = MODES[mode](copy.deepcopy(previous.model).cpu().eval(), stage, cfg, data)
    step = {"op": mode, **step}
    meta = {"dims": previous.dims, "steps": list(previous.meta.get("steps", [])) + [step],
            "notes": list(previous.meta.get("notes", [])), "base_lr": previous.base_lr}
    if "api" in step:
        meta["notes"].append(NOTE.format(api=step["api"]))
        meta["backend"] = step["backend"]
    return StageModel(cfg, q.eval(), mode, meta)


# -------------------------------------------------------------------- rebuilding for load
def _rebuild_static(model: nn.Module, step: dict, dims: dict) -> nn.Module:
    """The same structure, calibrated on noise: the saved state_dict supplies every value.
    (Not on zeros: the histogram observer's search takes seconds on a constant input.)"""
    shape = (2, dims["in_channels"], *dims["image_size"])
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    q, _ = to_int8_static(model.eval(), step["backend"], [x], step["api"], minmax=True)
    return q


REBUILD: dict[str, Callable[[nn.Module, dict, dict], nn.Module]] = {
    "float16": lambda model, step, dims: to_float16(model),
    "int8_dynamic": lambda model, step, dims: to_int8_dynamic(model.eval(), step["backend"]),
    "int8_static": _rebuild_static,
}
