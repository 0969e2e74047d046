"""Figures of a finished search, as PNG (matplotlib, Agg backend) and together in one
interactive page, plots.html (plotly, its library embedded so that it works offline and inside
MLflow's artifact viewer, which shows HTML from a blob URL where no relative file resolves):

- optimization_history: every trial by number, complete ones filled, pruned ones hollow at the
  value the study ranks them by (their last reported one), the best so far as a line; failed
  trials counted in the title. (Optuna's own plot draws complete trials only.)
- param_importances: Optuna's, PED-ANOVA, titled with the number of complete trials it rests on.
- parallel_coordinate: Optuna's plotly view, in plots.html only (as a PNG its axes overlap).
- pareto_front (several objectives): Optuna's.
- learning_curves: every trial's curve, pruned grey, failed dashed red, the best thick; the y
  axis zoomed to where trials differ (from the 10th percentile of the values after each
  curve's first epoch, for a metric to maximise), all values in plots.html.

A figure that cannot be drawn (too few complete trials, a single parameter) is skipped with its
reason: the report says why instead of failing the end of a search.
"""
from __future__ import annotations

import html
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

OPTUNA_PLOTS = ("optimization_history", "param_importances", "parallel_coordinate")
PAGE = "plots.html"
MIN_COMPLETE = 2  # importances and parallel coordinates of fewer trials say nothing
KEEP = 0.9  # the learning curves' y axis shows the top 90 % of the values after epoch 1


@dataclass
class Drawn:
    """What was drawn: PNG files, (title, plotly figure) for the page, figures skipped."""

    files: list[Path] = field(default_factory=list)
    interactive: list[tuple[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _agg():
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster head node; never opens a window
    import matplotlib.pyplot as plt

    return plt


def _why(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def whole_ticks(high: float) -> dict:
    """Plotly's x axis for trial or epoch numbers: whole steps, about ten ticks (left to
    itself it ticks 0, 0.5, 1, 1.5 for three trials)."""
    return {"tick0": 0, "dtick": max(1, math.ceil(high / 10))}


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _agg().close(fig)
    return path


# ---------------------------------------------------------------------------- history
@dataclass
class History:
    """The trials of a study by state, for the optimisation history (first objective)."""

    complete: list[tuple[int, float]]
    pruned: list[tuple[int, float]]
    failed: list[int]
    best: list[tuple[int, float]]  # the best complete value so far, at each complete trial
    maximize: bool

    @property
    def title(self) -> str:
        n = len(self.complete) + len(self.pruned) + len(self.failed)
        return (f"Optimisation history of {n} trials: {len(self.complete)} complete, "
                f"{len(self.pruned)} pruned (hollow: last reported value), "
                f"{len(self.failed)} failed")


def history_of(study: Any) -> History:
    maximize = study.directions[0].name == "MAXIMIZE"
    complete, pruned, failed, best = [], [], [], []
    top = None
    for t in study.get_trials(deepcopy=False):
        state = t.state.name
        if state == "COMPLETE" and t.values:
            value = float(t.values[0])
            complete.append((t.number, value))
            if math.isfinite(value) and (top is None or (value > top if maximize
                                                         else value < top)):
                top = value
            if top is not None:
                best.append((t.number, top))
        elif state == "PRUNED":
            value = t.values[0] if t.values else (
                t.intermediate_values[max(t.intermediate_values)]
                if t.intermediate_values else None)
            if value is not None and math.isfinite(value):
                pruned.append((t.number, float(value)))
        elif state == "FAIL":
            failed.append(t.number)
    return History(complete, pruned, failed, best, maximize)


def history_figures(hist: History, target_name: str):
    """(matplotlib figure, plotly figure) of the optimisation history."""
    from matplotlib.ticker import MaxNLocator

    plt = _agg()
    fig, ax = plt.subplots(figsize=(8, 5))
    if hist.complete:
        ax.scatter(*zip(*hist.complete), s=28, color="tab:blue", zorder=3, label="complete")
    if hist.pruned:
        ax.scatter(*zip(*hist.pruned), s=28, facecolors="none", edgecolors="0.45", zorder=2,
                   label="pruned (last reported value)")
    if hist.best:
        ax.step(*zip(*hist.best), where="post", color="tab:red", lw=1.5, label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(target_name)
    ax.set_title(hist.title, fontsize=10)
    ax.grid(alpha=0.3)
    if hist.complete or hist.pruned:
        ax.legend(loc="best", fontsize=8)

    import plotly.graph_objects as go

    pfig = go.Figure()
    if hist.complete:
        xs, ys = zip(*hist.complete)
        pfig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name="complete",
                                  marker={"color": "#1f77b4", "size": 8}))
    if hist.pruned:
        xs, ys = zip(*hist.pruned)
        pfig.add_trace(go.Scatter(x=xs, y=ys, mode="markers",
                                  name="pruned (last reported value)",
                                  marker={"symbol": "circle-open", "color": "grey",
                                          "size": 8}))
    if hist.best:
        xs, ys = zip(*hist.best)
        pfig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="best so far",
                                  line={"shape": "hv", "color": "#d62728"}))
    pfig.update_layout(title=hist.title, xaxis_title="trial", yaxis_title=target_name)
    numbers = [n for n, _ in hist.complete + hist.pruned]
    pfig.update_xaxes(**whole_ticks(max(numbers, default=1)))
    return fig, pfig


