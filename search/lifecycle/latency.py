"""The `latency_ms` objective: batch-1 CPU inference time of a trial's selected model.

fit() does not measure it (a trainer's business is training); the trial measures it after fit
when an objective asks for it: the model of the config with the checkpoint's best weights,
timed on one input of the dataset's shape with the trial's threads, median of `runs`.
"""
from __future__ import annotations

import statistics
import time


def latency_ms(config: dict, checkpoint: str | None, threads: int = 1, runs: int = 30) -> float:
    import torch

    from trainers import build_model, load_data, load_weights

    data = load_data(config["data"])  # its shape and class count decide the model's
    model = build_model(config["model"], in_channels=data.in_channels,
                        num_classes=data.num_classes, image_size=data.image_size)
    if checkpoint:
        model.load_state_dict(load_weights(checkpoint))
    model.eval()
    torch.set_num_threads(max(1, threads))
    x = torch.zeros(1, data.in_channels, *data.image_size)
    times = []
    with torch.inference_mode():
        for i in range(runs + 5):  # 5 warm-up calls
            start = time.perf_counter()
            model(x)
            if i >= 5:
                times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0
