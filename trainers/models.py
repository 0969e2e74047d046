"""Models: the registry, the hand-written MLP and CNNs (2-D and 1-D), and `build_model`.

    model = build_model(config["model"], in_channels=1, num_classes=10, image_size=(28, 28))

A sample is `(in_channels, *image_size)`: images C×H×W (`image_size` (H, W)), sequences C×L
(`(L,)`) or rows of F features (`in_channels` F, `image_size` ()). Each registry entry says which
of these it takes (`ModelInfo.inputs`), and `build_model` refuses the others by name.

Every model built here has `set_grad_checkpointing(enabled)`; dropout sits before the
classifier only (never before a BatchNorm); the classifier is a `DropConnectLinear`.
torchvision backbones live in `trainers/backbones.py`.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
from torch import Tensor

from .backbones import build_mobilenet, build_resnet, load_weights
from .catalog import MODEL_INPUTS
from .errors import TrainerError
from .layers import ACTIVATIONS, DropConnectLinear, GradCheckpointing, dropout, init_weights
from .settings import call_factory, import_factory, resolve_group

__all__ = ["MODELS", "ModelInfo", "build_model", "count_parameters", "MLP", "CNN", "ConvBlock",
           "INPUTS"]

# The kinds of sample by rank of (in_channels, *image_size).
INPUTS = {1: "tabular", 2: "sequence", 3: "image"}
_SHAPES = {"tabular": "N×F", "sequence": "N×C×L", "image": "N×C×H×W"}


class MLP(GradCheckpointing, nn.Module):
    """Flatten, `depth` hidden layers of `width` units (Linear, BatchNorm1d on all but the last
    hidden layer, activation), dropout, classifier."""

    def __init__(self, in_features: int, num_classes: int, *, width: int, depth: int,
                 activation: str, batch_norm: bool, dropout_p: float, drop_connect: float) -> None:
        super().__init__()
        blocks, prev = [], in_features
        for i in range(depth):
            bn = batch_norm and i < depth - 1  # no BatchNorm right before the classifier
            layers = [nn.Linear(prev, width, bias=not bn)]
            layers += [nn.BatchNorm1d(width)] if bn else []
            blocks.append(nn.Sequential(*layers, ACTIVATIONS[activation]()))
            prev = width
        self.flatten = nn.Flatten()
        self.blocks = nn.ModuleList(blocks)
        self.dropout = dropout(dropout_p)
        self.classifier = DropConnectLinear(prev, num_classes, p=drop_connect)

    def forward(self, x: Tensor) -> Tensor:
        x = self.run_blocks(self.blocks, self.flatten(x))
        return self.classifier(self.dropout(x))


_CONV = {1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d,
             nn.AdaptiveMaxPool1d),
         2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
             nn.AdaptiveMaxPool2d)}


class ConvBlock(nn.Module):
    """`n` convolutions (conv, BatchNorm, activation) over `dims` (1: sequences, 2: images);
    the first one strides when the block downsamples by stride. With `residual` the last
    activation comes after adding the input (through a 1×1 projection when channels or stride
    change). `pool` follows the block."""

    def __init__(self, cin: int, cout: int, *, n: int, kernel_size: int, dilation: int,
                 padding_mode: str, stride: int, batch_norm: bool, activation: str,
                 residual: bool, pool: nn.Module, dims: int = 2) -> None:
        super().__init__()
        conv, norm = _CONV[dims][:2]
        pad = dilation * (kernel_size - 1) // 2  # keeps the size for odd kernels
        layers: list[nn.Module] = []
        for j in range(n):
            layers.append(conv(cin if j == 0 else cout, cout, kernel_size,
                               stride=stride if j == 0 else 1, padding=pad, dilation=dilation,
                               padding_mode=padding_mode, bias=not batch_norm))
            layers += [norm(cout)] if batch_norm else []
            if j < n - 1 or not residual:
                layers.append(ACTIVATIONS[activation]())
        self.body = nn.Sequential(*layers)
        self.shortcut: nn.Module | None = None
        self.act: nn.Module | None = None
        if residual:
            self.act = ACTIVATIONS[activation]()
            if cin != cout or stride != 1:
                proj = [conv(cin, cout, 1, stride=stride, bias=not batch_norm)]
                self.shortcut = nn.Sequential(*proj, *([norm(cout)] if batch_norm else []))
            else:
                self.shortcut = nn.Identity()
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        if self.shortcut is not None:
            y = self.act(y + self.shortcut(x))
        return self.pool(y)


class CNN(GradCheckpointing, nn.Module):
    """`depth` ConvBlocks, channels width·2^i, each halving the resolution (pool or stride);
    head: global average / max pooling (any input size) or flatten; optional hidden layer;
    dropout; classifier."""

    def __init__(self, blocks: list[ConvBlock], head: nn.Module, features: int, num_classes: int,
                 *, hidden: int, activation: str, dropout_p: float, drop_connect: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        layers: list[nn.Module] = []
        if hidden > 0:
            layers += [nn.Linear(features, hidden), ACTIVATIONS[activation]()]
            features = hidden
        self.hidden = nn.Sequential(*layers)
        self.dropout = dropout(dropout_p)
        self.classifier = DropConnectLinear(features, num_classes, p=drop_connect)

    def forward_features(self, x: Tensor) -> Tensor:
        """The feature maps after the last block (before the head)."""
        return self.run_blocks(self.blocks, x)

    def forward(self, x: Tensor) -> Tensor:
        x = self.hidden(self.head(self.forward_features(x)))
        return self.classifier(self.dropout(x))


def _check_padding(mode: str, pad: int, size: tuple[int, ...], block: int,
                   image_size: tuple[int, ...]) -> None:
    # reflect needs pad < size, circular pad <= size (torch raises deep inside the forward)
    small = min(size)
    if (mode == "reflect" and pad >= small) or (mode == "circular" and pad > small):
        raise TrainerError(
            f"model.padding_mode: {mode!r} padding of {pad} px needs larger feature maps, but "
            f"block {block + 1} works on {'×'.join(map(str, size))} px (input "
            f"{'×'.join(map(str, image_size))}); use zeros or replicate, fewer blocks "
            f"(model.depth), a smaller kernel_size or dilation")


def build_cnn(cfg: dict, in_channels: int, num_classes: int,
              image_size: tuple[int, ...]) -> nn.Module:
    """The CNN of `cfg` over images (`cnn`) or sequences (`cnn1d`: the same blocks in 1-D); the
    `cnn` defaults (2 blocks of 32/64 channels, BatchNorm, max-pool, flatten head, 128 hidden
    units, dropout 0.3) make a good MNIST classifier (98.7% test accuracy on mnist5k after 8
    epochs of AdamW; with a global-average head, 84%)."""
    blocks, cin, size = [], in_channels, tuple(image_size)
    dims = len(size)
    pad = cfg["dilation"] * (cfg["kernel_size"] - 1) // 2
    _, _, max_pool, avg_pool, adaptive_avg, adaptive_max = _CONV[dims]
    pool_cls = max_pool if cfg["pooling"] == "max" else avg_pool
    for i in range(cfg["depth"]):
        cout = cfg["width"] * 2 ** i
        stride = 2 if cfg["downsample"] == "stride" else 1
        _check_padding(cfg["padding_mode"], pad, size, i, image_size)
        halved = tuple((s + 1) // 2 for s in size)  # ceil: odd sizes keep their edge
        if stride == 2 and cfg["convs_per_block"] > 1:
            _check_padding(cfg["padding_mode"], pad, halved, i, image_size)
        pool = pool_cls(2, ceil_mode=True) if cfg["downsample"] == "pool" else nn.Identity()
        blocks.append(ConvBlock(cin, cout, n=cfg["convs_per_block"],
                                kernel_size=cfg["kernel_size"], dilation=cfg["dilation"],
                                padding_mode=cfg["padding_mode"], stride=stride,
                                batch_norm=cfg["batch_norm"], activation=cfg["activation"],
                                residual=cfg["residual"], pool=pool, dims=dims))
        cin = cout
        size = halved if cfg["downsample"] != "none" else size
    if cfg["head"] == "flatten":
        head, features = nn.Flatten(), cin * math.prod(size)
    else:
        pool = adaptive_avg(1) if cfg["head"] == "global_avg" else adaptive_max(1)
        head, features = nn.Sequential(pool, nn.Flatten()), cin
    return CNN(blocks, head, features, num_classes, hidden=cfg["hidden"],
               activation=cfg["activation"], dropout_p=cfg["dropout"],
               drop_connect=cfg["drop_connect"])


def build_mlp(cfg: dict, in_channels: int, num_classes: int,
              image_size: tuple[int, ...]) -> nn.Module:
    """The MLP of `cfg` on rows of features, or flattened sequences and images."""
    return MLP(in_channels * math.prod(image_size), num_classes, width=cfg["width"],
               depth=cfg["depth"], activation=cfg["activation"], batch_norm=cfg["batch_norm"],
               dropout_p=cfg["dropout"], drop_connect=cfg["drop_connect"])


def data_arguments(fn, **given) -> dict:
    """The data's facts (in_channels, num_classes, input_shape) that a factory's signature takes
    by name (all of them when it takes **kwargs); a signature that cannot be read gets the two
    that factories have always been given."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {k: given[k] for k in ("in_channels", "num_classes")}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(given)
    return {k: v for k, v in given.items() if k in params and params[k].kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def build_factory(cfg: dict, in_channels: int, num_classes: int,
                  image_size: tuple[int, ...]) -> nn.Module:
    """A user's f(**kwargs) -> nn.Module, also given in_channels=, num_classes= and
    input_shape=(C, ...) where its signature takes them; checked on a dry batch."""
    spec = cfg["factory"]
    fn = import_factory(spec, "model.factory")
    if inspect.isclass(fn) and not issubclass(fn, nn.Module):
        raise TrainerError(f"model.factory: {spec} is the class {fn.__name__}, not a function "
                           f"returning a torch.nn.Module")
    facts = data_arguments(fn, in_channels=in_channels, num_classes=num_classes,
                           input_shape=(in_channels, *image_size))
    clash = sorted(set(facts) & set(cfg["kwargs"]))
    if clash:
        raise TrainerError(f"model.kwargs.{clash[0]}: set by the data ({facts[clash[0]]}); "
                           f"remove it from model.kwargs")
    model = call_factory(fn, spec, "model.factory", **facts, **cfg["kwargs"])
    if inspect.isclass(model):
        raise TrainerError(f"model.factory: {spec} returned the class {model.__name__}; return "
                           f"an instance of it")
    if not isinstance(model, nn.Module):
        raise TrainerError(f"model.factory: {spec} returned {type(model).__name__}; expected a "
                           f"torch.nn.Module")
    shape = (2, in_channels, *image_size)
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(shape))
    except Exception as err:
        raise TrainerError(f"model.factory: the model of {spec} fails on a {shape} batch: "
                           f"{type(err).__name__}: {err}") from err
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise TrainerError(f"model.factory: the model of {spec} maps a {shape} batch to {got}; "
                           f"expected (2, {num_classes}) logits")
    return model


