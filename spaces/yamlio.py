"""Reading YAML with the line of every key and value, and writing it back.

PyYAML's SafeLoader builds plain data and forgets where it came from; error messages need the
line, so the node tree is walked here and every path gets its line. The walk also rejects
duplicate keys (PyYAML silently keeps the last one) and reads `1e-4` as a float (YAML 1.2; PyYAML
follows YAML 1.1, where a float needs a dot, and would read it as the string '1e-4').

Hostile files end in one line too: SafeLoader refuses every python/* tag; aliases may be
expanded at most MAX_ALIASES times and a file may hold at most MAX_VALUES values once expanded
(an alias bomb needs no more than a few lines to ask for billions); nesting deeper than
MAX_DEPTH is refused before Python's recursion limit is met; integers beyond 64 bits and
numbers that overflow to infinity (`1e400`) are refused where they stand: PyTorch, NumPy and the
study database hold none of them.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import MISSING, Raw, SpaceError


_PLAIN_TAGS = ("tag:yaml.org,2002:seq", "tag:yaml.org,2002:map")
MAX_ALIASES = 1000
MAX_VALUES = 100_000
MAX_DEPTH = 100
INT64 = 2 ** 63


class _Loader(yaml.SafeLoader):
    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # `<<: [*a, *b]` merges copy the merged keys: chained merges double at each step
        super().flatten_mapping(node)
        if len(node.value) > MAX_VALUES:
            raise _TooBig(node, f"merge keys (<<) expand to more than {MAX_VALUES:,} keys")


class _TooBig(Exception):
    def __init__(self, node: yaml.Node, rule: str) -> None:
        super().__init__(rule)
        self.node, self.rule = node, rule


@dataclass
class _Budget:
    values: int = 0
    aliases: int = 0
    seen: set = field(default_factory=set)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))

Path = tuple  # of display segments: "space", "optimizer", "lr", or "[2]" for a list index


def segment(key: Any) -> str:
    """How a mapping key shows in a dotted path (and in Optuna names): true, 0.5, sgd."""
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


def dotted(path: Path) -> str:
    out = ""
    for seg in path:
        out += seg if seg.startswith("[") else ("." if out else "") + seg
    return out


@dataclass
class Locator:
    """Where each path of a loaded file came from; makes SpaceErrors that carry file and line."""

    file: str | None = None
    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Path) -> int | None:
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, path: Path, rule: str, value: Any = MISSING, *,
              suggestion: str | None = None, show_value: bool = True) -> SpaceError:
        return SpaceError(rule, path=dotted(path), value=value, file=self.file,
                          line=self.line(path), suggestion=suggestion, show_value=show_value)


def load_yaml(text: str, file: str | None = None) -> tuple[Any, Locator]:
    """Parse one YAML document; return its data and a Locator with every path's line."""
    loc = Locator(file)
    try:
        loader = _Loader(text)  # its reader refuses NUL and other control characters at once
    except yaml.reader.ReaderError as err:
        raise SpaceError(f"not valid YAML (character #x{err.character:04x} is not allowed)",
                         file=file if file is not None else "<string>",
                         line=text.count("\n", 0, max(0, err.position)) + 1,
                         show_value=False) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpaceError("a space file must be a YAML mapping, got an empty file",
                             file=file if file is not None else "<string>", line=1,
                             show_value=False) from None
        data = _build(loader, node, (), loc, set(), _Budget())
    except _TooBig as err:
        raise SpaceError(err.rule, file=file if file is not None else "<string>",
                         line=err.node.start_mark.line + 1, show_value=False) from None
    except RecursionError:
        raise SpaceError(f"nested too deeply (more than {MAX_DEPTH} levels)",
                         file=file if file is not None else "<string>",
                         show_value=False) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        lines = text.splitlines()
        snippet = lines[line - 1].strip() if line and line <= len(lines) else MISSING
        problem = (err.problem or err.context or "parse error").strip()
        raise SpaceError(f"not valid YAML ({problem})", value=snippet, line=line,
                         file=file if file is not None else "<string>",
                         show_value=snippet is not MISSING) from None
    except yaml.YAMLError as err:
        raise SpaceError(f"not valid YAML ({str(err).splitlines()[0]})", file=file,
                         show_value=False) from None
    finally:
        loader.dispose()
    return data, loc


