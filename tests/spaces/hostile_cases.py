"""The hostile-input corpus: space files and command lines a careless or hostile user may give.

Each case is (id, argv builder, expected part of the one-line message). `files(tmp)` writes the
case's inputs under `tmp` (never in the working folder) and returns the argv. The static files
of tests/data/hostile/ (first line `# expect: ...`) join the generated ones.
"""
from __future__ import annotations

import codecs
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

STATIC = Path(__file__).parents[1] / "data" / "hostile"

BASE = """name: hostile
seed: 1
data: {dataset: digits, batch_size: 64}
model: {name: mlp, width: 16, depth: 1}
train: {epochs: 1}
space:
  optimizer:
    lr: {low: 1.0e-3, high: 1.0e-1, log: true}
objective: {metric: val_accuracy}
budget: {trials: 2}
sampler: {name: random}
pruner: {name: none}
"""


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path], list[str]]  # writes inputs under the folder, returns argv
    expect: str                        # part of the one-line message
    commands: tuple[str, ...] = ("validate", "run")


def _file(text: str | bytes, name: str = "space.yaml") -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        path = tmp / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return [str(path)]
    return make


def replaced(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


def _with(section: str, body: str) -> str:
    return BASE + f"{section}\n{body}\n" if body else BASE + section + "\n"


def text_cases() -> list[Case]:
    cases: list[Case] = []

    def add(id_: str, text: str | bytes, expect: str, **kw) -> None:
        cases.append(Case(id_, _file(text), expect, **kw))

    # -- numbers out of range, NaN/inf, strings and booleans where numbers go ---------------
    big = "9" * 30
    for key, old, new, expect in [
        ("trials_1e23", "trials: 2", "trials: 1e23", "budget.trials"),
        ("trials_int_1e23", "trials: 2", "trials: 100000000000000000000000", "budget.trials"),
        ("trials_over_max", "trials: 2", "trials: 100000000", "budget.trials"),
        ("trials_zero", "trials: 2", "trials: 0", "budget.trials"),
        ("trials_negative", "trials: 2", "trials: -3", "budget.trials"),
        ("trials_float", "trials: 2", "trials: 2.5", "budget.trials"),
        ("trials_string", "trials: 2", "trials: many", "budget.trials"),
        ("trials_bool", "trials: 2", "trials: true", "budget.trials"),
        ("trials_yes", "trials: 2", "trials: yes", "budget.trials"),
        ("trials_nan", "trials: 2", "trials: .nan", "budget.trials"),
        ("trials_inf", "trials: 2", "trials: .inf", "budget.trials"),
        ("trials_hex_huge", "trials: 2", "trials: 0x" + "f" * 40, "budget.trials"),
        ("trials_digits_10k", "trials: 2", "trials: " + "9" * 10000, "budget.trials"),
        ("epochs_huge", "epochs: 1", f"epochs: {big}", "train.epochs"),
        ("epochs_int64", "epochs: 1", "epochs: 9223372036854775808", "train.epochs"),
        ("epochs_bool", "epochs: 1", "epochs: true", "train.epochs"),
        ("epochs_string", "epochs: 1", "epochs: '3'", "train.epochs"),
        ("epochs_nan", "epochs: 1", "epochs: .nan", "train.epochs"),
        ("epochs_negative", "epochs: 1", "epochs: -1", "train.epochs"),
        ("batch_huge", "batch_size: 64", f"batch_size: {big}", "data.batch_size"),
        ("batch_2_63", "batch_size: 64", "batch_size: 9223372036854775807", "data.batch_size"),
        ("batch_bool", "batch_size: 64", "batch_size: false", "data.batch_size"),
        ("batch_float", "batch_size: 64", "batch_size: 64.5", "data.batch_size"),
        ("width_huge", "width: 16", f"width: {big}", "model.width"),
        ("width_2_40", "width: 16", "width: 1099511627776", "model.width"),
        ("width_string", "width: 16", "width: wide", "model.width"),
        ("depth_huge", "depth: 1", "depth: 10000000000", "model.depth"),
        ("seed_2_64", "seed: 1", "seed: 18446744073709551616", "seed"),
        ("seed_huge", "seed: 1", f"seed: {big}", "seed"),
        ("seed_negative", "seed: 1", "seed: -1", "seed"),
        ("seed_float", "seed: 1", "seed: 1.5", "seed"),
        ("seed_nan", "seed: 1", "seed: .nan", "seed"),
        ("lr_low_nan", "low: 1.0e-3", "low: .nan", "space.optimizer.lr"),
        ("lr_high_inf", "high: 1.0e-1", "high: .inf", "space.optimizer.lr"),
        ("lr_low_minus_inf", "low: 1.0e-3", "low: -.inf", "space.optimizer.lr"),
        ("lr_high_1e400", "high: 1.0e-1", "high: 1e400", "space.optimizer.lr"),
        ("lr_low_string", "low: 1.0e-3", "low: small", "space.optimizer.lr"),
        ("lr_low_quoted", "low: 1.0e-3", "low: '1e-3'", "space.optimizer.lr"),
        ("lr_low_bool", "low: 1.0e-3", "low: true", "space.optimizer.lr"),
        ("lr_high_huge_digits", "high: 1.0e-1", "high: " + "9" * 400, "space.optimizer.lr"),
        ("lr_low_zero_log", "low: 1.0e-3", "low: 0", "space.optimizer.lr"),
        ("lr_low_negative_log", "low: 1.0e-3", "low: -1", "space.optimizer.lr"),
        ("lr_low_above_high", "low: 1.0e-3", "low: 10", "space.optimizer.lr"),
        ("lr_low_null", "low: 1.0e-3", "low: null", "space.optimizer.lr"),
        ("lr_low_list", "low: 1.0e-3", "low: [1, 2]", "space.optimizer.lr"),
        ("lr_low_mapping", "low: 1.0e-3", "low: {a: 1}", "space.optimizer.lr"),
        ("time_limit_nan", "trials: 2", "trials: 2, time_limit: .nan", "budget.time_limit"),
        ("time_limit_inf", "trials: 2", "trials: 2, time_limit: .inf", "budget.time_limit"),
        ("time_limit_huge", "trials: 2", f"trials: 2, time_limit: {big}", "budget.time_limit"),
        ("target_nan", "trials: 2", "trials: 2, target: .nan", "budget.target"),
        ("target_inf", "trials: 2", "trials: 2, target: -.inf", "budget.target"),
        ("max_epochs_huge", "trials: 2", f"trials: 2, max_epochs: {big}", "budget.max_epochs"),
        ("max_concurrent_huge", "seed: 1", "seed: 1\nresources: {max_concurrent: " + big
         + "}", "resources.max_concurrent"),
        ("cpu_huge", "seed: 1", f"seed: 1\nresources: {{cpu: {big}}}", "resources.cpu"),
        ("cpu_nan", "seed: 1", "seed: 1\nresources: {cpu: .nan}", "resources.cpu"),
        ("gpu_inf", "seed: 1", "seed: 1\nresources: {gpu: .inf}", "resources.gpu"),
        ("gpu_negative", "seed: 1", "seed: 1\nresources: {gpu: -1}", "resources.gpu"),
        ("sampler_seed_huge", "{name: random}", f"{{name: random, seed: {big}}}",
         "sampler.seed"),
    ]:
        add(key, replaced(old, new), expect)

    # integer search bounds beyond int64 (today: validated, then every trial failed in C++)
    int_space = "space:\n  model:\n    width: {low: %s, high: %s}\n"
    for key, low, high in [("int_high_2_63", "8", "9223372036854775808"),
                           ("int_high_huge", "8", "9" * 40),
                           ("int_low_minus_2_63", "-9223372036854775809", "8"),
                           ("int_high_1e30_float", "8", "1e30"),
                           ("int_high_inf", "8", ".inf"),
                           ("int_low_nan", ".nan", "8"),
                           ("int_width_2_40", "8", "1099511627776")]:
        add(key, replaced("space:\n  optimizer:\n    lr: {low: 1.0e-3, high: 1.0e-1, log: true}\n",
                          int_space % (low, high)), "space.model.width")
    for key, choices in [("choices_int_huge", f"[16, {big}]"),
                         ("choices_nan", "[16, .nan]"), ("choices_inf", "[16, .inf]"),
                         ("choices_empty", "[]"), ("choices_bool", "[16, true]"),
                         ("choices_string", "[16, wide]"), ("choices_null", "[16, null]"),
                         ("choices_nested", "[[16]]")]:
        add(key, replaced("space:\n  optimizer:\n    lr: {low: 1.0e-3, high: 1.0e-1, log: true}\n",
                          "space:\n  model:\n    width: {choices: %s}\n" % choices),
            "space.model.width")
    for key, step in [("step_zero", "0"), ("step_negative", "-1"), ("step_nan", ".nan"),
                      ("step_huge", big), ("step_string", "x")]:
        add(key, replaced("space:\n  optimizer:\n    lr: {low: 1.0e-3, high: 1.0e-1, log: true}\n",
                          "space:\n  model:\n    width: {low: 8, high: 64, step: %s}\n" % step),
            "space.model.width")

    # -- YAML: tags, aliases, duplicates, nesting, structure -----------------------------------
    for key, tag in [("tag_python_object", "!!python/object:os.system {}"),
                     ("tag_python_apply", "!!python/object/apply:os.system ['true']"),
                     ("tag_python_name", "!!python/name:os.system"),
                     ("tag_python_module", "!!python/module:os"),
                     ("tag_python_new", "!!python/object/new:os.system [true]"),
                     ("tag_python_tuple", "!!python/tuple [1, 2]"),
                     ("tag_custom", "!evil 3"), ("tag_binary", "!!binary aGVsbG8="),
                     ("tag_set", "!!set {a, b}"), ("tag_timestamp", "2001-12-14t21:59:43Z"),
                     ("tag_omap", "!!omap [{a: 1}]")]:
        add(key, replaced("trials: 2", f"trials: {tag}"), "budget.trials"
            if not key.startswith("tag_python") and key != "tag_custom" else "")
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        bomb.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    add("alias_bomb", BASE + "\n".join(f"x{line}" for line in bomb) + "\n", "alias")
    add("alias_bomb_in_space", "x: &x [1,1,1,1,1,1,1,1,1,1]\n" + "\n".join(
        f"y{i}: &y{i} [" + ", ".join([f"*{'x' if i == 0 else f'y{i - 1}'}"] * 10) + "]"
        for i in range(8)) + "\n" + BASE, "alias")
    add("alias_many", BASE + "tracking: &t {enabled: false}\n" + "".join(
        f"k{i}: *t\n" for i in range(2000)), "alias")
    add("alias_merge_bomb", "a: &a {p: 1, q: 2}\n" + "".join(
        f"b{i}: &b{i} {{<<: [{', '.join(['*a'] + [f'*b{j}' for j in range(i)])}]}}\n"
        for i in range(60)) + BASE, "")
    add("alias_recursive", "a: &a [*a]\n" + BASE, "")
    add("alias_undefined", replaced("trials: 2", "trials: *nope"), "not valid YAML")
    add("duplicate_top", BASE + "seed: 2\n", "duplicate key")
    add("duplicate_nested", replaced("width: 16,", "width: 16, width: 32,"), "duplicate key")
    add("duplicate_in_space", replaced("log: true}", "log: true, log: false}"),
        "duplicate key")
    add("duplicate_merge_then_key", "a: &a {trials: 2}\n" + replaced(
        "budget: {trials: 2}", "budget: {<<: *a, trials: 3, trials: 4}"), "duplicate key")
    add("nested_brackets_3000", BASE + "x: " + "[" * 3000 + "]" * 3000 + "\n", "")
    add("nested_braces_3000", BASE + "x: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "")
    add("nested_brackets_unclosed", BASE + "x: " + "[" * 3000 + "\n", "")
    add("nested_blocks_2000", BASE + "x:\n" + "".join(
        " " * (i + 1) + f"k{i}:\n" for i in range(2000)) + " " * 2001 + "v: 1\n", "")
    add("nested_lists_block", BASE + "x:\n" + "".join(
        " " * (2 * i) + "- \n" for i in range(1500)), "")
    add("top_list", "- a\n- b\n", "must be a YAML mapping")
    add("top_scalar", "hello\n", "must be a YAML mapping")
    add("top_number", "1e400\n", "out of range")
    add("empty", "", "empty")
    add("only_comment", "# nothing\n", "empty")
    add("two_documents", BASE + "---\n" + BASE, "not valid YAML")
    add("key_is_list", "? [a, b]\n: 1\n" + BASE, "")
    add("key_is_null", "null: 1\n" + BASE, "")
    add("key_is_number", "1: 1\n" + BASE, "")
    add("tab_indent", BASE + "x:\n\t- 1\n", "not valid YAML")
    add("unknown_top_key", BASE + "evil: 1\n", "unknown top-level key")
    add("long_key", BASE + "k" * 100000 + ": 1\n", "")
    add("long_value", replaced("name: hostile", "name: " + "n" * 100000), "name")
    add("long_line_comment", "#" + "x" * 200000 + "\n" + BASE + "evil: 1\n", "")
    add("huge_file", BASE + ("# padding " + "x" * 100 + "\n") * 30000, "larger than")
    add("name_path_traversal", replaced("name: hostile", "name: ../../etc"), "name")
    add("name_slash", replaced("name: hostile", "name: a/b"), "name")
    add("name_newline", replaced("name: hostile", 'name: "a\\nb"'), "name")
    add("name_nul", replaced("name: hostile", 'name: "a\\0b"'), "name")
    add("name_empty", replaced("name: hostile", "name: ''"), "name")
    add("name_number", replaced("name: hostile", "name: 12"), "name")

    # -- encodings ----------------------------------------------------------------------------
    add("utf16_le_bom", codecs.BOM_UTF16_LE + BASE.encode("utf-16-le"), "")
    add("utf16_be_bom", codecs.BOM_UTF16_BE + BASE.encode("utf-16-be"), "")
    add("utf16_no_bom", BASE.encode("utf-16-le"), "")
    add("utf32", BASE.encode("utf-32"), "")
    add("utf8_bom_then_error", codecs.BOM_UTF8 + (BASE + "evil: 1\n").encode(),
        "unknown top-level key")
    add("invalid_utf8", BASE.encode() + b"# \xff\xfe\xc3\x28\n", "")
    add("latin1_comment", BASE.encode() + "# caf\u00e9\n".encode("latin-1"), "")
    add("nul_bytes", BASE.encode() + b"\x00\x00evil: 1\n", "")
    add("nul_in_value", BASE.replace("hostile", "host\x00ile").encode(), "")
    add("control_char", BASE.encode() + b"x: \x07\n", "")
    add("escape_sequence", BASE.encode() + b"x: \x1b[31mred\n", "")
    add("lone_surrogate", replaced("name: hostile", 'name: "\\ud800"'), "name")
    add("rtl_override", replaced("name: hostile", "name: \u202ehostile"), "name")
    add("binary_garbage", os.urandom(1) and bytes(range(256)) * 64, "")
    return cases


def file_kind_cases() -> list[Case]:
    """Paths that are not regular files, or not there."""
    def fifo(tmp: Path) -> list[str]:
        path = tmp / "space.yaml"
        os.mkfifo(path)
        return [str(path)]

    def loop(tmp: Path) -> list[str]:
        (tmp / "a.yaml").symlink_to(tmp / "b.yaml")
        (tmp / "b.yaml").symlink_to(tmp / "a.yaml")
        return [str(tmp / "a.yaml")]

    def dangling(tmp: Path) -> list[str]:
        (tmp / "space.yaml").symlink_to(tmp / "gone.yaml")
        return [str(tmp / "space.yaml")]

    def folder(tmp: Path) -> list[str]:
        (tmp / "space.yaml").mkdir()
        return [str(tmp / "space.yaml")]

    def socket_file(tmp: Path) -> list[str]:
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(str(tmp / "s.yaml"))
        s.close()
        return [str(tmp / "s.yaml")]

    fixed = lambda *argv: (lambda tmp: list(argv))  # noqa: E731
    return [
        Case("fifo", fifo, "not a regular file"),
        Case("symlink_loop", loop, ""),
        Case("dangling_symlink", dangling, "no such space file"),
        Case("directory", folder, "folder"),
        Case("unix_socket", socket_file, "not a regular file"),
        Case("dev_zero", fixed("/dev/zero"), "not a regular file"),
        Case("dev_urandom", fixed("/dev/urandom"), "not a regular file"),
        Case("dev_null", fixed("/dev/null"), "not a regular file"),
        Case("proc_file", fixed("/proc/self/status"), ""),
        Case("missing_no_extension", lambda tmp: [str(tmp / "path" / "without-extension")],
             "no such space file"),
        Case("missing_yaml", lambda tmp: [str(tmp / "nope.yaml")], "no such space file"),
        Case("missing_in_missing_dir", lambda tmp: [str(tmp / "a" / "b" / "c.yml")],
             "no such space file"),
        Case("empty_path", fixed(""), ""),
        Case("nul_in_path", lambda tmp: [str(tmp / "a\x00b.yaml")], ""),
        Case("very_long_path", lambda tmp: [str(tmp / ("x" * 5000 + ".yaml"))], ""),
        Case("long_name_component", lambda tmp: [str(tmp / ("x" * 300 + ".yaml"))], ""),
        Case("file_as_parent", lambda tmp: (tmp.joinpath("f").write_text("x"),
                                           [str(tmp / "f" / "space.yaml")])[1], ""),
    ]


def static_cases() -> list[Case]:
    cases = []
    for path in sorted(STATIC.glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        cases.append(Case(f"static_{path.stem}", lambda tmp, p=path: [str(p)],
                          first[len("# expect: "):]))
    return cases


def space_cases() -> list[Case]:
    return text_cases() + file_kind_cases() + static_cases()
