"""Training-time augmentation: batch-wise tensor ops on the training device.

Each step of the registry `AUGMENTATIONS` is keyed by the `augment` option that turns it on and
works on a whole normalised batch (B, C, H, W images; B, C, L sequences; B, F rows) at once. Per-sample random values come from a
torch.Generator on the batch's device, the few per-batch scalars (mixing) from a CPU one, so a
seed gives the same batches every run and a GPU batch never waits for the host. The steps run
in the registry's order: geometry, colour, cutout, mixing, noise.

Each step declares what it assumes (`AugmentStep.images`: geometry on an image; `.unit_range`:
raw values in [0, 1]); `check_augment` refuses a step turned on for data that break it, naming
the option, before training starts. `shift` left at null is 2 on images and off otherwise, so
the defaults never touch other data.

Notes on the semantics:
- shift pads by `shift` pixels of black (raw value 0, as torchvision's RandomCrop(padding)) and
  crops back at a random offset per sample, i.e. a random translation of up to `shift` pixels.
- colour jitter works on raw pixel values in [0, 1] (un-normalised with the data's mean/std and
  normalised again), with torchvision's factor ranges, in a fixed order: brightness, contrast,
  saturation, hue. Saturation and hue need three channels (an error on other images).
- cutout erases a `cutout_size` square (clipped at the border) centred anywhere in the image,
  to 0 in normalised units, i.e. to the dataset mean.
- mixup and cutmix draw lambda ~ Beta(alpha, alpha) once per batch and pair each sample with a
  random other one; labels become soft targets mixed by lambda (cutmix: by the pasted area), so
  they sum to one. With both on, each mixed batch uses one of the two, chosen with equal odds;
  a batch is mixed with probability `mix_prob`. The per-batch scalars come from a numpy
  generator seeded from the CPU torch generator (torch's Beta sampler takes no generator).
- noise adds N(0, noise^2) to the normalised inputs.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import TrainerError
from .settings import resolve_group

# op(x, y, g, host): g draws per-sample values on the batch's device (no host sync on a GPU),
# host (a CPU generator) the few per-batch scalars that decide shapes (mixing).
Op = Callable[[Tensor, Tensor, torch.Generator, torch.Generator], tuple[Tensor, Tensor]]
_GRAY = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Context:
    """What the steps need to know about the data."""

    channels: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    shape: tuple[int, ...] = ()  # one sample's (C, H, W), (C, L) or (F,); () = an image
    value_range: tuple[float, float] = (0.0, 1.0)  # raw (min, max) of the training split

    @property
    def is_image(self) -> bool:
        return len(self.shape) in (0, 3)


@dataclass(frozen=True)
class AugmentStep:
    name: str  # the augment option that turns the step on
    make: Callable[[dict, Context], Op | None]  # None: off for this config and data
    images: bool = False  # image geometry: only for N×C×H×W data
    unit_range: bool = False  # clamps raw values to [0, 1]: only for data within [0, 1]
    rgb: bool = False  # needs three channels


def _rand(x: Tensor, g: torch.Generator, low: float = 0.0, high: float = 1.0) -> Tensor:
    """One uniform number per sample, shaped (B, 1, ...) to broadcast over the sample."""
    u = torch.rand(x.shape[0], generator=g, device=x.device, dtype=x.dtype)
    return (low + (high - low) * u).view(-1, *([1] * (x.dim() - 1)))


@functools.lru_cache(maxsize=64)
def _channels(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
    """Per-channel constants shaped (1, C, 1, 1), made once per device: a fresh host-to-GPU copy
    in every batch would make the host wait for the GPU."""
    return torch.tensor(values, dtype=dtype, device=device).view(1, -1, 1, 1)


def _flip(dim: int) -> Callable[[dict, Context], Op | None]:
    key = "hflip" if dim == -1 else "vflip"

    def make(cfg: dict, ctx: Context) -> Op | None:
        p = float(cfg[key])
        if p <= 0.0:
            return None

        def op(x, y, g, host):
            return torch.where(_rand(x, g) < p, x.flip(dim), x), y
        return op
    return make


def shift_of(cfg: dict, ctx: Context) -> int:
    """The shift in pixels: null is 2 on images and off on other data."""
    if cfg["shift"] is None:
        return 2 if ctx.is_image else 0
    return int(cfg["shift"])


def _shift(cfg: dict, ctx: Context) -> Op | None:
    s = shift_of(cfg, ctx)
    if s <= 0:
        return None
    black = tuple(-m / sd for m, sd in zip(ctx.mean, ctx.std))

    def op(x, y, g, host):
        b, c, h, w = x.shape
        padded = _channels(black, x.device, x.dtype).expand(b, c, h + 2 * s, w + 2 * s).clone()
        padded[:, :, s:s + h, s:s + w] = x
        dy = torch.randint(0, 2 * s + 1, (b, 1, 1), generator=g, device=x.device)
        dx = torch.randint(0, 2 * s + 1, (b, 1, 1), generator=g, device=x.device)
        rows = dy + torch.arange(h, device=x.device).view(1, h, 1)
        cols = dx + torch.arange(w, device=x.device).view(1, 1, w)
        index = (rows * (w + 2 * s) + cols).view(b, 1, h * w).expand(b, c, h * w)
        return padded.flatten(2).gather(2, index).view(b, c, h, w), y
    return op


def _colour(key: str, jitter: Callable[[Tensor, Tensor], Tensor]):
    """A ColorJitter step on raw pixels: factor per sample, then clamp to [0, 1]."""

    def make(cfg: dict, ctx: Context) -> Op | None:
        m = float(cfg[key])
        if m <= 0.0:
            return None
        low, high = (-m, m) if key == "hue" else (max(0.0, 1.0 - m), 1.0 + m)

        def op(x, y, g, host):
            mean, std = _channels(ctx.mean, x.device, x.dtype), _channels(ctx.std, x.device,
                                                                          x.dtype)
            raw = jitter(x * std + mean, _rand(x, g, low, high)).clamp(0.0, 1.0)
            return (raw - mean) / std, y
        return op
    return make


def _gray(raw: Tensor) -> Tensor:
    if raw.shape[1] == 1:
        return raw
    return (raw * _channels(_GRAY, raw.device, raw.dtype)).sum(1, keepdim=True)


def _brightness(raw: Tensor, f: Tensor) -> Tensor:
    return raw * f


def _contrast(raw: Tensor, f: Tensor) -> Tensor:
    return f * raw + (1.0 - f) * _gray(raw).mean((1, 2, 3), keepdim=True)


def _saturation(raw: Tensor, f: Tensor) -> Tensor:
    return f * raw + (1.0 - f) * _gray(raw)


def _hue(raw: Tensor, shift: Tensor) -> Tensor:
    h, s, v = _rgb_to_hsv(raw.clamp(0.0, 1.0)).unbind(1)
    h = torch.remainder(h + shift.view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(h, s, v)


def _rgb_to_hsv(rgb: Tensor) -> Tensor:
    r, g, b = rgb.unbind(1)
    maxc, minc = rgb.amax(1), rgb.amin(1)
    delta = maxc - minc
    flat = delta == 0
    sat = delta / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    d = torch.where(flat, torch.ones_like(delta), delta)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(flat, torch.zeros_like(h), torch.remainder(h / 6.0, 1.0))
    return torch.stack((h, sat, maxc), 1)


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    # For sector i the (r, g, b) are picked from (v, p, q, t) as in colorsys.hsv_to_rgb.
    table = {0: (v, t, p), 1: (q, v, p), 2: (p, v, t), 3: (p, q, v), 4: (t, p, v), 5: (v, p, q)}
    out = torch.zeros(h.shape[0], 3, *h.shape[1:], dtype=h.dtype, device=h.device)
    for k, rgb in table.items():
        out = torch.where((i == k).unsqueeze(1), torch.stack(rgb, 1), out)
    return out


def _cutout(cfg: dict, ctx: Context) -> Op | None:
    p, size = float(cfg["cutout"]), int(cfg["cutout_size"])
    if p <= 0.0:
        return None

    def op(x, y, g, host):
        b, _, h, w = x.shape
        cy = torch.randint(0, h, (b, 1), generator=g, device=x.device) - size // 2
        cx = torch.randint(0, w, (b, 1), generator=g, device=x.device) - size // 2
        rows = torch.arange(h, device=x.device).view(1, h)
        cols = torch.arange(w, device=x.device).view(1, w)
        in_rows = (rows >= cy) & (rows < cy + size)
        in_cols = (cols >= cx) & (cols < cx + size)
        patch = (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)
        erase = patch & (_rand(x, g) < p).bool()
        return x.masked_fill(erase, 0.0), y
    return op


def _mixup(x: Tensor, perm: Tensor, rng: np.random.Generator, alpha: float):
    lam = float(rng.beta(alpha, alpha))
    return lam * x + (1.0 - lam) * x[perm], lam


def _cutmix(x: Tensor, perm: Tensor, rng: np.random.Generator, alpha: float):
    h, w = x.shape[-2:]
    ratio = float(np.sqrt(1.0 - rng.beta(alpha, alpha)))
    cut_h, cut_w = int(h * ratio), int(w * ratio)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y1, y2 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, h)
    x1, x2 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, w)
    out = x.clone()
    out[:, :, y1:y2, x1:x2] = x[perm, :, y1:y2, x1:x2]
    return out, 1.0 - float((y2 - y1) * (x2 - x1)) / float(h * w)  # lambda by area


def _mix(cfg: dict, ctx: Context) -> Op | None:
    mixers = [(f, float(cfg[k])) for f, k in ((_mixup, "mixup"), (_cutmix, "cutmix"))
              if float(cfg[k]) > 0.0]
    prob = float(cfg["mix_prob"])
    if not mixers or prob <= 0.0:
        return None

    def op(x, y, g, host):
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=host)))
        if rng.random() >= prob:
            return x, y
        mixer, alpha = mixers[int(rng.integers(len(mixers)))]
        perm = torch.randperm(x.shape[0], generator=g, device=x.device)
        targets = y if y.ndim == 2 else F.one_hot(y, ctx.num_classes).to(x.dtype)
        mixed, lam = mixer(x, perm, rng, alpha)
        return mixed, lam * targets + (1.0 - lam) * targets[perm]
    return op


def _noise(cfg: dict, ctx: Context) -> Op | None:
    std = float(cfg["noise"])
    if std <= 0.0:
        return None

    def op(x, y, g, host):
        return x + std * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype), y
    return op


AUGMENTATIONS: dict[str, AugmentStep] = {s.name: s for s in (
    AugmentStep("hflip", _flip(-1), images=True),
    AugmentStep("vflip", _flip(-2), images=True),
    AugmentStep("shift", _shift, images=True),
    AugmentStep("brightness", _colour("brightness", _brightness), images=True,
                unit_range=True),
    AugmentStep("contrast", _colour("contrast", _contrast), images=True, unit_range=True),
    AugmentStep("saturation", _colour("saturation", _saturation), images=True,
                unit_range=True, rgb=True),
    AugmentStep("hue", _colour("hue", _hue), images=True, unit_range=True, rgb=True),
    AugmentStep("cutout", _cutout, images=True),
    # One mixing step serves both options: it is built under "mixup" when mixup is on (then
    # choosing per batch between the two), else under "cutmix".
    AugmentStep("mixup", lambda cfg, ctx: _mix(cfg, ctx) if float(cfg["mixup"]) > 0 else None),
    AugmentStep("cutmix", lambda cfg, ctx: None if float(cfg["mixup"]) > 0 else _mix(cfg, ctx),
                images=True),
    AugmentStep("noise", _noise),
)}
PARAMETERS = ("cutout_size", "mix_prob")  # options that tune a step but turn nothing on


class Augment:
    """The steps a config turns on, applied in order: `augment(x, y, g) -> (x, targets)`,
    targets being the labels, or soft targets (B, n) when the batch was mixed."""

    def __init__(self, steps: Sequence[tuple[str, Op]]) -> None:
        self.steps = list(steps)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.steps]

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator,
                 host: torch.Generator | None = None):
        """`generator` lives on x's device; `host` on the CPU (default: `generator`, which
        must then be a CPU generator)."""
        host = generator if host is None else host
        for _, op in self.steps:
            x, y = op(x, y, generator, host)
        return x, y


def _turned_on(cfg: dict, ctx: Context, name: str) -> bool:
    if name == "shift":
        return shift_of(cfg, ctx) > 0
    return float(cfg[name]) > 0.0


def check_augment(cfg: dict, ctx: Context) -> None:
    """TrainerError naming the first option turned on that the data cannot take: image
    geometry on sequences or rows, [0, 1] colour jitter on data outside [0, 1], saturation and
    hue on images without three channels."""
    cfg = resolve_group("augment", cfg)
    kind = {1: "rows of features", 2: "sequences"}.get(len(ctx.shape), "images")
    low, high = ctx.value_range
    for name, step in AUGMENTATIONS.items():
        if not _turned_on(cfg, ctx, name):
            continue
        if step.images and not ctx.is_image:
            raise TrainerError(f"augment.{name}: an image augmentation, but the data are {kind} "
                               f"of shape {tuple(ctx.shape)}; set it to 0 (mixup and noise "
                               f"work on any data)")
        if step.rgb and ctx.channels != 3:
            raise TrainerError(f"augment.{name}: needs three-channel (RGB) images, the data "
                               f"have {ctx.channels} channel(s); set it to 0")
        if step.unit_range and (low < -1e-6 or high > 1 + 1e-6):
            raise TrainerError(f"augment.{name}: works on pixel values in [0, 1] (and clamps "
                               f"to it), but the data range from {low:.3g} to {high:.3g}; set "
                               f"it to 0, or give images scaled to [0, 1]")


def build_augment(cfg: dict, ctx: Context) -> Augment:
    """The pipeline for an `augment` config group (catalog defaults for what it leaves out);
    options the data cannot take are errors (`check_augment`)."""
    cfg = resolve_group("augment", cfg)
    check_augment(cfg, ctx)
    steps = []
    for name, step in AUGMENTATIONS.items():
        op = step.make(cfg, ctx)
        if op is not None:
            steps.append((name, op))
    return Augment(steps)
