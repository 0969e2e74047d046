"""A Dockerfile line parser and a .dockerignore matcher, enough to check deploy/docker statically
(there is no Docker engine on the development machine)."""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass


# -------------------------------------------------------------------------------- dockerfiles
DOCKER_INSTRUCTIONS = frozenset({
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
})


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case, as Docker compares it
    args: str  # the rest of the logical line, continuations joined
    line: int  # where the instruction starts (1-based)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Logical instructions: comments and blank lines dropped, `\\` continuations joined (comment
    lines inside a continuation are skipped, as Docker does). Unknown keywords raise ValueError."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        logical = " ".join(part for part in pending if part)
        pending = []
        keyword, _, args = logical.partition(" ")
        if keyword.upper() not in DOCKER_INSTRUCTIONS:
            raise ValueError(f"line {start}: unknown Dockerfile instruction {keyword!r}")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    if pending:
        raise ValueError(f"line {start}: the file ends inside a line continuation")
    return instructions


def exec_form(args: str) -> list[str] | None:
    """The JSON array of an exec-form CMD/ENTRYPOINT/RUN, or None for the shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def copy_sources(instructions: list[Instruction]) -> list[str]:
    """Context paths that COPY/ADD read (copies from other stages or images excluded)."""
    sources: list[str] = []
    for ins in instructions:
        if ins.keyword not in ("COPY", "ADD"):
            continue
        form = exec_form(ins.args)
        words = form if form is not None else shlex.split(ins.args)
        if any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        sources.extend(words[:-1])
    return sources


def dockerignore_patterns(text: str) -> list[tuple[bool, str]]:
    """(negated, pattern) pairs in file order."""
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        patterns.append((negated, line.lstrip("!").strip().strip("/")))
    return patterns


def _pattern_matches(pattern: str, path: str) -> bool:
    regex = ""
    i = 0
    while i < len(pattern):  # `**` crosses directories, `*` and `?` do not
        if pattern.startswith("**/", i):
            regex += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            regex += ".*"
            i += 2
        elif pattern[i] == "*":
            regex += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            regex += "[^/]"
            i += 1
        else:
            regex += re.escape(pattern[i])
            i += 1
    return re.fullmatch(regex, path) is not None


def is_ignored(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """Whether Docker leaves `path` (relative to the context) out: the last pattern that matches the
    path or one of its parent directories decides, `!` patterns bring paths back."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negated, pattern in patterns:
        if any(_pattern_matches(pattern, c) for c in candidates):
            ignored = not negated
    return ignored