# ---------------------------------------------------------------------------- Optuna's own
def _target(study: Any) -> dict:
    """Multi-objective studies are plotted by their first objective."""
    if len(study.directions) > 1:
        return {"target": lambda t: t.values[0], "target_name": "objective 0"}
    return {}


def importance_title(study: Any) -> str:
    n = sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False))
    return f"Hyperparameter importances (PED-ANOVA) from {n} complete trial" + \
        ("" if n == 1 else "s")


def optuna_plots(study: Any, folder: Path, target_name: str = "objective",
                 drawn: Drawn | None = None) -> Drawn:
    """The study's figures into `folder` (PNG) and `drawn.interactive` (plotly)."""
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm
    from optuna.importance import PedAnovaImportanceEvaluator

    drawn = drawn if drawn is not None else Drawn()
    folder.mkdir(parents=True, exist_ok=True)
    args = _target(study) or {"target_name": target_name}
    name = args.get("target_name", target_name)
    complete = sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False))
    if complete < MIN_COMPLETE:  # Optuna would draw empty axes (and warn)
        why = f"needs {MIN_COMPLETE} complete trials, the study has {complete}"
        drawn.skipped.update({"param_importances": why, "parallel_coordinate": why})
    hist = history_of(study)
    try:
        if not (hist.complete or hist.pruned):
            raise ValueError("no trial has a value yet")
        fig, pfig = history_figures(hist, name)
        drawn.files.append(_save(fig, folder / "optimization_history.png"))
        drawn.interactive.append(("Optimisation history", pfig))
    except Exception as err:
        drawn.skipped["optimization_history"] = _why(err)
        _agg().close("all")
    # Optuna's matplotlib functions switch the global style to ggplot (grey axes): only
    # inside this block
    with warnings.catch_warnings(), _agg().rc_context():
        warnings.simplefilter("ignore")  # ExperimentalWarning of the matplotlib backend
        if complete < MIN_COMPLETE:
            return drawn
        try:
            title = importance_title(study)
            ax = pm.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator(),
                                           **args)
            ax.set_title(title, loc="left")  # in place of Optuna's (left-aligned)
            drawn.files.append(_save(ax.figure, folder / "param_importances.png"))
            pfig = pv.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator(),
                                             **args)
            pfig.update_layout(title=title)
            drawn.interactive.append(("Hyperparameter importances", pfig))
        except Exception as err:
            drawn.skipped["param_importances"] = _why(err)
            _agg().close("all")
        try:
            drawn.interactive.append(("Parallel coordinates",
                                      pv.plot_parallel_coordinate(study, **args)))
        except Exception as err:
            drawn.skipped["parallel_coordinate"] = _why(err)
        if len(study.directions) > 1:  # every objective on its own axis, the front marked
            front = {"target_names": list(study.metric_names)} if study.metric_names else {}
            try:
                ax = pm.plot_pareto_front(study, **front)
                drawn.files.append(_save(ax.figure, folder / "pareto_front.png"))
                drawn.interactive.append(("Pareto front", pv.plot_pareto_front(study, **front)))
            except Exception as err:
                drawn.skipped["pareto_front"] = _why(err)
                _agg().close("all")
    return drawn


