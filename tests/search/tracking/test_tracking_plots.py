"""The figures of a search (search/tracking/plots.py) on a real Optuna study with complete,
pruned and failed trials: the history shows the pruned ones, the importances say how many
trials they rest on, the learning curves are zoomed to where trials differ, parallel
coordinates only as an interactive view, and one HTML page that needs no network."""
from __future__ import annotations

import math
import re

import pytest

from search.tracking import plots


@pytest.fixture(scope="module")
def study():
    """12 trials of a made-up objective: 6 complete, 5 pruned (reporting per epoch, like the
    searcher), 1 failed."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for i in range(12):
        trial = study.ask()
        lr = trial.suggest_float("optimizer.lr", 1e-4, 1e-1, log=True)
        width = trial.suggest_int("model.width", 8, 64)
        value = 0.9 + 0.05 * math.exp(-abs(math.log10(lr) + 2)) + width / 6400
        if i == 7:
            study.tell(trial, state=TrialState.FAIL)
        elif i % 2:
            for epoch in (1, 2):
                trial.report(value - 0.3 / epoch, epoch)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, value)
    return study


def test_history_shows_pruned_trials_at_their_last_value(study, tmp_path):
    hist = plots.history_of(study)
    assert len(hist.complete) == 6 and len(hist.pruned) == 5 and hist.failed == [7]
    for number, value in hist.pruned:
        assert value == study.trials[number].intermediate_values[2]
    assert hist.best[-1][1] == study.best_value
    assert hist.title.startswith("Optimisation history of 12 trials: 6 complete, 5 pruned")
    drawn = plots.optuna_plots(study, tmp_path, "val_accuracy")
    assert (tmp_path / "optimization_history.png").stat().st_size > 10_000
    [(_, fig)] = [(t, f) for t, f in drawn.interactive if t == "Optimisation history"]
    by_name = {trace.name: trace for trace in fig.data}
    assert list(by_name["pruned (last reported value)"].x) == [n for n, _ in hist.pruned]
    assert len(by_name["complete"].x) == 6 and "best so far" in by_name
    assert fig.layout.xaxis.title.text == "trial" and fig.layout.yaxis.title.text == \
        "val_accuracy"
    assert (fig.layout.xaxis.tick0, fig.layout.xaxis.dtick) == (0, 2)  # trials 0-11: 0, 2, ...


def test_trial_and_epoch_axes_tick_whole_numbers(tmp_path):
    """Left to itself, plotly ticks 0, 0.5, 1, 1.5, 2 for three trials (or epochs)."""
    three = plots.History(complete=[(0, 0.5), (2, 0.6)], pruned=[(1, 0.4)], failed=[],
                          best=[(0, 0.5), (2, 0.6)], maximize=True)
    png, few = plots.history_figures(three, "val_accuracy")
    assert few.layout.xaxis.dtick == 1
    assert all(float(x).is_integer() for x in png.axes[0].get_xticks())  # not 0.5, 1.5
    assert plots.whole_ticks(2) == {"tick0": 0, "dtick": 1}
    assert plots.whole_ticks(999) == {"tick0": 0, "dtick": 100}
    curves = [("trial 0", "COMPLETE", [(1, 0.5), (2, 0.6), (3, 0.7)])]
    drawn = plots.learning_curves(curves, tmp_path, "val_accuracy", "trial 0", "max")
    [fig] = [f for t, f in drawn.interactive if t == "Learning curves"]
    assert (fig.layout.xaxis.tick0, fig.layout.xaxis.dtick) == (0, 1)


def test_importances_state_their_sample(study, tmp_path):
    drawn = plots.optuna_plots(study, tmp_path, "val_accuracy")
    assert "param_importances" not in drawn.skipped
    assert (tmp_path / "param_importances.png").is_file()
    [fig] = [f for t, f in drawn.interactive if t == "Hyperparameter importances"]
    assert fig.layout.title.text == \
        "Hyperparameter importances (PED-ANOVA) from 6 complete trials"


def test_parallel_coordinates_only_as_an_interactive_view(study, tmp_path):
    drawn = plots.optuna_plots(study, tmp_path, "val_accuracy")
    assert not (tmp_path / "parallel_coordinate.png").exists()
    [fig] = [f for t, f in drawn.interactive if t == "Parallel coordinates"]
    # Optuna's own view: an axis per parameter and the objective, a line per complete trial
    assert list(fig.layout.xaxis.ticktext) == ["val_accuracy", "model.width", "optimizer.lr"]
    assert len([t for t in fig.data if t.mode == "lines"]) == 6


def _curves():
    """Four trials near 0.95, one pruned at 0.6, one that diverged to chance (0.1)."""
    good = [(f"trial {i}", "COMPLETE", [(1, 0.7 + i / 100), (2, 0.93 + i / 100),
                                       (3, 0.95 + i / 100), (4, 0.955 + i / 100)])
            for i in range(4)]
    return good + [("trial 4", "PRUNED", [(1, 0.5), (2, 0.6)]),
                   ("trial 5", "FAILED", [(1, 0.1), (2, 0.1)])]


def test_learning_curves_zoom_to_where_trials_differ(tmp_path):
    curves = _curves()
    lo, hi = plots.zoom(curves, "max")
    assert 0.6 <= lo < 0.93 and 0.985 <= hi < 1.0  # the complete trials' epochs 2-4 in view
    drawn = plots.learning_curves(curves, tmp_path, "val_accuracy", "trial 3", "max")
    assert (tmp_path / "learning_curves.png").stat().st_size > 10_000
    [fig] = [f for t, f in drawn.interactive if t == "Learning curves"]
    assert tuple(fig.layout.yaxis.range) == (lo, hi)
    # a loss is zoomed from the other end; curves that already fill the axis are left alone
    losses = [(label, state, [(e, 1.0 - v) for e, v in points])
              for label, state, points in curves]
    lo_loss, hi_loss = plots.zoom(losses, "min")
    assert lo_loss == pytest.approx(1.0 - hi) and hi_loss < 0.5
    close = [(f"t{i}", "COMPLETE", [(1, 0.5 + i / 10), (2, 0.6 + i / 10)]) for i in range(3)]
    assert plots.zoom(close, "max") is None


def test_one_page_works_offline(study, tmp_path):
    drawn = plots.optuna_plots(study, tmp_path, "val_accuracy")
    plots.learning_curves(_curves(), tmp_path, "val_accuracy", "trial 3", "max", drawn)
    page = plots.write_page(drawn, tmp_path, "digits run-1: plots")
    assert page == tmp_path / "plots.html" and page in drawn.files
    text = page.read_text()
    # every figure, plotly.js embedded once and no script fetched from anywhere
    assert [h for h in re.findall(r"<h2>(.*?)</h2>", text)] == [
        "Optimisation history", "Hyperparameter importances", "Parallel coordinates",
        "Learning curves"]
    assert not re.search(r"<script[^>]*\bsrc=", text)
    assert text.count("Plotly.newPlot") == 4
    assert len(text) > 3_000_000  # the library itself (its ~4.8 MB minified source)


def test_a_figure_that_cannot_be_drawn_is_skipped_with_its_reason(tmp_path):
    import optuna

    study = optuna.create_study(direction="maximize")
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    drawn = plots.optuna_plots(study, tmp_path, "val_accuracy")
    assert set(drawn.skipped) >= {"param_importances"}
    assert all(reason for reason in drawn.skipped.values())


def test_the_learning_curves_legend_names_every_kind_of_curve(tmp_path, monkeypatch):
    """The best trial by its name, and one entry per state besides: the other complete
    trials were left unnamed when the best came first."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    curves = [("trial 0", "COMPLETE", [(1, 0.5), (2, 0.7)]),
              ("trial 1", "PRUNED", [(1, 0.3)]),
              ("trial 2", "COMPLETE", [(1, 0.4), (2, 0.6)])]
    plots.learning_curves(curves, tmp_path, "val_accuracy", "trial 0", "max")
    [fig] = figures
    labels = sorted(fig.axes[0].get_legend_handles_labels()[1])
    plots._agg().close(fig)
    assert labels == ["complete", "pruned", "trial 0"]
