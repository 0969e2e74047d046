"""Our code loads no pickled code: every torch.load passes weights_only=True, and nothing calls
pickle/cloudpickle loads except the CIFAR reader's restricted unpickler (an allowlist of
numpy array globals)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("search", "spaces", "trainers", "bench")
UNPICKLER_ALLOWED = {"trainers/cifar.py"}


def calls():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    owner = node.func.value
                    name = owner.id if isinstance(owner, ast.Name) else \
                        owner.attr if isinstance(owner, ast.Attribute) else ""
                    yield path.relative_to(ROOT).as_posix(), node, name, node.func.attr


def test_every_torch_load_is_weights_only():
    found = []
    for where, node, owner, attr in calls():
        if owner == "torch" and attr == "load":
            flags = {k.arg: k.value for k in node.keywords}
            ok = isinstance(flags.get("weights_only"), ast.Constant) and \
                flags["weights_only"].value is True
            found.append((f"{where}:{node.lineno}", ok))
    assert found and all(ok for _, ok in found), [w for w, ok in found if not ok]


def test_no_pickle_loads_in_our_code():
    bad = [f"{where}:{node.lineno}" for where, node, owner, attr in calls()
           if owner in ("pickle", "cloudpickle", "dill", "joblib")
           and attr in ("load", "loads", "Unpickler") and where not in UNPICKLER_ALLOWED]
    assert not bad, bad
