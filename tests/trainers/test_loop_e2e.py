"""The default config, end to end, on the bundled 5,000 MNIST digits."""
from __future__ import annotations

import pytest

from trainers import fit


@pytest.mark.slow
def test_default_config_learns_mnist5k(tmp_path):
    reports = []
    # both cores: the suite runs one test at a time (57 s on one thread, 36 s on two)
    result = fit({"train": {"threads": 2}}, report=reports.append, checkpoint_dir=str(tmp_path))
    assert len(reports) == 12 and reports[-1]["val_accuracy"] > reports[0]["val_accuracy"]
    assert result.best_val_accuracy >= 0.97
    assert result.test_accuracy >= 0.975  # STACK.md: a hand-written CNN gets ~98.6%
    assert result.checkpoint == str(tmp_path / "best.pt")
