"""The catalog: every training setting a space file may fix or search (docs/spaces.md, "Settings
groups").

Groups and their variants are keyed by the names used in YAML. The implementations live in the
trainer's registries (datasets.py, models.py, optim.py, schedules.py); tests check that the two
agree name for name. Defaults are chosen so that a space declaring only a dataset trains well.
"""
from __future__ import annotations

from .options import (FACTORY, NONNEG, NONNEG_INT, POS_INT, POSITIVE, PROB, PROB_CLOSED,
                      Group, Option, each, interval, one_of)

O = Option

# --------------------------------------------------------------------------------------- data
_TORCHVISION = {
    "root": O("str", "~/.cache/torch-search/data", "folder holding (or receiving) the files",
              searchable=False),
    "download": O("bool", False, "fetch the files if missing (needs network)", searchable=False),
}
DATA = Group(
    "data", "what to train on and how it is split and batched",
    selector="dataset",
    options={
        "dataset": O("str", "mnist5k", "dataset name (registry key)"),
        "val_fraction": O("float", None, "fraction held out for validation (model selection), "
                          "carved from the training part; null = 0.1 (not allowed where the "
                          "data come with their own validation part)",
                          interval(0.0, 0.5, low_open=True, high_open=True), nullable=True),
        "test_fraction": O("float", None, "fraction held out for the final test (never "
                           "selects); null = 0.2, or the dataset's own test split where it has "
                           "one (then only null or 0 are allowed)",
                           interval(0.0, 0.5, high_open=True), nullable=True),
        "split_seed": O("int", 0, "seed of the stratified split (fixed across trials)",
                        NONNEG_INT, searchable=False),
        "batch_size": O("int", 64, "mini-batch size", POS_INT),
        "batch_size_max": O("int", None, "batch-size schedule: double the batch every "
                            "`batch_size_double_every` epochs up to this size; null = off",
                            POS_INT, nullable=True),
        "batch_size_double_every": O("int", None, "epochs between doublings; null = off",
                                     POS_INT, nullable=True),
        "kfold": O("int", 0, "k-fold cross-validation objective for small data; 0 = off",
                   interval(0, 20), searchable=False),
        "in_memory_mb": O("float", 2048.0, "datasets smaller than this are kept as tensors on "
                          "the training device (no DataLoader workers); 8-bit images at their "
                          "own size are kept as uint8 (counted at 1 byte a value, normalised "
                          "per batch there), other data as float32 (4 bytes)", NONNEG,
                          searchable=False),
        "num_workers": O("int", 2, "DataLoader workers for data that does not fit in memory",
                         NONNEG_INT, searchable=False),
        "resize": O("int", None, "resize images to this square size (images only); null = keep",
                    POS_INT, nullable=True),
    },
    variants={
        "mnist5k": {},
        "digits": {},
        "mnist": dict(_TORCHVISION),
        "fashion_mnist": dict(_TORCHVISION),
        "cifar10": dict(_TORCHVISION),
        "cifar100": dict(_TORCHVISION),
        "image_folder": {
            "root": O("str", None, "folder with one sub-folder of images per class",
                      required=True, searchable=False),
            "image_size": O("int", 32, "images are resized to this square size", POS_INT),
            "grayscale": O("bool", False, "convert images to one channel"),
        },
        "factory": {
            "factory": O("str", None, 'user dataset factory "package.module:function" returning '
                         "(samples, labels), a Dataset, or {train, val?, test} parts; samples "
                         "N×F, N×C×L or N×C×H×W", FACTORY, required=True, searchable=False),
            "kwargs": O("mapping", {}, "keyword arguments for the factory", searchable=False),
        },
    },
)

# Native image side of the built-in datasets, torch-free so that the space rules (spaces/rules.py)
# can read it; the loaders in datasets.py produce these sizes (tests/trainers/test_datasets.py).
# image_folder's size is its image_size option; a factory's is unknown until it runs.
IMAGE_SIZES = {"mnist5k": 28, "digits": 8, "mnist": 28, "fashion_mnist": 28, "cifar10": 32,
               "cifar100": 32}

