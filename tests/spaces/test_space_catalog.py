"""The language against the whole catalog, parametrised over it: a new option or variant is
covered without a new test."""
from __future__ import annotations

import pytest
from space_helpers import error_of, load

from search.errors import UserError
from spaces import SpaceError
from spaces.specs import declaration
from spaces.yamlio import dump_yaml
from trainers.catalog import OFFICIAL_TEST, GROUPS

REQUIRED_FIXED = {"image_folder": {"root": "/data/images"},
                  "factory": {"factory": "my_pkg.things:make"}}
# cnn1d takes sequences: only a factory's data can hold them
OTHER_GROUPS = {"cnn1d": {"data": {"dataset": "factory", "factory": "my_pkg.things:make"}}}
COMPANIONS = {"batch_size_max": {"batch_size_double_every": 2},  # a cross-field rule
              "batch_size_double_every": {"batch_size_max": 256}}


def _cases():
    for gname, group in GROUPS.items():
        for variant in (group.variants or {None: {}}):
            for key, opt in group.options_for(variant).items():
                if key != group.selector:
                    yield pytest.param(gname, variant, key, opt,
                                       id=f"{gname}-{variant or 'all'}-{key}")


CASES = list(_cases())


def test_kinds_agree_across_variants():
    """The loader reads an option's kind before it knows the variant (specs.declaration)."""
    for gname, group in GROUPS.items():
        for key in group.all_keys():
            kinds = {group.options_for(v)[key].kind for v in group.variants_with(key)} \
                if group.selector else {group.options[key].kind}
            assert kinds == {declaration(group, key).kind}, (gname, key)


@pytest.mark.parametrize("gname, variant, key, opt", CASES)
def test_every_option_can_be_fixed_and_searched_as_its_catalog_says(gname, variant, key, opt):
    group = GROUPS[gname]
    fixed = dict(REQUIRED_FIXED.get(variant, {})) if gname in ("data", "model") else {}
    if group.selector:
        fixed[group.selector] = variant
    fixed.update(COMPANIONS.get(key, {}))
    value = opt.default if opt.default is not None else _example(key, opt)
    if key == "test_fraction" and variant in OFFICIAL_TEST:
        value = 0.0  # its own test split: only null or 0
    doc = {gname: {**fixed, key: value}, **OTHER_GROUPS.get(variant, {})}
    space = load(dump_yaml(doc))
    assert space.fixed[gname][key] == value
    searched = {gname: fixed, "space": {gname: {key: {"choices": [value]}}},
                **OTHER_GROUPS.get(variant, {})}
    if opt.kind == "mapping":
        return  # a mapping in space: is a literal (mapping options are never searched)
    if opt.searchable:
        space = load(dump_yaml(searched))
        [param] = space.params
        assert param.name == f"{gname}.{key}" and param.path == f"{gname}.{key}"
        [(params, config)] = space.sample(1, 0)
        assert config[gname][key] == value
    else:
        err = error_of(dump_yaml(searched))
        assert "cannot be searched" in str(err)


def _example(key, opt):
    if key == "batch_size_max":
        return 256
    if key in ("val_fraction", "test_fraction"):
        return 0.25
    return {"int": 4, "float": 0.5, "str": "x" if opt.check is None else None,
            "bool": True}.get(opt.kind) or "pkg.mod:fn"


def test_every_variant_name_is_accepted_and_a_typo_is_not():
    for gname, group in GROUPS.items():
        if not group.selector:
            continue
        names = [v for v in group.variants if v not in REQUIRED_FIXED and v not in OTHER_GROUPS]
        space = load(dump_yaml({"space": {gname: {group.selector: {"choices": names}}}}))
        assert space.params[0].choices == tuple(names)
        err = error_of(dump_yaml({gname: {group.selector: names[0] + "x"}}))
        assert f"did you mean '{names[0]}'" in str(err)


def test_errors_are_user_errors_with_their_parts():
    err = error_of("data:\n  batch_size: 0\n")
    assert isinstance(err, UserError) and isinstance(err, SpaceError)
    assert (err.file, err.line, err.path, err.value) == ("t.yaml", 2, "data.batch_size", 0)
    assert err.rule == "must be in [1, inf]"
    assert str(err) == "t.yaml:2: data.batch_size: must be in [1, inf], got 0"
    from spaces import load_space
    with pytest.raises(SpaceError, match=r"^<string>:1: seed: must be an integer >= 0"):
        load_space("seed: x\n")
