"""Shell command lines and text: the `search` invocations inside deploy/'s manifests, scripts and
docs (checked against the real CLI parser), and a scanner for secrets written into files."""
from __future__ import annotations

import re
import shlex
from typing import Any, Iterator


# ------------------------------------------------------------------------- search invocations
_SHELL_SEPARATORS = {"&&", "||", ";", "|"}


def _segments(tokens: list[str]) -> Iterator[list[str]]:
    segment: list[str] = []
    for token in tokens:
        if token in _SHELL_SEPARATORS:
            if segment:
                yield segment
            segment = []
        else:
            segment.append(token)
    if segment:
        yield segment


def search_invocations(command: str) -> list[list[str]]:
    """Every `search ...` argv inside a shell command line, looking into quoted arguments that are
    themselves commands (`bash -c '...'`, `ray exec CONFIG '...'`) and through `exec` and
    `VAR=value` prefixes."""
    found: list[list[str]] = []
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    tokens = list(lexer)
    for segment in _segments(tokens):
        words = list(segment)
        while words and (words[0] == "exec" or re.fullmatch(r"[A-Za-z_]\w*=.*", words[0])):
            words.pop(0)
        if words and words[0] == "search":
            found.append(words)
            continue
        # `docker compose run --entrypoint search SERVICE ARGS` and `docker run ... torch-search:TAG
        # ARGS` (the images' entrypoint is `search`).
        if "--entrypoint" in words:
            i = words.index("--entrypoint")
            if words[i + 1:i + 2] == ["search"] and len(words) > i + 2:
                found.append(["search", *words[i + 3:]])
                continue
        if words[:2] == ["docker", "run"]:
            images = [i for i, w in enumerate(words) if w.startswith("torch-search:")]
            if images:
                found.append(["search", *words[images[0] + 1:]])
                continue
        for word in words:
            if " " in word and word != command:
                found.extend(search_invocations(word))
    return found


def command_modules() -> dict[str, Any]:
    """NAME -> module for the subcommands of search/cli.py's COMMANDS."""
    import importlib

    from search import cli

    modules = {}
    for module_name in cli.COMMANDS:
        module = importlib.import_module(module_name)
        modules[module.NAME] = module
    return modules


def check_search_argv(argv: list[str]) -> str | None:
    """None when `search ARGS` is accepted by the real parser, else why not (one line)."""
    import argparse
    import contextlib
    import io

    if len(argv) < 2:
        return f"{shlex.join(argv)}: no subcommand"
    sub, args = argv[1], argv[2:]
    modules = command_modules()
    if sub not in modules:
        known = ", ".join(sorted(modules))
        return f"{shlex.join(argv)}: unknown subcommand {sub!r}; known: {known}"
    parser = argparse.ArgumentParser(prog=f"search {sub}", exit_on_error=False)
    modules[sub].add_arguments(parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(args)
    except (SystemExit, argparse.ArgumentError) as exc:
        return f"{shlex.join(argv)}: the real parser refuses it: {exc} {err.getvalue().strip()}"
    return None


def option_value(argv: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in an argv."""
    for i, word in enumerate(argv):
        if word == name and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


# ---------------------------------------------------------------------------------- secrets
# A value counts as a reference (not a secret) when it is empty, an environment/shell reference
# ($VAR, ${VAR...}, $(VAR) in Kubernetes env), or a placeholder ellipsis.
_REFERENCE = re.compile(r"""^["']?(?:\$|…|\.\.\.|<[^>]*>|["']?$)""")
_SECRET_KEY = re.compile(
    r"(?i)(?<![A-Za-z0-9_])(?<!\$\{)([A-Za-z0-9_]*(?:password|passwd|secret|token|api_key|access_key)"
    r"[A-Za-z0-9_]*)[ \t]*[:=][ \t]*([^\s,}\]]*)")
_URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.\-]*://[^/\s:@'\"]+:([^@\s'\"/]+)@")
_SECRET_SHAPES = {
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "an AWS access key id": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "a GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
}


def scan_for_secrets(text: str, where: str = "") -> list[str]:
    """One line per secret-looking value written into `text`: passwords or tokens given literally
    (KEY: value, KEY=value), credentials inside URLs, private keys and well-known token shapes."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        at = f"{where}:{number}"
        # KEY: value inside comments is mostly prose ("files that hold secrets: never ..."); URLs
        # and key shapes below are checked in comments too.
        prose = line.lstrip().startswith("#")
        for m in ([] if prose else _SECRET_KEY.finditer(line)):
            key, value = m.group(1), m.group(2)
            if key.lower().endswith(("_ref", "keyref", "_name", "_file", "_path", "_mode")):
                continue
            if not _REFERENCE.match(value):
                problems.append(f"{at}: {key} is given literally ({value[:4]}…); read it from the "
                                "environment or a Secret")
        for m in _URL_CREDENTIALS.finditer(line):
            if not _REFERENCE.match(m.group(1)):
                problems.append(f"{at}: a URL carries a literal password ({m.group(1)[:4]}…)")
        for what, pattern in _SECRET_SHAPES.items():
            if pattern.search(line):
                problems.append(f"{at}: {what} is written into the file")
    return problems