def _build(loader: _Loader, node: yaml.Node, path: Path, loc: Locator, stack: set[int],
           budget: _Budget) -> Any:
    if id(node) in stack:
        raise loc.error(path, "an alias refers to its own parent (recursive YAML)",
                        show_value=False)
    loc.lines.setdefault(path, node.start_mark.line + 1)
    budget.values += 1
    if id(node) in budget.seen:  # a node met again is an alias being expanded
        budget.aliases += 1
        if budget.aliases > MAX_ALIASES:
            raise loc.error(path, f"more than {MAX_ALIASES} alias expansions (*name); write "
                            "the values out", show_value=False)
    budget.seen.add(id(node))
    if budget.values > MAX_VALUES:
        raise loc.error(path, f"more than {MAX_VALUES:,} values once aliases are expanded",
                        show_value=False)
    if len(path) > MAX_DEPTH:
        raise loc.error(path[:MAX_DEPTH], f"nested too deeply (more than {MAX_DEPTH} levels)",
                        show_value=False)
    if isinstance(node, yaml.ScalarNode):
        return _scalar(loader, node, path, loc)
    if node.tag not in _PLAIN_TAGS:  # SafeLoader constructs none; ignored, it would mislead
        raise loc.error(path, f"YAML tag {node.tag!r} is not allowed (plain YAML only)",
                        show_value=False)
    stack = stack | {id(node)}
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, path + (f"[{i}]",), loc, stack, budget)
                for i, item in enumerate(node.value)]
    if not isinstance(node, yaml.MappingNode):  # pragma: no cover - PyYAML has no other kind
        raise loc.error(path, "unsupported YAML node", show_value=False)
    loader.flatten_mapping(node)  # `<<: *anchor` merge keys
    out: dict[Any, Any] = {}
    first_line: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        key_line = key_node.start_mark.line + 1
        if isinstance(key, (list, dict)) or not isinstance(key_node, yaml.ScalarNode):
            loc.lines.setdefault(path + ("?",), key_line)
            raise loc.error(path + ("?",), "a key must be a single value", key)
        sub = path + (segment(key),)
        if key in out:
            loc.lines[sub] = key_line
            raise loc.error(sub, f"duplicate key (first given on line {first_line[key]})",
                            key)
        first_line[key] = key_line
        # a value on the key's line points there; a block below it points at its key
        block = isinstance(value_node, (yaml.MappingNode, yaml.SequenceNode)) \
            and not value_node.flow_style
        loc.lines[sub] = key_line if block else value_node.start_mark.line + 1
        out[key] = _build(loader, value_node, sub, loc, stack, budget)
    return out


def _scalar(loader: _Loader, node: yaml.ScalarNode, path: Path, loc: Locator) -> Any:
    if node.tag == "tag:yaml.org,2002:int" and len(node.value) > 40:  # int() of 10**6 digits
        raise loc.error(path, "integer out of range (more than 64 bits)", Raw(node.value[:20]
                        + "..."))
    value = loader.construct_object(node, deep=True)
    if isinstance(value, int) and not isinstance(value, bool) and not -INT64 <= value < INT64:
        raise loc.error(path, "integer out of range (more than 64 bits: PyTorch, NumPy and "
                        "the study database hold none larger)", value)
    if isinstance(value, float) and math.isinf(value) and "inf" not in node.value.lower():
        raise loc.error(path, "number out of range (overflows to infinity)", Raw(node.value))
    return value


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any, *, flow_leaves: bool = False, **kw: Any) -> str:
    """Block-style YAML with keys in the order given. Lists of scalars stay on one line;
    with `flow_leaves`, so do mappings of scalars (`lr: {low: 0.001, high: 0.1}`)."""
    if not flow_leaves:
        data = _FlowLists.wrap(data)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=None if flow_leaves else False, width=100, **kw)


class _FlowLists(list):
    """A list written on one line when its items are scalars."""

    @classmethod
    def wrap(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: cls.wrap(v) for k, v in data.items()}
        if isinstance(data, list):
            items = [cls.wrap(v) for v in data]
            flat = all(not isinstance(v, (list, dict)) for v in items)
            return cls(items) if flat else items
        return data


def _represent_flow_list(dumper: yaml.SafeDumper, value: list) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)


_Dumper.add_representer(_FlowLists, _represent_flow_list)
