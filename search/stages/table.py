"""The stage table: every stage's kind, test accuracy, parameters, size and CPU speed; its rows
and the pipeline's outcome that carries them (pipeline.py fills them)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .source import Source

THREADS = 1     # measure(): latency and throughput on one CPU thread, so stages compare
REPEATS = 20    # measure(): timed calls per batch size (the median is reported)
COLUMNS = ("#", "stage", "kind", "test_accuracy", "params", "size", "lat b1 ms", "lat b64 ms",
           "samples/s b64", "time s")  # samples: images, rows or signals


@dataclass
class Row:
    index: int
    stage: str         # "best" for the search's model, else the stage's name
    kind: str          # float32, float16, int8_dynamic, int8_static
    figures: dict
    seconds: float     # training or conversion time of this stage
    reused: bool = False


@dataclass
class Outcome:
    run_id: str
    folder: Path
    source: Source
    rows: list[Row] = field(default_factory=list)
    final_model: Path | None = None
    model_version: str | None = None
    registry_note: str = ""


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def stage_table(rows: list[Row]) -> str:
    """Every stage's figures, aligned; latency and throughput on one CPU thread."""
    lines = [list(COLUMNS)]
    for r in rows:
        f = r.figures
        eager = "" if f.get("timed_torchscript", 1.0) else " (eager)"  # could not be traced
        lines.append([str(r.index), r.stage + (" (earlier)" if r.reused and r.index else ""),
                      r.kind + eager,
                      f"{f.get('test_accuracy', float('nan')):.4f}",
                      f"{int(f.get('params', 0)):,}", _size(f.get("size_bytes", 0)),
                      f"{f.get('latency_ms_b1', float('nan')):.3f}",
                      f"{f.get('latency_ms_b64', float('nan')):.2f}",
                      f"{f.get('throughput_b64', float('nan')):,.0f}",
                      f"{r.seconds:.1f}"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    right = {0, 3, 4, 5, 6, 7, 8, 9}
    return "\n".join("  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(line, widths))).rstrip()
                     for line in lines)


def summary_text(out: Outcome) -> str:
    lines = [f"stages of {out.run_id} (CPU latency: median of {REPEATS} calls on {THREADS} "
             "thread, each model traced by TorchScript and frozen, as int8 ships; size: its saved "
             "state_dict):", stage_table(out.rows)]
    if out.final_model is not None:
        kind = out.rows[-1].kind if out.rows else "?"
        lines.append(f"final model: {out.final_model} ({kind}); {out.registry_note}")
    return "\n".join(lines)
