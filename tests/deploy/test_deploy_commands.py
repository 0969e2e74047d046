"""Every `search` command line in deploy/ (manifests, scripts, docs) names a real subcommand with
options it accepts: through the real parser for subcommands search/cli.py registers, against the
documented list for the ones still being written."""
from __future__ import annotations

import re

import pytest

from deploy_checks import DEPLOY, K8S, command_line, deploy_files, load_compose, load_yaml_docs
from deploy_shell import check_search_argv, option_value, search_invocations


def shell_lines() -> list[tuple[str, str]]:
    """(where, command line) of deploy/'s shell: fenced sh blocks of the README, comment lines of
    the manifests that show commands, and YAML strings that hold commands."""
    lines = []
    for path in deploy_files():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(DEPLOY)
        if path.suffix == ".md":
            for block in re.findall(r"```sh\n(.*?)```", text.replace("\\\n", " "), re.S):
                lines.extend((str(rel), ln) for ln in block.splitlines() if ln.strip())
        else:
            lines.extend((str(rel), m) for m in re.findall(r"(?m)^#\s+((?:ray exec|docker|search) .*)$", text))
    return lines


def all_invocations() -> list[tuple[str, list[str]]]:
    found = []
    services = load_compose(DEPLOY / "compose.yaml", {"POSTGRES_PASSWORD": "x"})["services"]
    for name, service in services.items():
        found += [(f"compose.yaml:{name}", argv) for argv in search_invocations(command_line(service))]
    for doc in load_yaml_docs(K8S / "rayjob.yaml"):
        found += [("k8s/rayjob.yaml", argv) for argv in search_invocations(doc["spec"]["entrypoint"])]
    for where, line in shell_lines():
        found += [(where, argv) for argv in search_invocations(line)]
    return found


def test_finder_looks_inside_nested_shell_commands() -> None:
    assert search_invocations("bash -c 'ray start --x && exec search run a.yaml --new'") == \
        [["search", "run", "a.yaml", "--new"]]
    assert search_invocations("ray exec c.yaml 'A=1 search status s'") == [["search", "status", "s"]]
    assert search_invocations("docker compose run --rm --entrypoint search search best s") == \
        [["search", "best", "s"]]
    assert search_invocations("docker run --rm torch-search:0.1.0-cpu validate x.yaml") == \
        [["search", "validate", "x.yaml"]]
    assert search_invocations("kubectl get pods # search run nothing") == []


def test_checker_refuses_unknown_commands_and_options() -> None:
    assert "unknown subcommand 'fly'" in check_search_argv(["search", "fly"])
    assert check_search_argv(["search", "run", "s.yaml", "--no-such-option", "1"]) is not None
    assert check_search_argv(["search", "run"]) is not None  # the space file is required


def test_checker_knows_the_documented_commands_not_registered_yet() -> None:
    # `submit` was documented before search/cli.py registered it; the real parser now checks it,
    # and the documented form stays the reference for a tree without it.
    assert check_search_argv(["search", "submit", "s.yaml", "--address", "http://head:8265"]) is None
    assert check_search_argv(["search", "submit", "s.yaml", "--bogus"]) is not None
    assert check_search_argv(["search", "submit"]) is not None


INVOCATIONS = all_invocations()


def test_deploy_runs_the_commands_it_documents() -> None:
    subcommands = {argv[1] for _, argv in INVOCATIONS}
    assert {"run", "status", "validate"} <= subcommands, subcommands


@pytest.mark.parametrize("where, argv", INVOCATIONS, ids=[f"{w}:{' '.join(a[:2])}" for w, a in INVOCATIONS])
def test_every_search_command_is_accepted(where: str, argv: list[str]) -> None:
    problem = check_search_argv(argv)
    assert problem is None, f"{where}: {problem}"


@pytest.mark.parametrize("where, argv", [(w, a) for w, a in INVOCATIONS if a[1] == "run"],
                         ids=[w for w, a in INVOCATIONS if a[1] == "run"])
def test_runs_store_the_study_in_the_shared_database_and_results_on_an_absolute_path(
        where: str, argv: list[str]) -> None:
    assert option_value(argv, "--storage") == "$SEARCH_STORAGE", f"{where}: {argv}"
    output = option_value(argv, "--output")
    assert output and output.startswith("/"), f"{where}: Tune needs an absolute --output, got {output}"


@pytest.mark.parametrize("where, argv", [(w, a) for w, a in INVOCATIONS if a[1] == "run"],
                         ids=[w for w, a in INVOCATIONS if a[1] == "run"])
def test_runs_join_the_cluster_they_are_meant_for(where: str, argv: list[str]) -> None:
    # Without --address (or $RAY_ADDRESS, which Ray sets only for job drivers) `search run` starts
    # a Ray of its own on the node instead of using the cluster.
    if where == "k8s/rayjob.yaml":
        assert option_value(argv, "--address") is None
    else:
        assert option_value(argv, "--address"), f"{where}: {' '.join(argv)} does not join a cluster"


def test_the_scheduled_search_continues_its_study_and_warm_starts() -> None:
    # Each scheduled RayJob continues the space's study: --new would throw it away every night,
    # and --warm-start 0 would not rerun the best configs after the space changed.
    [argv] = [a for w, a in INVOCATIONS if w == "k8s/rayjob.yaml"]
    assert argv[1] == "run" and "--new" not in argv
    assert int(option_value(argv, "--warm-start") or 3) > 0