# -------------------------------------------------------------------------------------- model
_ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid")
# The classifier's regularisation: options of the built-in models (a factory's model has its
# own; pass such values through model.kwargs).
_HEAD = {
    "dropout": O("float", 0.3, "inverted dropout p before the classifier", PROB),
    "drop_connect": O("float", 0.0, "DropConnect p on the classifier's weights", PROB),
}
MODEL = Group(
    "model", "the network",
    selector="name",
    options={
        "name": O("str", "cnn", "model name (registry key)"),
        "init": O("str", "default", "weight initialisation scheme",
                  one_of("default", "uniform", "normal", "constant", "eye", "xavier_uniform",
                         "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal")),
    },
    variants={
        "mlp": {
            **_HEAD,
            "width": O("int", 256, "hidden units in the first layer", POS_INT),
            "depth": O("int", 2, "hidden layers", POS_INT),
            "activation": O("str", "relu", "activation", one_of(*_ACTIVATIONS)),
            "batch_norm": O("bool", True, "BatchNorm1d after hidden layers (not the last)"),
        },
        "cnn": {
            **_HEAD,
            "width": O("int", 32, "channels of the first block (doubling per block)", POS_INT),
            "depth": O("int", 2, "convolutional blocks", interval(1, 8)),
            "convs_per_block": O("int", 1, "convolutions per block", interval(1, 4)),
            "kernel_size": O("int", 3, "convolution kernel size", one_of(1, 3, 5, 7)),
            "dilation": O("int", 1, "convolution dilation", interval(1, 4)),
            "padding_mode": O("str", "zeros", "padding mode",
                              one_of("zeros", "reflect", "replicate", "circular")),
            "downsample": O("str", "pool", "how blocks halve the resolution",
                            one_of("pool", "stride", "none")),
            "pooling": O("str", "max", "pooling type for downsampling", one_of("max", "avg")),
            "head": O("str", "flatten", "flatten (keeps where features are: far better for "
                      "shallow nets) or a global pooling head (any input size)",
                      one_of("global_avg", "global_max", "flatten")),
            "hidden": O("int", 128, "hidden units of the classifier; 0 = linear head", NONNEG_INT),
            "batch_norm": O("bool", True, "BatchNorm after convolutions (bias off before it)"),
            "activation": O("str", "relu", "activation", one_of(*_ACTIVATIONS)),
            "residual": O("bool", False, "residual (skip) connections inside blocks"),
        },
        "cnn1d": {
            **_HEAD,
            "width": O("int", 32, "channels of the first block (doubling per block)", POS_INT),
            "depth": O("int", 2, "convolutional blocks", interval(1, 8)),
            "convs_per_block": O("int", 1, "convolutions per block", interval(1, 4)),
            "kernel_size": O("int", 5, "convolution kernel size", one_of(1, 3, 5, 7, 9, 11)),
            "dilation": O("int", 1, "convolution dilation", interval(1, 4)),
            "padding_mode": O("str", "zeros", "padding mode",
                              one_of("zeros", "reflect", "replicate", "circular")),
            "downsample": O("str", "pool", "how blocks halve the length",
                            one_of("pool", "stride", "none")),
            "pooling": O("str", "max", "pooling type for downsampling", one_of("max", "avg")),
            "head": O("str", "global_avg", "global pooling head (any length) or flatten",
                      one_of("global_avg", "global_max", "flatten")),
            "hidden": O("int", 64, "hidden units of the classifier; 0 = linear head", NONNEG_INT),
            "batch_norm": O("bool", True, "BatchNorm after convolutions (bias off before it)"),
            "activation": O("str", "relu", "activation", one_of(*_ACTIVATIONS)),
            "residual": O("bool", False, "residual (skip) connections inside blocks"),
        },
        "resnet18": {
            **_HEAD,
            "small_input": O("bool", True, "3x3 stem without max-pool, for 28-32 px images"),
            "weights": O("str", None, "local state_dict file of pretrained weights; null = "
                         "random init", nullable=True, searchable=False),
        },
        "resnet34": {
            **_HEAD,
            "small_input": O("bool", True, "3x3 stem without max-pool, for 28-32 px images"),
            "weights": O("str", None, "local state_dict file of pretrained weights; null = "
                         "random init", nullable=True, searchable=False),
        },
        "mobilenet_v3_small": {
            **_HEAD,
            "width_mult": O("float", 1.0, "channel multiplier", interval(0.1, 2.0)),
            "small_input": O("bool", True, "stride-1 stem, for 28-32 px images"),
        },
        "factory": {
            "factory": O("str", None, 'user model factory "package.module:function" called as '
                         "f(**kwargs) plus in_channels=, num_classes=, input_shape= where its "
                         "signature takes them", FACTORY, required=True, searchable=False),
            "kwargs": O("mapping", {}, "keyword arguments for the factory", searchable=False),
        },
    },
)

# ---------------------------------------------------------------------------------- optimizer
_BETAS = O("floats", [0.9, 0.999], "Adam betas (beta1, beta2)", each(interval(0.0, 1.0,
           high_open=True), length=2))