# ---------------------------------------------------------------------------- curves
def zoom(curves: Iterable[tuple[str, str, list[tuple[int, float]]]], mode: str = "max",
         keep: float = KEEP) -> tuple[float, float] | None:
    """y limits that show where trials differ: for a metric to maximise, from the (1 - keep)
    quantile of the values after each curve's first epoch to the top (mirrored for one to
    minimise); None when that would hide little."""
    values = sorted(v for _, _, points in curves
                    for _, v in (sorted(points)[1:] or points) if math.isfinite(v))
    everything = [v for _, _, points in curves for _, v in points if math.isfinite(v)]
    if len(values) < 3:
        return None

    def quantile(q: float) -> float:
        at = q * (len(values) - 1)
        low = math.floor(at)
        return values[low] + (values[min(low + 1, len(values) - 1)] - values[low]) * (at - low)

    lo, hi = (quantile(1 - keep), max(everything)) if mode == "max" else \
        (min(everything), quantile(keep))
    span = max(everything) - min(everything)
    if span == 0 or hi - lo > 0.5 * span:  # the axis is not squashed: leave it
        return None
    pad = 0.05 * (hi - lo) or 0.01 * abs(hi) or 0.01
    return lo - pad, hi + pad


def learning_curves(curves: Iterable[tuple[str, str, list[tuple[int, float]]]], folder: Path,
                    metric: str = "val_accuracy", best: str | None = None, mode: str = "max",
                    drawn: Drawn | None = None) -> Drawn:
    """One figure of (label, state, [(epoch, value)]) curves: complete trials in colour, pruned
    grey, failed dashed red, the best thick; y zoomed (`zoom`)."""
    from matplotlib.ticker import MaxNLocator

    drawn = drawn if drawn is not None else Drawn()
    plt = _agg()
    folder.mkdir(parents=True, exist_ok=True)
    curves = [c for c in curves if c[2]]
    limits = zoom(curves, mode)
    fig, ax = plt.subplots(figsize=(8, 5))
    style: dict[str, Callable[[str], dict]] = {
        "COMPLETE": lambda label: {"lw": 3.0 if label == best else 1.2, "alpha": 0.9},
        "PRUNED": lambda label: {"color": "0.6", "lw": 0.8, "alpha": 0.6},
        "FAILED": lambda label: {"color": "tab:red", "lw": 0.8, "ls": "--", "alpha": 0.7},
    }
    shown = set()
    for label, state, points in sorted(curves, key=lambda c: c[1] == "COMPLETE"):
        xs, ys = zip(*sorted(points))
        kw = style.get(state, style["COMPLETE"])(label)
        legend = label if state == "COMPLETE" and label == best else \
            (state.lower() if state not in shown else None)
        if legend == state.lower():  # the best's own entry does not name the others
            shown.add(state)
        ax.plot(xs, ys, marker="o", ms=2.5, label=legend, **kw)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    title = f"Learning curves of {len(curves)} trials (pruned in grey)"
    if limits is not None:
        ax.set_ylim(*limits)
        out = sum(all(not limits[0] <= v <= limits[1] for _, v in points)
                  for _, _, points in curves)
        title += "\ny zoomed to where trials differ" + \
            (f" ({out} below or above)" if out else "") + "; every value in plots.html"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="best", fontsize=8)
    drawn.files.append(_save(fig, folder / "learning_curves.png"))

    import plotly.graph_objects as go

    pfig = go.Figure()
    for label, state, points in curves:
        xs, ys = zip(*sorted(points))
        line = {"color": "lightgrey"} if state == "PRUNED" else \
            {"dash": "dash", "color": "#d62728"} if state == "FAILED" else \
            {"width": 4} if label == best else {}
        pfig.add_trace(go.Scatter(x=xs, y=ys, name=f"{label} ({state.lower()})",
                                  mode="lines+markers", line=line))
    pfig.update_layout(title=f"Learning curves of {len(curves)} trials (double-click: every "
                             "value)", xaxis_title="epoch", yaxis_title=metric)
    if limits is not None:
        pfig.update_yaxes(range=list(limits))
    pfig.update_xaxes(**whole_ticks(max((e for _, _, points in curves for e, _ in points),
                                        default=1)))
    drawn.interactive.append(("Learning curves", pfig))
    return drawn


# ---------------------------------------------------------------------------- the page
def write_page(drawn: Drawn, folder: Path, title: str) -> Path | None:
    """Every interactive figure in one HTML page, plotly.js embedded once (no network)."""
    if not drawn.interactive:
        return None
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
             "</title></head>\n<body style='font-family: sans-serif; margin: 1em 2em'>\n"
             f"<h1>{html.escape(title)}</h1>"]
    for i, (heading, pfig) in enumerate(drawn.interactive):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(pfig.to_html(full_html=False, include_plotlyjs=i == 0,
                                  default_height="520px"))
    if drawn.skipped:
        parts.append("<h2>Not drawn</h2><ul>" + "".join(
            f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in drawn.skipped.items())
            + "</ul>")
    parts.append("</body></html>\n")
    path = folder / PAGE
    path.write_text("\n".join(parts), encoding="utf-8")
    drawn.files.append(path)
    return path
