"""The training device: whether a GPU this process was given is usable, the per-device speed
settings, a packed process's share of GPU memory, and what a run leaves behind on the GPU.

A process is *given* a GPU when CUDA_VISIBLE_DEVICES names one (Ray sets it for a trial with a
GPU request; a user sets it by hand). If torch then cannot use a GPU (a CPU-only torch, a driver
older than torch's CUDA, a fake GPU), training would fall back to one CPU thread unnoticed:
`gpu_problem` says why instead, and `select_device` (loop.py) fails with it.
"""
from __future__ import annotations

import gc
import os

import torch

from .errors import TrainerError

# The share of a GPU's memory a packed process may allocate: set by the search for a trial
# with a fractional GPU (its share), read once the device is chosen.
MEMORY_FRACTION_ENV = "TRAINERS_GPU_MEMORY_FRACTION"


def visible_gpus(env: dict | None = None) -> str | None:
    """CUDA_VISIBLE_DEVICES when it names at least one GPU, else None."""
    value = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    value = value.strip()
    return value if value and value not in ("-1", "NoGPU") else None


def gpu_problem(env: dict | None = None) -> str | None:
    """Why the GPU named by CUDA_VISIBLE_DEVICES cannot be used by torch; None when it can (or
    when no GPU is named)."""
    named = visible_gpus(env)
    if named is None:
        return None
    if torch.version.cuda is None:
        why = f"torch {torch.__version__} was built without CUDA"
    elif not torch.cuda.is_available():
        why = (f"torch.cuda.is_available() is False (torch {torch.__version__}, CUDA "
               f"{torch.version.cuda}: no driver, or one older than this CUDA)")
    elif torch.cuda.device_count() == 0:
        why = "torch.cuda.device_count() is 0"
    else:
        return None
    return (f"this process was given GPU {named} (CUDA_VISIBLE_DEVICES) but torch cannot use "
            f"it: {why}; fix the GPU's driver or torch, or set train.device: cpu to train on "
            "the CPU")


def check_gpu(env: dict | None = None) -> None:
    """TrainerError when a GPU was given but torch cannot use it (see gpu_problem)."""
    problem = gpu_problem(env)
    if problem is not None:
        raise TrainerError(f"train.device: {problem}")


def prepare(device: torch.device) -> None:
    """Per-process settings for fast training on `device`: TF32 matmuls and convolutions (fp32
    accuracy is not needed for training, Ampere and later run TF32 several times faster),
    cuDNN autotuning (batches keep their shape), and the memory cap of a packed process."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    fraction = os.environ.get(MEMORY_FRACTION_ENV)
    if fraction:
        share = float(fraction)
        if 0 < share < 1:
            # The packed process that overflows its own share is the one that fails, not a
            # neighbour that happened to allocate next.
            torch.cuda.set_per_process_memory_fraction(share, device)
    torch.cuda.reset_peak_memory_stats(device)


def bf16_supported(device: torch.device) -> bool:
    return device.type != "cuda" or torch.cuda.is_bf16_supported()


def facts(device: torch.device) -> dict:
    """What a run records about its device: its name, and the peak GPU memory allocated."""
    if device.type != "cuda":
        return {"device": "cpu"}
    index = device.index if device.index is not None else torch.cuda.current_device()
    return {"device": torch.cuda.get_device_name(index),
            "gpu_peak_mb": torch.cuda.max_memory_allocated(index) / 2 ** 20}


def release_memory() -> None:
    """Give the GPU memory a finished run cached back (a reused Ray actor runs the next trial in
    the same process; its neighbours on the GPU need what this one no longer uses). Without a
    GPU there is nothing to give back: a full collection of a trial process (torch and Ray
    loaded) costs about half a second, which on small data is more than the trial's training."""
    if torch.cuda.is_initialized():
        gc.collect()  # tensors held by reference cycles, before the cache is emptied
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower())