_EPS = O("float", 1e-8, "numerical epsilon", POSITIVE)
OPTIMIZER = Group(
    "optimizer", "the optimiser; weight_decay is an L2 gradient term for every optimiser but "
    "adamw, where it is decoupled (AdamW); regularization.l2 adds it to the loss instead",
    selector="name",
    options={
        "name": O("str", "adamw", "optimiser name (registry key)"),
        "lr": O("float", 3e-3, "learning rate (peak lr for onecycle)", interval(0.0, 10.0,
                low_open=True)),
        "weight_decay": O("float", 1e-4, "weight decay", NONNEG),
    },
    variants={
        "sgd": {
            "momentum": O("float", 0.0, "momentum", PROB),
            "nesterov": O("bool", False, "Nesterov momentum (needs momentum > 0)"),
            "dampening": O("float", 0.0, "momentum dampening", PROB),
        },
        "adagrad": {
            "lr_decay": O("float", 0.0, "lr decay", NONNEG),
            "eps": O("float", 1e-10, "numerical epsilon", POSITIVE),
        },
        "rmsprop": {
            "alpha": O("float", 0.99, "smoothing constant (beta) of the squared-gradient average",
                       PROB),
            "momentum": O("float", 0.0, "momentum", PROB),
            "eps": _EPS,
            "centered": O("bool", False, "centred RMSprop"),
        },
        "adam": {"betas": _BETAS, "eps": _EPS, "amsgrad": O("bool", False, "AMSGrad variant")},
        "adamw": {"betas": _BETAS, "eps": _EPS, "amsgrad": O("bool", False, "AMSGrad variant")},
    },
)

# ---------------------------------------------------------------------------------- scheduler
SCHEDULER = Group(
    "scheduler", "the learning-rate schedule, stepped per epoch (onecycle: per optimiser step); "
    "warmup ramps the lr linearly from warmup_start_factor*lr over the first warmup_epochs",
    selector="name",
    options={
        "name": O("str", "onecycle", "schedule name (registry key)"),
        "warmup_epochs": O("int", 0, "linear warmup epochs; 0 = off", NONNEG_INT),
        "warmup_start_factor": O("float", 0.1, "lr multiplier at the start of warmup",
                                 interval(0.0, 1.0, low_open=True)),
    },
    variants={
        "none": {},
        "step": {
            "step_size": O("int", 10, "epochs between decays", POS_INT),
            "gamma": O("float", 0.1, "decay factor", interval(0.0, 1.0, low_open=True)),
        },
        "exponential": {
            "gamma": O("float", 0.95, "decay factor per epoch", interval(0.0, 1.0, low_open=True)),
        },
        "plateau": {
            "factor": O("float", 0.1, "decay factor when the validation loss stalls",
                        interval(0.0, 1.0, low_open=True, high_open=True)),
            "patience": O("int", 3, "epochs without improvement before a decay", NONNEG_INT),
            "threshold": O("float", 1e-4, "relative improvement that counts", NONNEG),
        },
        "cosine": {
            "eta_min": O("float", 0.0, "lr at the end of the cosine", NONNEG),
        },
        "onecycle": {
            "pct_start": O("float", 0.25, "fraction of steps spent increasing the lr",
                           interval(0.0, 1.0, low_open=True, high_open=True)),
            "div_factor": O("float", 25.0, "initial lr = lr / div_factor", interval(1.0)),
            "final_div_factor": O("float", 1e4, "final lr = initial lr / final_div_factor",
                                  interval(1.0)),
            "anneal": O("str", "cos", "annealing shape", one_of("cos", "linear")),
        },
        "time": {
            "decay": O("float", 0.1, "time-based decay: lr_t = lr / (1 + decay * t)", NONNEG),
        },
    },
)

# ----------------------------------------------------------------------------- regularization
REGULARIZATION = Group(
    "regularization", "penalties and targets",
    options={
        "label_smoothing": O("float", 0.05, "label smoothing s", interval(0.0, 0.3)),
        "smoothing_formula": O("str", "notes", "notes: true class 1-s, others s/(n-1); "
                               "torch: PyTorch's built-in (true 1-s+s/n, others s/n)",
                               one_of("notes", "torch")),
        "l1": O("float", 0.0, "L1 penalty alpha: loss + alpha * sum|w|", NONNEG),
        "l2": O("float", 0.0, "L2 term in the loss: loss + l2/2 * sum w^2", NONNEG),
        "grad_clip": O("float", None, "clip_grad_norm_ max norm; null = off", POSITIVE,
                       nullable=True),
    },
)

