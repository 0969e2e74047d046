"""User code for the tests of searchable factory arguments and a space's own fit function
(imported by name from space files, on the driver and on Ray's workers)."""
from __future__ import annotations

import torch
from torch import nn


def tiny_images(size: int = 8, n: int = 240, classes: int = 4, seed: int = 0):
    """A data factory with its own arguments: n random 1 x size x size images, learnable
    labels (the class is where the brightest quarter is)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = 0.1 * torch.rand(n, 1, size, size, generator=g)
    half = size // 2
    for i, c in enumerate(y.tolist()):
        r, q = divmod(c % 4, 2)
        x[i, 0, r * half:(r + 1) * half, q * half:(q + 1) * half] += 1.0
    return x, y


def flat_net(num_classes: int, hidden: int = 16, layers: int = 1, act: str = "relu",
             **given):
    """A model factory with its own arguments (whatever else the trainer passes lands in
    `given`). Lazy first layer: its size follows the data factory's `size`."""
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh}
    mods: list[nn.Module] = [nn.Flatten(), nn.LazyLinear(hidden), acts[act]()]
    for _ in range(layers - 1):
        mods += [nn.Linear(hidden, hidden), acts[act]()]
    return nn.Sequential(*mods, nn.Linear(hidden, num_classes))


def count_params(hidden: int, layers: int, size: int, classes: int) -> int:
    model = flat_net(classes, hidden=hidden, layers=layers)
    model(torch.zeros(1, 1, size, size))
    return sum(p.numel() for p in model.parameters())


def strict_net(in_channels: int, num_classes: int, width: int = 8, depth: int = 1):
    """A factory without **kwargs: the only names a space may give it are these."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


def scaled_fit(config: dict, *, report, checkpoint_dir=None, resume_from=None, cpus=None):
    """A user's training function with its own parameters: `params.lr_scale` multiplies the
    learning rate (the reported lr shows it arrived), then the built-in loop trains."""
    from trainers import fit

    params = config["params"]
    settings = {k: v for k, v in config.items() if k != "params"}
    settings["optimizer"] = {**settings["optimizer"],
                             "lr": settings["optimizer"]["lr"] * params["lr_scale"]}
    return fit(settings, report=lambda m: report({**m, "tag": params["tag"]}),
               checkpoint_dir=checkpoint_dir, resume_from=resume_from, cpus=cpus)


def report_only(config, *, report):
    """The smallest contract: config and report; returns nothing."""
    for epoch in range(1, config["train"]["epochs"] + 1):
        report({"epoch": epoch, "val_accuracy": 0.5 + 0.1 * epoch})


NOT_A_FUNCTION = 3


def no_report(config):
    return None


def typo_fit(config, *, report):
    """A fit with a mistake every trial makes: the space names the parameter `lr`."""
    lr = config["params"]["learning_rate"]
    for epoch in range(1, 3):
        report({"epoch": epoch, "val_accuracy": lr})


def epochs_twice(config, *, report):
    """Reports an epoch twice (a loop over folds, say, each restarting at 1)."""
    for epoch in (1, 2, 1, 2):
        report({"epoch": epoch, "val_accuracy": 0.5})
