"""Our code loads no pickled code: every torch.load passes weights_only=True, and nothing calls
pickle/cloudpickle loads except the CIFAR reader's restricted unpickler (an allowlist of
numpy array globals); no model is loaded back from an MLflow model store (the registry checks
each format by a round trip in memory, search/tracking/registry.py `_in_memory_copy`, the one
place a module is loaded from bytes: bytes the process made a moment before)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("search", "spaces", "trainers", "bench")
UNPICKLER_ALLOWED = {"trainers/cifar.py"}
IN_MEMORY = ("search/tracking/registry.py", "_in_memory_copy")


def calls():
    """(file, call node, owner name, attribute, enclosing function) of every `a.b(...)` call."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            where = path.relative_to(ROOT).as_posix()
            yield from _calls(ast.parse(path.read_text(), str(path)), where, "")


def _calls(tree: ast.AST, where: str, function: str):
    for node in ast.iter_child_nodes(tree):
        inner = node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
            else function
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else \
                owner.attr if isinstance(owner, ast.Attribute) else ""
            yield where, node, name, node.func.attr, function
        yield from _calls(node, where, inner)


def test_every_torch_load_is_weights_only():
    found = []
    for where, node, owner, attr, function in calls():
        if owner == "torch" and attr == "load":
            flags = {k.arg: k.value for k in node.keywords}
            ok = isinstance(flags.get("weights_only"), ast.Constant) and \
                flags["weights_only"].value is True or (where, function) == IN_MEMORY
            found.append((f"{where}:{node.lineno}", ok))
    assert found and all(ok for _, ok in found), [w for w, ok in found if not ok]


def test_the_in_memory_round_trip_reads_no_file():
    """The one torch.load without weights_only reads an io.BytesIO made in the same function."""
    [(where, node)] = [(w, n) for w, n, owner, attr, function in calls()
                       if owner == "torch" and attr == "load" and (w, function) == IN_MEMORY]
    source = (ROOT / where).read_text()
    body = ast.get_source_segment(source, next(
        f for f in ast.walk(ast.parse(source)) if isinstance(f, ast.FunctionDef)
        and f.name == IN_MEMORY[1]))
    assert "buffer = io.BytesIO()" in body and ast.unparse(node.args[0]) == "buffer"
    assert "open(" not in body and "Path" not in body


def test_no_model_is_loaded_back_from_a_model_store():
    bad = [f"{where}:{node.lineno}" for where, node, owner, attr, _ in calls()
           if attr in ("load_model", "load_checkpoint_from_store") and owner in (
               "pytorch", "pyfunc", "sklearn", "mlflow")]
    assert not bad, bad


def test_no_pickle_loads_in_our_code():
    bad = [f"{where}:{node.lineno}" for where, node, owner, attr, _ in calls()
           if owner in ("pickle", "cloudpickle", "dill", "joblib")
           and attr in ("load", "loads", "Unpickler") and where not in UNPICKLER_ALLOWED]
    assert not bad, bad
