"""Property tests: random spaces over the catalog, sampled with Optuna.

The generator writes a space as a user would (YAML text) and keeps its own record of every
parameter: the Optuna name it must get, the branch it lives in, its `when`, and its domain. The
checks use that record, not the Space's own bookkeeping:
- every sampled value lies in its declared domain and passes the catalog check;
- a parameter is sampled exactly when its parent took its branch and its `when` holds;
- settings nobody set keep their defaults; each group holds exactly its variant's options;
- load_space(space.to_yaml()) == space; the same seed gives the same samples.
"""
from __future__ import annotations

import math
from decimal import Decimal

import optuna
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spaces import load_space
from spaces.values import one_of_values, passes, same
from spaces.yamlio import dump_yaml, segment
from trainers.catalog import GROUPS, defaults

# Options whose values other rules tie together (nesterov/momentum, depth/image size, warmup/
# epochs, ...): those rules have their own tests; here every generated space must load.
EXCLUDED = {"optimizer.nesterov", "optimizer.dampening", "data.batch_size_max",
            "data.batch_size_double_every", "scheduler.warmup_epochs", "train.epochs",
            "train.swa_start", "model.depth", "model.downsample", "data.resize",
            "data.image_size", "augment.cutout", "augment.cutout_size",
            "data.test_fraction",  # null or 0 on datasets with their own test split
            # padding = dilation·(kernel_size - 1)/2 must fit the feature maps (reflect,
            # circular): a fresh example database found digits + dilation 4 (8×8 images)
            "model.dilation", "model.kernel_size"}
NO_VARIANTS = {"factory", "image_folder",  # they need required fixed values (a path, a root)
               "cnn1d"}  # sequences only: every generated dataset holds images
FLOATS = [0.0, 1e-5, 1e-3, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.9, 0.99, 1.0, 2.0, 5.0]
INTS = [0, 1, 2, 3, 4, 5, 8, 16, 32, 64]
LISTS = [[0.9, 0.999], [0.8, 0.99], [0.5, 0.9]]


def _options(group, variants):
    """Searchable options valid (and checkable) for every variant in `variants`."""
    names = set.intersection(*(set(group.options_for(v)) for v in variants)) \
        if group.selector else set(group.options)
    out = []
    for name in sorted(names):
        opts = [group.options_for(v)[name] for v in variants] if group.selector \
            else [group.options[name]]
        if name == group.selector or f"{group.name}.{name}" in EXCLUDED \
                or not opts[0].searchable or not _pool(opts):
            continue
        out.append((name, opts))
    return out


def _pool(opts):
    kind = opts[0].kind
    pool = {"float": FLOATS, "int": INTS, "bool": [True, False], "floats": LISTS}.get(kind)
    if kind == "str":
        pool = one_of_values(opts[0])
    return [v for v in (pool or []) if all(passes(o, v) for o in opts)]


def _float_step(low, high, parts):
    """A step that divides high - low as written decimals (as Optuna requires)."""
    return float((Decimal(str(high)) - Decimal(str(low))) / parts)


@st.composite
def _branch(draw, group, variants, taken, prefix, choice, record, depth):
    """The sub-specs of one branch: options of the group not `taken` along this path (the
    set is updated with what the branch uses)."""
    free = [(n, o) for n, o in _options(group, variants) if n not in taken]
    if not free:
        return {}
    picked = draw(st.lists(st.sampled_from(free), max_size=2, unique_by=lambda x: x[0]))
    taken |= {n for n, _ in picked}
    sub = {}
    for sub_name, sub_opts in picked:
        full = f"{prefix}.{segment(choice)}.{sub_name}"
        record[full] = {"path": f"{group.name}.{sub_name}", "parent": (prefix, choice)}
        if draw(st.integers(0, 4)) == 0:  # a constant inside the branch
            value = draw(st.sampled_from(_pool(sub_opts)))
            record[full].update(kind="constant", value=value)
            sub[sub_name] = value
        else:
            sub[sub_name] = draw(_spec(sub_opts, record, depth + 1, group, variants, taken,
                                       full))
    return sub


