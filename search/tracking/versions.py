"""What a registered model and its versions say about themselves in the MLflow registry.

A version carries its figures as tags (`val_accuracy`, `test_accuracy`, `num_params`,
`size_bytes`, `latency_ms_b1`, ... under the metric names of names.py), where it came from
(`source`: "trial 12" or "stage 3-quantize", plus `search.trial_number` / `search.stage`) and a
description that reads as one paragraph. The registered model's description says what each
alias means; each alias is also a tag `alias.<name>`.

Figures come from where they were measured: a trial's from its last result (objective, test
accuracy, parameters), a stage's from the stage's measurement; what is missing for a trial's
model (size, batch-1 latency) is measured here as the stages measure it: the state_dict's
bytes, the median of 20 forward passes on one CPU thread.
"""
from __future__ import annotations

import statistics
from typing import Any, Mapping

ALIASES = {
    "best": "the search's best trial as trained (registered when the search ends)",
    "candidate": "the model after the last post-search stage (finetune, distill, quantize), "
                 "to review and promote",
}
MARK = "Models of torch-search"  # a description that starts so is ours to rewrite
FIGURES = ("val_accuracy", "test_accuracy", "num_params", "size_bytes", "latency_ms_b1",
           "latency_ms_b64", "throughput_b64")
THREADS, REPEATS = 1, 20  # as search/stages/table.py measures the stages


def measure(model, example) -> dict[str, float]:
    """num_params, size_bytes and latency_ms_b1 of a float model on its example input."""
    import torch

    from trainers.stages.measurement import state_size, time_forward

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        latency = statistics.median(time_forward(model, example[:1], REPEATS))
    finally:
        torch.set_num_threads(threads)
    return {"num_params": float(sum(p.numel() for p in model.parameters())),
            "size_bytes": float(state_size(model)), "latency_ms_b1": latency}


def _text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def version_tags(figures: Mapping[str, float], *, source: str, fmt: str, search_id: str,
                 extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    tags = {k: _text(v) for k, v in figures.items() if isinstance(v, (int, float))}
    tags.update({"source": source, "serialization_format": fmt, "search.id": search_id})
    tags.update({k: str(v) for k, v in (extra or {}).items() if v is not None})
    return tags


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def describe(about: str, alias: str, figures: Mapping[str, float], fmt: str) -> str:
    """One paragraph: what the version is, what its alias means, its figures, its format."""
    parts = []
    for key in FIGURES:
        value = figures.get(key)
        if not isinstance(value, (int, float)):
            continue
        if key == "num_params":
            parts.append(f"{int(value):,} parameters")
        elif key == "size_bytes":
            parts.append(f"{_size(value)} of weights ({int(value)} bytes)")
        elif key.startswith("latency_ms_b"):
            parts.append(f"{value:.3f} ms per batch of {key.rsplit('b', 1)[1]} on "
                         f"{THREADS} CPU thread")
        elif key == "throughput_b64":
            parts.append(f"{value:,.0f} images/s at batch 64")
        else:
            parts.append(f"{key} {value:.4f}")
    meaning = ALIASES.get(alias, "")
    return (f"{about}. Alias `{alias}`" + (f": {meaning}" if meaning else "") + ". "
            + (", ".join(parts) + ". " if parts else "")
            + f"Serialised as {fmt}; loads with mlflow.pytorch.load_model.")


def model_description(name: str) -> str:
    lines = [f"{MARK} searches registered as `{name}`. Aliases:"]
    lines += [f"- `{alias}`: {meaning}." for alias, meaning in ALIASES.items()]
    lines.append("Each version's tags hold its figures (val_accuracy, test_accuracy, "
                 "num_params, size_bytes, latency_ms_b1) and its source (trial or stage).")
    return "\n".join(lines)


def describe_model(client, name: str, description: str | None) -> None:
    """The registered model's description (unless a user wrote their own) and alias tags."""
    if not description or description.startswith((MARK, "best model of torch-search")):
        client.update_registered_model(name, description=model_description(name))
    for alias, meaning in ALIASES.items():
        client.set_registered_model_tag(name, f"alias.{alias}", meaning)
