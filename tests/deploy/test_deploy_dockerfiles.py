"""deploy/docker: both Dockerfiles parse, start FROM a base, install the package with the pinned
constraints, run as a non-root user with `search` as entrypoint, expose Ray's ports, and copy only
files that exist and that their .dockerignore lets into the build context (the repository root)."""
from __future__ import annotations

import re
import shlex

import pytest

from deploy_checks import DEPLOY, ROOT
from deploy_dockerfile import (
    Instruction, copy_sources, dockerignore_patterns, exec_form, is_ignored, parse_dockerfile,
)

DOCKERFILES = ["Dockerfile", "Dockerfile.cuda"]
RAY_PORTS = {"6379", "8265", "10001"}


def instructions(name: str) -> list[Instruction]:
    return parse_dockerfile((DEPLOY / "docker" / name).read_text(encoding="utf-8"))


def of(kind: str, found: list[Instruction]) -> list[Instruction]:
    return [i for i in found if i.keyword == kind]


# ----------------------------------------------------------------------------- the parser itself
def test_parser_joins_continuations_and_skips_comments() -> None:
    found = parse_dockerfile("# c\nFROM a\nRUN x \\\n  # inside\n  && y\nCMD [\"z\"]\n")
    assert [(i.keyword, i.args, i.line) for i in found] == [
        ("FROM", "a", 2), ("RUN", "x && y", 3), ("CMD", '["z"]', 6)]


def test_parser_refuses_unknown_instructions_and_dangling_continuations() -> None:
    with pytest.raises(ValueError, match="unknown Dockerfile instruction 'RUNN'"):
        parse_dockerfile("FROM a\nRUNN x\n")
    with pytest.raises(ValueError, match="continuation"):
        parse_dockerfile("FROM a\nRUN x \\\n")


def test_copy_sources_skip_flags_and_other_stages() -> None:
    found = parse_dockerfile('FROM a\nCOPY --chown=1:1 a b ./\nCOPY --from=build /x /y\nCOPY ["c", "/d"]\n')
    assert copy_sources(found) == ["a", "b", "c"]


def test_dockerignore_matcher_follows_docker_rules() -> None:
    patterns = dockerignore_patterns("*\n!src\n**/__pycache__\n")
    assert is_ignored(".venv/bin/python", patterns)
    assert not is_ignored("src/pkg/mod.py", patterns)
    assert is_ignored("src/pkg/__pycache__/mod.pyc", patterns)


# ------------------------------------------------------------------------------- the Dockerfiles
@pytest.mark.parametrize("name", DOCKERFILES)
def test_from_comes_first(name: str) -> None:
    found = instructions(name)
    first = next(i for i in found if i.keyword != "ARG")  # only ARG may precede FROM
    assert first.keyword == "FROM", f"{name}: the first instruction is {first.keyword}, not FROM"
    assert len(of("FROM", found)) >= 1


def test_cuda_image_starts_from_an_nvidia_cuda_base() -> None:
    found = instructions("Dockerfile.cuda")
    args = {i.args.split("=", 1)[0]: i.args.split("=", 1)[1] for i in of("ARG", found) if "=" in i.args}
    base = of("FROM", found)[0].args.split()[0]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert re.fullmatch(r"nvidia/cuda:13\.\d+\.\d+-[a-z]+-ubuntu\d\d\.\d\d", base), base


@pytest.mark.parametrize("name", DOCKERFILES)
def test_entrypoint_is_the_search_command(name: str) -> None:
    entrypoints = of("ENTRYPOINT", instructions(name))
    assert entrypoints, f"{name} has no ENTRYPOINT"
    assert exec_form(entrypoints[-1].args) == ["search"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runs_as_a_numeric_non_root_user(name: str) -> None:
    found = instructions(name)
    users = of("USER", found)
    assert users, f"{name} never leaves root"
    user = users[-1].args.split(":")[0]
    # Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
    assert user.isdigit() and int(user) != 0, f"{name}: USER {users[-1].args}"
    assert users[-1].line > max(i.line for i in of("RUN", found)), "RUN after USER runs unprivileged builds"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_exposes_the_ray_ports(name: str) -> None:
    exposed = {p.split("/")[0] for i in of("EXPOSE", instructions(name)) for p in i.args.split()}
    assert RAY_PORTS <= exposed, f"{name} exposes {sorted(exposed)}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_installs_the_package_with_the_pinned_constraints(name: str) -> None:
    runs = " && ".join(i.args for i in of("RUN", instructions(name)))
    pip_lines = [c for c in re.split(r"&&|;", runs) if re.search(r"\bpip install\b", c)]
    assert pip_lines and all("-c constraints.txt" in c for c in pip_lines), pip_lines
    assert any(re.search(r"\s\.(\s|$)", c) for c in pip_lines), "the package itself is not installed"
    assert any("ray[default]" in c for c in pip_lines), "ray[default] (dashboard, job API) is missing"


def test_cpu_image_takes_torch_from_the_cpu_index() -> None:
    runs = [i.args for i in of("RUN", instructions("Dockerfile"))]
    torch = [r for r in runs if re.search(r"\btorch\b", r) and "pip install" in r]
    assert torch and "https://download.pytorch.org/whl/cpu" in torch[0]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_python_version_match_is_relaxed_to_minor(name: str) -> None:
    # Ray refuses nodes whose Python patch level differs; the two images' 3.11 come from different
    # places and a cluster may mix them (compose.gpu.yaml does).
    envs = " ".join(i.args for i in of("ENV", instructions(name)))
    assert "RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL=minor" in envs


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copy_sources_exist_and_are_in_the_build_context(name: str) -> None:
    patterns = dockerignore_patterns((DEPLOY / "docker" / f"{name}.dockerignore").read_text())
    sources = copy_sources(instructions(name))
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"{name}: COPY {source}: no such path in the repository"
        assert not is_ignored(source, patterns), f"{name}: COPY {source} is excluded by its .dockerignore"
        if (ROOT / source).is_dir():
            for path in (ROOT / source).rglob("*.py"):
                rel = path.relative_to(ROOT).as_posix()
                assert not is_ignored(rel, patterns), f"{name}: {rel} would be missing from the image"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerignore_keeps_heavy_and_private_paths_out(name: str) -> None:
    patterns = dockerignore_patterns((DEPLOY / "docker" / f"{name}.dockerignore").read_text())
    for path in [".venv/lib/python3.11/site-packages/torch/__init__.py", ".git/config", "runs/x",
                 "mlflow.db", "deploy/.env", "search/__pycache__/cli.cpython-311.pyc"]:
        assert is_ignored(path, patterns), f"{name}.dockerignore lets {path} into the context"


def test_both_images_use_the_same_context_rules() -> None:
    a = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text()
    b = (DEPLOY / "docker" / "Dockerfile.cuda.dockerignore").read_text()
    assert dockerignore_patterns(a) == dockerignore_patterns(b)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_exec_form_arrays_are_valid_json(name: str) -> None:
    for ins in instructions(name):
        if ins.keyword in ("CMD", "ENTRYPOINT") or ins.args.startswith("["):
            assert exec_form(ins.args) is not None, f"{name}:{ins.line}: {ins.keyword} {ins.args}"
        if ins.keyword == "RUN" and not ins.args.startswith("["):
            shlex.split(ins.args)  # balanced quotes