def _branches(draw, group, variants, taken, prefix, choices, record, depth):
    """Sibling branches may reuse an option (only one is taken); later specs may not."""
    base, out = set(taken), {}
    for choice in choices:
        local = set(base)
        out[choice] = draw(_branch(group, variants, local, prefix, choice, record, depth))
        taken |= local
    return out


@st.composite
def _spec(draw, opts, record, depth, group, variants, taken, name):
    """A spec for one option; fills record[name] with what the oracle needs."""
    kind, pool = opts[0].kind, _pool(opts)
    entry = record.setdefault(name, {"path": f"{group.name}.{name.split('.')[-1]}"})
    numeric = kind in ("float", "int") and len(pool) >= 2
    if numeric and draw(st.booleans()):
        low, high = sorted(draw(st.lists(st.sampled_from(pool), min_size=2, max_size=2,
                                         unique=True)))
        if kind == "int" and not all(all(passes(o, v) for o in opts)
                                     for v in range(low, high + 1)):
            high = low
        spec = {"low": low, "high": high}
        if low > 0 and draw(st.booleans()):
            spec["log"] = True
        elif high > low and draw(st.booleans()):
            parts = draw(st.sampled_from([k for k in (1, 2, 4)
                                          if kind == "float" or (high - low) % k == 0]))
            spec["step"] = _float_step(low, high, parts) if kind == "float" \
                else (high - low) // parts
        entry.update(kind="range", low=low, high=high, step=spec.get("step"), int=kind == "int")
        return spec
    choices = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4,
                            unique_by=lambda v: str(v)))
    entry.update(kind="choices", choices=choices)
    if depth < 3 and kind != "floats" and draw(st.booleans()):
        return {"choices": _branches(draw, group, variants, taken, name, choices, record,
                                     depth)}
    return {"choices": choices}


@st.composite
def spaces_text(draw):
    space, record = {}, {}
    for gname in draw(st.lists(st.sampled_from(list(GROUPS)), min_size=1, max_size=4,
                               unique=True)):
        group, entries = GROUPS[gname], {}
        variants = {group.options[group.selector].default} if group.selector else {None}
        if group.selector and draw(st.booleans()):
            names = [v for v in group.variants if v not in NO_VARIANTS]
            picked = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
            sel = f"{gname}.{group.selector}"
            record[sel] = {"path": sel, "kind": "choices", "choices": picked}
            taken = {group.selector}
            entries[group.selector] = {"choices": {
                v: draw(_branch(group, {v}, set(taken), sel, v, record, 0)) for v in picked}}
            variants = set(picked)
        in_branches = {r["path"].split(".", 1)[1] for r in record.values()
                       if r["path"].startswith(gname + ".")}
        top = [x for x in _options(group, variants) if x[0] not in in_branches]
        picked_top = draw(st.lists(st.sampled_from(top), max_size=3,
                                   unique_by=lambda x: x[0])) if top else []
        taken = in_branches | {n for n, _ in picked_top} | {group.selector}
        for name, opts in picked_top:
            entries[name] = draw(_spec(opts, record, 0, group, variants, taken,
                                       f"{gname}.{name}"))
        space[gname] = entries
    # `when` on a categorical of an earlier group (never a cycle); never on a selector, whose
    # fallback variant would then be possible too
    order = list(GROUPS)
    targets = [n for n, r in record.items() if r.get("kind") == "choices"]
    for name in space_roots(space):
        gname, key = name.split(".", 1)
        earlier = [t for t in targets if order.index(t.split(".")[0]) < order.index(gname)]
        if key != GROUPS[gname].selector and earlier and draw(st.integers(0, 2)) == 0:
            target = draw(st.sampled_from(earlier))
            values = draw(st.lists(st.sampled_from(record[target]["choices"]), min_size=1,
                                   unique_by=lambda v: str(v)))
            space[gname][key]["when"] = {target: values}
            record[name]["when"] = (target, values)
    # fixed values: what a setting falls back to when no active parameter sets it
    doc: dict = {"seed": draw(st.integers(0, 3))}
    for gname in space:
        group = GROUPS[gname]
        selector = space[gname].get(group.selector) if group.selector else None
        variants = set(selector["choices"]) if selector else \
            ({group.options[group.selector].default} if group.selector else {None})
        for name, opts in draw(st.lists(st.sampled_from(_options(group, variants)),
                                        max_size=2, unique_by=lambda x: x[0])) \
                if _options(group, variants) else []:
            doc.setdefault(gname, {})[name] = draw(st.sampled_from(_pool(opts)))
    doc["space"] = space
    record["__fixed__"] = {g: v for g, v in doc.items() if g in GROUPS}
    record["__seed__"] = doc["seed"]
    return dump_yaml(doc), record


