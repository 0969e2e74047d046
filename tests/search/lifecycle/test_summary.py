"""The tables a search prints: numbers right-aligned with one format per column, parameters
under their full names, `test_accuracy` as everywhere else; and the opening lines."""
from __future__ import annotations

import re

from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from search.lifecycle.plan import Objective
from search.lifecycle.summary import column_texts, trial_table

ACC = Objective("val_accuracy", "maximize")


def test_a_column_of_fractions_shares_its_decimals():
    assert column_texts([0.98765, 0.5, None]) == (["0.9877", "0.5000", "-"], True)
    assert column_texts([0.01857, 0.0174]) == (["0.01857", "0.01740"], True)
    assert column_texts([3, 12]) == (["3", "12"], True)
    assert column_texts(["adamw", "sgd"]) == (["adamw", "sgd"], False)
    # too many orders of magnitude for fixed decimals: all in scientific notation
    assert column_texts([1.5e-5, 0.1]) == (["1.500e-05", "1.000e-01"], True)


def _trial(number, value, lr, smoothing, opt, state=TrialState.COMPLETE):
    t = create_trial(
        state=state, value=value if state == TrialState.COMPLETE else None,
        params={"optimizer.lr": lr, "regularization.label_smoothing": smoothing,
                "optimizer.name": opt},
        distributions={"optimizer.lr": FloatDistribution(1e-4, 1.0, log=True),
                       "regularization.label_smoothing": FloatDistribution(0.0, 0.2),
                       "optimizer.name": CategoricalDistribution(["adamw", "sgd"])},
        user_attrs={"test_accuracy": value - 0.01 if value else None, "epochs_run": 12})
    t.number = number
    return t


def test_the_trial_table_is_aligned_under_full_names():
    trials = [_trial(3, 0.98123, 0.0123, 0.1, "adamw"), _trial(12, 0.9, 0.00051, 0.05, "sgd")]
    head, *rows = trial_table(trials, [ACC]).splitlines()
    assert head.split() == ["#", "state", "val_accuracy", "test_accuracy", "epochs",
                            "optimizer.lr", "regularization.label_smoothing", "optimizer.name"]
    spans = [[m.span() for m in re.finditer(r"\S+", line)] for line in (head, *rows)]
    for i, name in enumerate(head.split()):
        if name in ("state", "optimizer.name"):  # words: left-aligned
            assert len({s[i][0] for s in spans}) == 1, name
        else:  # numbers: right-aligned, same decimals down the column
            assert len({s[i][1] for s in spans}) == 1, name
            cells = [row[s[i][0]:s[i][1]] for row, s in zip(rows, spans[1:])]
            assert len({len(c.partition(".")[2]) for c in cells}) == 1, (name, cells)
    assert rows[0].split()[:5] == ["3", "COMPLETE", "0.9812", "0.9712", "12"]
    # learning rates 1.2e-2 and 5.1e-4: fixed decimals would need 7, so both in e-notation
    assert rows[0].split()[5:] == ["1.230e-02", "0.10000", "adamw"]
    assert rows[1].split()[5:] == ["5.100e-04", "0.05000", "sgd"]


def test_a_pruned_trial_without_a_value_shows_a_dash():
    table = trial_table([_trial(0, 0.5, 0.01, 0.0, "sgd"),
                         _trial(1, None, 0.02, 0.1, "adamw", state=TrialState.PRUNED)], [ACC])
    assert table.splitlines()[2].split()[:4] == ["1", "PRUNED", "-", "-"]
