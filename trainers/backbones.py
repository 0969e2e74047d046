"""torchvision backbones (ResNet-18/34, MobileNetV3-Small) adapted to small images, any channel
count and any class count, with gradient checkpointing and local pretrained weights.

The wrappers hold torchvision's own submodules under torchvision's attribute names, so their
state_dict keys are torchvision's: a torchvision checkpoint loads into them (and theirs into
torchvision). Nothing is ever downloaded: `weights` is a local state_dict file. torchvision is
imported where a backbone is built: importing it costs about 2 s of CPU (it loads torch._dynamo),
which the driver and every trial process of another model would pay for nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from .errors import TrainerError
from .layers import DropConnectLinear, GradCheckpointing, dropout


class ResNet(GradCheckpointing, nn.Module):
    """torchvision's ResNet with dropout before `fc` and each residual block checkpointable."""

    def __init__(self, tv: torchvision.models.ResNet, dropout_p: float,
                 drop_connect: float) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = tv.conv1, tv.bn1, tv.relu, tv.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = tv.layer1, tv.layer2, tv.layer3, \
            tv.layer4
        self.avgpool = tv.avgpool
        self.dropout = dropout(dropout_p)
        self.fc = DropConnectLinear.from_linear(tv.fc, drop_connect)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        blocks = [b for layer in (self.layer1, self.layer2, self.layer3, self.layer4)
                  for b in layer]
        x = torch.flatten(self.avgpool(self.run_blocks(blocks, x)), 1)
        return self.fc(self.dropout(x))


def build_resnet(cfg: dict, in_channels: int, num_classes: int,
                 image_size: tuple[int, ...]) -> nn.Module:
    """resnet18 / resnet34 with conv1 taking `in_channels`; `small_input`: 3×3 stride-1 stem
    and no max-pool (for 28-32 px images), else the 7×7 stride-2 stem and max-pool."""
    import torchvision

    tv = getattr(torchvision.models, cfg["name"])(weights=None, num_classes=num_classes)
    if cfg["small_input"] or in_channels != 3:
        k, s, p = (3, 1, 1) if cfg["small_input"] else (7, 2, 3)
        tv.conv1 = nn.Conv2d(in_channels, 64, k, stride=s, padding=p, bias=False)
        nn.init.kaiming_normal_(tv.conv1.weight, mode="fan_out", nonlinearity="relu")  # as tv
    if cfg["small_input"]:
        tv.maxpool = nn.Identity()
    return ResNet(tv, cfg["dropout"], cfg["drop_connect"])


class MobileNet(GradCheckpointing, nn.Module):
    """torchvision's MobileNetV3 with each stage of `features` checkpointable."""

    def __init__(self, tv: torchvision.models.MobileNetV3) -> None:
        super().__init__()
        self.features, self.avgpool, self.classifier = tv.features, tv.avgpool, tv.classifier

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.avgpool(self.run_blocks(self.features, x)), 1)
        return self.classifier(x)


def build_mobilenet(cfg: dict, in_channels: int, num_classes: int,
                    image_size: tuple[int, ...]) -> nn.Module:
    """mobilenet_v3_small(width_mult) with its stem taking `in_channels` (stride 1 when
    `small_input`), dropout p before the last Linear, DropConnect on it."""
    import torchvision

    tv = torchvision.models.mobilenet_v3_small(weights=None, num_classes=num_classes,
                                               width_mult=cfg["width_mult"],
                                               dropout=cfg["dropout"])
    stem = tv.features[0][0]
    if in_channels != stem.in_channels or cfg["small_input"]:
        new = nn.Conv2d(in_channels, stem.out_channels, 3, stride=1 if cfg["small_input"] else 2,
                        padding=1, bias=False)
        nn.init.kaiming_normal_(new.weight, mode="fan_out")  # as torchvision initialises it
        tv.features[0][0] = new
    tv.classifier[2] = dropout(cfg["dropout"])
    tv.classifier[3] = DropConnectLinear.from_linear(tv.classifier[3], cfg["drop_connect"])
    return MobileNet(tv)


# --------------------------------------------------------------------------- pretrained weights
def _read_state(path: str) -> dict[str, Tensor]:
    file = Path(os.path.expanduser(path))
    if not file.is_file():
        raise TrainerError(f"model.weights: no file at {file}; give a local state_dict file "
                           f"(weights are never downloaded) or null for random weights")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise TrainerError(f"model.weights: {file} is not a loadable state_dict: "
                           f"{type(err).__name__}: {err}") from err
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a checkpoint of this project
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise TrainerError(f"model.weights: {file} holds no state_dict (a dict of tensors)")
    return state


def load_weights(model: nn.Module, path: str, arch: str) -> None:
    """Load a torchvision-format state_dict into a built backbone. conv1 is adapted when only
    its input channels differ (summed over RGB, spread over the new channels); a stem or head
    of another class count keeps its fresh initialisation; a stem of another shape (small_input)
    is an error."""
    state = _read_state(path)
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    missing = sorted(k for k in set(own) - set(state) if not k.startswith("fc."))
    if unexpected:
        raise TrainerError(f"model.weights: {path} has tensors that {arch} lacks (e.g. "
                           f"{unexpected[0]!r}); is it a {arch} state_dict?")
    if missing:
        raise TrainerError(f"model.weights: {path} lacks tensors of {arch} (e.g. "
                           f"{missing[0]!r}); is it a {arch} state_dict?")
    merged, kept = dict(own), []
    for key, value in state.items():
        target = own[key]
        if value.shape == target.shape:
            merged[key] = value.to(target.dtype)
        elif key == "conv1.weight" and value.shape[2:] == target.shape[2:]:
            c = target.shape[1]
            merged[key] = value.sum(1, keepdim=True).repeat(1, c, 1, 1) / c
        elif key in ("conv1.weight", "fc.weight", "fc.bias"):
            kept.append(key)
        else:
            raise TrainerError(f"model.weights: {key} has shape {tuple(value.shape)} in {path} "
                               f"but {tuple(target.shape)} in {arch}")
    model.load_state_dict(merged)
    if "conv1.weight" in kept:  # loading the rest would train a net with a random stem
        raise TrainerError(f"model.weights: the pretrained stem of {path} has shape "
                           f"{tuple(state['conv1.weight'].shape)}, the small_input stem "
                           f"{tuple(own['conv1.weight'].shape)}; set model.small_input: false to "
                           f"use the pretrained stem")