@dataclass(frozen=True)
class ModelInfo:
    """One registry entry: `build(resolved model settings, in_channels, num_classes,
    image_size) -> nn.Module`, and the kinds of input it takes (`INPUTS` values)."""

    name: str
    build: Callable[[dict, int, int, tuple[int, ...]], nn.Module]
    doc: str

    @property
    def inputs(self) -> tuple[str, ...]:
        return MODEL_INPUTS[self.name]


MODELS: dict[str, ModelInfo] = {info.name: info for info in (
    ModelInfo("mlp", build_mlp, "fully connected network on feature rows (or flattened "
              "sequences and images)"),
    ModelInfo("cnn", build_cnn, "configurable convolutional network (images)"),
    ModelInfo("cnn1d", build_cnn, "configurable 1-D convolutional network (sequences)"),
    ModelInfo("resnet18", build_resnet, "torchvision ResNet-18, adapted stem"),
    ModelInfo("resnet34", build_resnet, "torchvision ResNet-34, adapted stem"),
    ModelInfo("mobilenet_v3_small", build_mobilenet, "torchvision MobileNetV3-Small"),
    ModelInfo("factory", build_factory, 'a user function "package.module:function"'),
)}


def check_input(name: str, input_shape: tuple[int, ...]) -> None:
    """TrainerError naming model.name when the model does not take samples of this shape."""
    kind = INPUTS.get(len(input_shape))
    takes = MODELS[name].inputs
    if kind not in takes:
        fits = [n for n, info in MODELS.items() if kind in info.inputs and n != "factory"]
        raise TrainerError(
            f"model.name: {name} takes {' or '.join(f'{k} ({_SHAPES[k]})' for k in takes)} "
            f"data, but the samples are {kind or 'of rank ' + str(len(input_shape) + 1)} data "
            f"of shape {tuple(input_shape)}; use {', '.join(fits) or 'a factory'} (or a "
            f"model.factory)" + ("; one-channel signals of length L are given as N×1×L"
                                 if kind == "tabular" and "sequence" in takes else ""))


def build_model(model_cfg: dict, *, in_channels: int, num_classes: int,
                image_size: tuple[int, ...]) -> nn.Module:
    """The model of `model_cfg` (the config's `model` group; missing keys take catalog
    defaults), initialised by `init`, with pretrained `weights` loaded last when given."""
    cfg = resolve_group("model", model_cfg)
    check_input(cfg["name"], (in_channels, *image_size))
    model = MODELS[cfg["name"]].build(cfg, in_channels, num_classes, tuple(image_size))
    init_weights(model, cfg["init"], cfg.get("activation", "relu"))
    if cfg.get("weights"):
        load_weights(model, cfg["weights"], cfg["name"])
    return model


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (shared ones once); only those with requires_grad if asked."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
