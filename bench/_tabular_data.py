"""The wine example's data in the layout today's trainer takes (bench/bench_tabular.py).

Until data factories may return their own split and N×F tables (issue 11 item 3-4), the
trainer takes one pooled (images, labels) pair of N×C×H×W or N×H×W and splits it itself: the
example's pooled rows become N×1×F (the trainer sees them as 1×F images; the example's MLP
flattens whatever it gets)."""
from __future__ import annotations


def load_pooled(**kwargs):
    from spaces.examples import wine

    x, y = wine.load(parts=False, **kwargs)
    return x.unsqueeze(1), y