def space_roots(space):
    return [f"{g}.{k}" for g, entries in space.items() for k in entries]


def _active(name, record, params, memo):
    if name not in memo:
        r = record[name]
        ok = True
        if "parent" in r:
            parent, branch = r["parent"]
            ok = _active(parent, record, params, memo) and same(params.get(parent), branch) \
                and parent in params
        if ok and "when" in r:
            target, values = r["when"]
            ok = target in params and any(same(params[target], v) for v in values)
        memo[name] = ok
    return memo[name]


def _in_domain(value, r):
    if r["kind"] == "choices":
        return any(same(value, c) for c in r["choices"])
    if r["int"] and (isinstance(value, bool) or not isinstance(value, int)):
        return False
    if not r["low"] - 1e-12 <= value <= r["high"] + 1e-12:
        return False
    if r["step"]:
        k = (value - r["low"]) / r["step"]
        return math.isclose(k, round(k), abs_tol=1e-6)
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spaces_text())
def test_random_spaces_sample_inside_their_domains(case):
    text, record = case
    record = dict(record)
    fixed = record.pop("__fixed__")
    seed = record.pop("__seed__")
    space = load_space(text, filename="generated.yaml")
    names = {p.name for p in space.params}
    assert names == {n for n, r in record.items() if r.get("kind") != "constant"}, text
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(6):
        trial = study.ask()
        config = space.define_by_run(trial)
        params = {p.name: p.decode(trial.params[p.name]) for p in space.params
                  if p.name in trial.params}
        memo: dict[str, bool] = {}
        selected = {g: config[g][grp.selector] for g, grp in GROUPS.items() if grp.selector}
        expected = defaults(selected)
        expected["train"]["seed"] = expected["data"]["split_seed"] = seed  # the master seed
        for gname, values in fixed.items():
            expected[gname].update(values)
        set_paths = set()
        for name, r in record.items():
            active = _active(name, record, params, memo)
            gname, key = r["path"].split(".", 1)
            if r.get("kind") == "constant":
                if active:
                    assert same(config[gname][key], r["value"]), (name, text)
                    set_paths.add(r["path"])
                continue
            assert (name in trial.params) == active, (name, trial.params, text)
            if active:
                assert _in_domain(params[name], r), (name, params[name], r)
                assert same(config[gname][key], params[name]), (name, config[gname][key])
                set_paths.add(r["path"])
        for gname, group in GROUPS.items():
            options = group.options_for(selected.get(gname))
            assert set(config[gname]) == set(options), gname
            for key, value in config[gname].items():
                assert passes(options[key], value), (gname, key, value)
                if f"{gname}.{key}" not in set_paths:
                    assert same(value, expected[gname][key]), (gname, key, value)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spaces_text(), st.integers(0, 2**16))
def test_random_spaces_round_trip_and_repeat(case, seed):
    text, _ = case
    space = load_space(text)
    again = load_space(space.to_yaml())
    assert again == space, (text, space.to_yaml())
    first = space.sample(4, seed)
    assert first == space.sample(4, seed)
    assert first == again.sample(4, seed)
    for params, config in first:
        assert space.config_from_params(params) == config
