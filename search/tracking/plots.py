"""Figures of a finished search: Optuna's optimisation history, parallel coordinates and
parameter importances (PED-ANOVA, Optuna 5's default evaluator), the Pareto front of a
multi-objective study (Optuna's plot_pareto_front), and every trial's learning
curve in one figure with pruned trials greyed. PNG always (matplotlib, Agg backend); interactive
HTML as well when plotly is importable.

A figure that cannot be drawn (too few finished trials, a single parameter) is skipped with its
reason: the report says why instead of failing the end of a search.
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

OPTUNA_PLOTS = ("optimization_history", "parallel_coordinate", "param_importances")


def _agg():
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster head node; never opens a window
    import matplotlib.pyplot as plt

    return plt


def _target(study: Any) -> dict:
    """Multi-objective studies are plotted by their first objective."""
    if len(study.directions) > 1:
        return {"target": lambda t: t.values[0], "target_name": "objective 0"}
    return {}


def optuna_plots(study: Any, folder: Path, target_name: str = "objective") \
        -> tuple[list[Path], dict[str, str]]:
    """Writes the Optuna figures into `folder`; returns (files, {figure: why skipped})."""
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm

    plt = _agg()
    folder.mkdir(parents=True, exist_ok=True)
    files, skipped = [], {}
    html = importlib.util.find_spec("plotly") is not None
    names = OPTUNA_PLOTS + (("pareto_front",) if len(study.directions) > 1 else ())
    for name in names:
        args = _target(study) or {"target_name": target_name}
        if name == "pareto_front":  # every objective on its own axis, the front highlighted
            args = {"target_names": list(study.metric_names or [])} if study.metric_names \
                else {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ExperimentalWarning of the matplotlib backend
                ax = getattr(pm, f"plot_{name}")(study, **args)
            fig = _figure_of(ax)
            fig.savefig(folder / f"{name}.png", dpi=110, bbox_inches="tight")
            plt.close(fig)
            files.append(folder / f"{name}.png")
            if html:
                getattr(pv, f"plot_{name}")(study, **args).write_html(
                    folder / f"{name}.html", include_plotlyjs=True)  # viewable offline
                files.append(folder / f"{name}.html")
        except Exception as err:
            skipped[name] = str(err).strip().splitlines()[0][:200] if str(err).strip() \
                else type(err).__name__
            plt.close("all")
    return files, skipped


def _figure_of(ax: Any):
    if hasattr(ax, "figure"):
        return ax.figure
    return ax.flat[0].figure  # an array of axes (several parameters)


def learning_curves(curves: Iterable[tuple[str, str, list[tuple[int, float]]]], folder: Path,
                    metric: str = "val_accuracy", best: str | None = None) -> list[Path]:
    """One figure of (label, state, [(epoch, value)]) curves: complete trials in colour, pruned
    grey, failed dashed red, the best thick. Returns the files written."""
    plt = _agg()
    folder.mkdir(parents=True, exist_ok=True)
    curves = [c for c in curves if c[2]]
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
        shown.add(state)
        ax.plot(xs, ys, marker="o", ms=2.5, label=legend, **kw)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"learning curves of {len(curves)} trials (pruned in grey)")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(loc="best", fontsize=8)
    out = [folder / "learning_curves.png"]
    fig.savefig(out[0], dpi=110, bbox_inches="tight")
    plt.close(fig)
    if importlib.util.find_spec("plotly") is not None:
        import plotly.graph_objects as go

        pfig = go.Figure()
        for label, state, points in curves:
            xs, ys = zip(*sorted(points))
            grey = {"color": "lightgrey"} if state == "PRUNED" else {}
            pfig.add_trace(go.Scatter(x=xs, y=ys, name=f"{label} ({state.lower()})",
                                      mode="lines+markers", line=grey))
        pfig.update_layout(xaxis_title="epoch", yaxis_title=metric)
        pfig.write_html(folder / "learning_curves.html", include_plotlyjs=True)
        out.append(folder / "learning_curves.html")
    return out
