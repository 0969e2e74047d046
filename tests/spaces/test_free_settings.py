"""A factory's own arguments (space.<group>.kwargs.<name>) and a fit function's params
(space.params.<name>): every spec kind, sampled into the config, shown and written back."""
from __future__ import annotations

import yaml

from search.cli import main
from spaces import load_space

SPACE = """
name: free
fit: "own_code_helpers:report_only"
model: {name: factory, factory: "own_code_helpers:flat_net", kwargs: {act: relu}}
data: {dataset: factory, factory: "own_code_helpers:tiny_images", kwargs: {n: 120}}
params: {tag: base}
space:
  model:
    kwargs:
      hidden: {choices: [8, 16, 32]}
      layers: {low: 1, high: 3}
      scale: {low: 0.01, high: 1.0, log: true}
      dropout: {low: 0.0, high: 0.5, when: {model.kwargs.hidden: [16, 32]}}
      block:
        choices:
          wide: {width: {low: 2, high: 8, step: 2}}
          thin: {width: 1}
      act: tanh
  data:
    kwargs:
      size: {low: 4, high: 8, step: 2}
  params:
    lr_scale: {low: 0.5, high: 2.0, step: 0.5}
    mode: {choices: {a: {depth: {low: 1, high: 2}}, b: {}}}
    tag: searched-out
"""


def test_every_spec_kind_is_a_parameter(tmp_path):
    space = load_space(SPACE)
    names = [p.name for p in space.params]
    # canonical order: each group's catalog options, then its factory arguments by name,
    # then params by name; a branch's parameters right after their parent
    assert names == ["data.kwargs.size", "model.kwargs.block", "model.kwargs.block.wide.width",
                     "model.kwargs.hidden", "model.kwargs.dropout", "model.kwargs.layers",
                     "model.kwargs.scale", "params.lr_scale",
                     "params.mode", "params.mode.a.depth"]
    kinds = {p.name: (p.kind, p.domain()) for p in space.params}
    assert kinds["model.kwargs.layers"] == ("int", "int in [1, 3]")
    assert kinds["model.kwargs.scale"] == ("float", "float in [0.01, 1], log")
    assert kinds["data.kwargs.size"] == ("int", "int in [4, 8], step 2")
    assert kinds["params.lr_scale"] == ("float", "float in [0.5, 2], step 0.5")
    assert kinds["model.kwargs.hidden"] == ("categorical", "one of 8, 16, 32")
    assert space.has_conditionals and load_space(space.to_yaml()) == space
    seen = set()
    for params, config in space.sample(12, 3):
        kw, dkw, own = config["model"]["kwargs"], config["data"]["kwargs"], config["params"]
        assert kw["act"] == "tanh" and dkw["n"] == 120 and own["tag"] == "searched-out"
        assert kw["hidden"] == params["model.kwargs.hidden"]
        assert kw["layers"] == params["model.kwargs.layers"] in (1, 2, 3)
        assert 0.01 <= kw["scale"] <= 1.0 and dkw["size"] in (4, 6, 8)
        assert own["lr_scale"] in (0.5, 1.0, 1.5, 2.0)
        assert ("dropout" in kw) == (kw["hidden"] != 8)  # when
        assert kw["width"] in ((2, 4, 6, 8) if kw["block"] == "wide" else (1,))  # branches
        assert ("depth" in own) == (own["mode"] == "a")
        assert space.config_from_params(params) == config
        seen.add((kw["block"], own["mode"], kw["hidden"]))
    assert len(seen) > 4
    fixed = space.fixed  # outside a search: the constants only
    assert fixed["model"]["kwargs"] == {"act": "tanh"} and fixed["params"] == {"tag":
                                                                               "searched-out"}


def test_validate_and_sample_show_them(tmp_path, capsys):
    path = tmp_path / "free.yaml"
    path.write_text(SPACE)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    for line in ("  fit: own_code_helpers:report_only", "    model.kwargs.act: tanh",
                 "    data.kwargs.n: 120", "    params.tag: searched-out",
                 "    model.kwargs.hidden: one of 8, 16, 32",
                 "    model.kwargs.dropout: float in [0, 0.5]  when model.kwargs.hidden in "
                 "(16, 32)", "      if wide:", "        model.kwargs.block.wide.width: int in "
                 "[2, 8], step 2", "        model.kwargs.width: = 1",
                 "    data.kwargs.size: int in [4, 8], step 2",
                 "    params.lr_scale: float in [0.5, 2], step 0.5"):
        assert line in out.splitlines(), line
    assert main(["sample", str(path), "-n", "2", "--seed", "1"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert len(docs) == 2 and all("hidden" in d["model"]["kwargs"] and "size" in
                                  d["data"]["kwargs"] and "lr_scale" in d["params"]
                                  for d in docs)
    assert main(["sample", str(path), "-n", "1", "--params"]) == 0
    assert "params.lr_scale" in yaml.safe_load(capsys.readouterr().out)


def test_a_literal_mapping_in_space_kwargs_stays_a_constant():
    space = load_space(SPACE.replace("act: tanh", "act: {kind: tanh, slope: 0.1}"))
    assert space.fixed["model"]["kwargs"]["act"] == {"kind": "tanh", "slope": 0.1}
    assert "model.kwargs.act" not in [p.name for p in space.params]


def test_kwargs_searched_under_a_factory_branch():
    text = """
model: {factory: "own_code_helpers:flat_net"}
space:
  model:
    name: {choices: [factory, mlp]}
    kwargs:
      hidden: {choices: [8, 16], when: {model.name: factory}}
"""
    space = load_space(text)
    for _, config in space.sample(6, 0):
        assert ("hidden" in config["model"].get("kwargs", {})) == \
            (config["model"]["name"] == "factory")


def test_overrides_of_free_settings():
    space = load_space(SPACE)
    config = space.config_with({"params.lr_scale": "1.5", "params.mode": "b",
                                "model.kwargs.hidden": "16", "data.kwargs.size": 6})
    assert config["params"] == {"tag": "searched-out", "lr_scale": 1.5, "mode": "b"}
    assert config["model"]["kwargs"]["hidden"] == 16 and config["data"]["kwargs"]["size"] == 6