# ------------------------------------------------------------------------------- augmentation
AUGMENT = Group(
    "augment", "training-time augmentation (validation and test data are never augmented)",
    options={
        "hflip": O("float", 0.0, "probability of a horizontal flip", PROB_CLOSED),
        "vflip": O("float", 0.0, "probability of a vertical flip", PROB_CLOSED),
        "shift": O("int", None, "random shift (pad and crop) of up to this many pixels (images "
                   "only); null = 2 on images, off on other data", NONNEG_INT, nullable=True),
        "brightness": O("float", 0.0, "ColorJitter brightness magnitude", NONNEG),
        "contrast": O("float", 0.0, "ColorJitter contrast magnitude", NONNEG),
        "saturation": O("float", 0.0, "ColorJitter saturation magnitude (colour images)", NONNEG),
        "hue": O("float", 0.0, "ColorJitter hue magnitude (colour images)", interval(0.0, 0.5)),
        "cutout": O("float", 0.0, "probability of erasing a random square patch", PROB_CLOSED),
        "cutout_size": O("int", 8, "side of the erased patch in pixels", POS_INT),
        "mixup": O("float", 0.0, "mixup Beta(alpha, alpha); 0 = off", NONNEG),
        "cutmix": O("float", 0.0, "cutmix Beta(alpha, alpha); 0 = off", NONNEG),
        "mix_prob": O("float", 1.0, "probability that a batch is mixed when mixup/cutmix is on",
                      PROB_CLOSED),
        "noise": O("float", 0.0, "std of Gaussian noise added to normalised inputs", NONNEG),
    },
)

# ------------------------------------------------------------------------------------ training
TRAIN = Group(
    "train", "the training loop",
    options={
        "epochs": O("int", 12, "passes over the training split (also the pruning budget)",
                    POS_INT),
        "seed": O("int", 0, "seed of weights, batches and augmentation", NONNEG_INT),
        "precision": O("str", "fp32", "fp16 (with loss scaling, CUDA only: an error on a CPU) "
                       "and bf16 autocast", one_of("fp32", "fp16", "bf16")),
        "grad_accum": O("int", 1, "micro-batches accumulated per optimiser step", POS_INT),
        "grad_checkpointing": O("bool", False, "recompute activations in backward (less memory)"),
        "temperature": O("float", 1.0, "logits are divided by T during training", POSITIVE),
        "temperature_schedule": O("str", "constant", "constant, or lr: T_t = 1 + (T - 1) * "
                                  "lr_t / lr_max (high early, decreasing with the lr)",
                                  one_of("constant", "lr")),
        "early_stopping": O("int", None, "stop after this many epochs without validation "
                            "improvement; null = off", POS_INT, nullable=True),
        "min_delta": O("float", 0.0, "smallest improvement that resets early stopping", NONNEG),
        "averaging": O("str", "none", "weight averaging of the evaluated model",
                       one_of("none", "swa", "ema")),
        "swa_start": O("int", None, "first epoch (1-based) averaged by SWA; null = last 25%",
                       POS_INT, nullable=True),
        "ema_decay": O("float", 0.999, "EMA decay per optimiser step", interval(0.0, 1.0,
                       high_open=True)),
        "device": O("str", "auto", "auto: CUDA when the trial has a GPU (an error if torch "
                    "cannot use it), else CPU; cpu: the CPU even when a GPU is given",
                    one_of("auto", "cpu", "cuda"), searchable=False),
        "channels_last": O("bool", False, "NHWC memory layout for image models (faster "
                           "convolutions on GPUs with tensor cores)"),
        "compile": O("bool", False, "torch.compile the training forward (pays a compile "
                     "time per trial; for long trials)", searchable=False),
        "threads": O("int", None, "torch threads; null = the CPUs the trial was given",
                     POS_INT, nullable=True, searchable=False),
    },
)

# The samples each model takes (models.py refuses others by name). Every dataset but a factory
# holds images, so the space language checks the pairing of the others when a space is loaded.
_ANY = ("tabular", "sequence", "image")
MODEL_INPUTS = {"mlp": _ANY, "cnn": ("image",), "cnn1d": ("sequence",), "resnet18": ("image",),
                "resnet34": ("image",), "mobilenet_v3_small": ("image",), "factory": _ANY}

# Datasets whose files hold an official test split: it is their test split (validation is
# carved from the training files), so data.test_fraction may only be null or 0 for them.
OFFICIAL_TEST = ("mnist", "fashion_mnist", "cifar10", "cifar100")

GROUPS: dict[str, Group] = {g.name: g for g in
                            (DATA, MODEL, OPTIMIZER, SCHEDULER, REGULARIZATION, AUGMENT, TRAIN)}


def defaults(selected: dict[str, str] | None = None) -> dict[str, dict]:
    """The full default settings tree, with the default variant of each component unless
    `selected` names another (e.g. {"optimizer": "sgd"})."""
    selected = selected or {}
    tree: dict[str, dict] = {}
    for name, group in GROUPS.items():
        variant = selected.get(name, group.options[group.selector].default
                               if group.selector else None)
        tree[name] = {k: _copy(o.default) for k, o in group.options_for(variant).items()}
        if group.selector:
            tree[name][group.selector] = variant
    return tree


def _copy(value):
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value
