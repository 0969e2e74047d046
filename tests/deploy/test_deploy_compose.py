"""deploy/compose.yaml (+ compose.gpu.yaml): interpolation, service wiring, volumes, healthchecks,
shared memory for Ray, secrets from the environment, and the one-shot `search` service."""
from __future__ import annotations

import shlex
from typing import Any
from urllib.parse import urlsplit

import pytest

from deploy_checks import (
    DEPLOY, ComposeVarError, command_line, compose_mounts as mounts, compose_variables, flat_words,
    images_env, interpolate, load_compose, parse_size,
)
from deploy_shell import option_value, search_invocations

ENV = {"POSTGRES_PASSWORD": "test-only-password"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(DEPLOY / "compose.yaml", ENV)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


# ---------------------------------------------------------------------------- interpolation
def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("$$HOME ${SET} $SET ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d}", env) == "$HOME x x d d "
    with pytest.raises(ComposeVarError, match="UNSET is missing a value: say so"):
        interpolate("${UNSET:?say so}", env)


def test_the_database_password_must_come_from_the_environment() -> None:
    with pytest.raises(ComposeVarError, match="POSTGRES_PASSWORD"):
        load_compose(DEPLOY / "compose.yaml", {})


def test_every_variable_is_documented_in_the_readme() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for name in ("compose.yaml", "compose.gpu.yaml"):
        for var in compose_variables((DEPLOY / name).read_text()):
            assert f"`{var}`" in readme, f"{name} reads ${var}, which deploy/README.md does not explain"


# ---------------------------------------------------------------------------------- wiring
def test_depends_on_names_defined_services_with_valid_conditions(services: dict[str, Any]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on", {})
        items = {d: {"condition": "service_started"} for d in depends} if isinstance(depends, list) else depends
        for other, spec in items.items():
            assert other in services, f"{name} depends on undefined service {other!r}"
            assert other != name
            assert spec["condition"] in CONDITIONS, f"{name} -> {other}: {spec['condition']}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[other], f"{name} waits for {other}'s health, which has no healthcheck"


def test_named_volumes_are_declared_and_bind_mounts_exist(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in compose["services"].items():
        for target, source in mounts(service).items():
            assert target.startswith("/"), f"{name}: volume target {target} is not absolute"
            if source.startswith((".", "/")):
                assert (DEPLOY / source).resolve().exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source!r} is not declared at the top level"
                used.add(source)
    assert used == declared, f"declared but unused volumes: {declared - used}"


def test_postgres_has_a_volume_a_healthcheck_and_an_environment_password(services: dict[str, Any]) -> None:
    pg = services["postgres"]
    assert pg["image"] == images_env()["POSTGRES_IMAGE"]
    assert mounts(pg)["/var/lib/postgresql/data"] == "pgdata"
    assert "pg_isready" in str(pg["healthcheck"]["test"])
    raw = (DEPLOY / "compose.yaml").read_text()
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?" in raw
    init = mounts(pg)["/docker-entrypoint-initdb.d/10-databases.sql"]
    assert "CREATE DATABASE mlflow" in (DEPLOY / init).read_text()


def test_mlflow_serves_artifacts_from_a_volume_with_a_postgres_backend(services: dict[str, Any]) -> None:
    mlflow = services["mlflow"]
    argv = shlex.split(command_line(mlflow))
    assert argv[:2] == ["mlflow", "server"] and "--serve-artifacts" in argv
    destination = option_value(argv, "--artifacts-destination")
    assert mounts(mlflow)[destination] == "mlflow-artifacts"
    backend = urlsplit(mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"])
    assert backend.scheme.startswith("postgresql") and backend.hostname == "postgres"
    assert backend.path == "/mlflow" and backend.password == ENV["POSTGRES_PASSWORD"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # SQLAlchemy's, raised by importing mlflow.server
def test_every_tracking_uri_host_passes_mlflows_host_check(services: dict[str, Any]) -> None:
    # MLflow 3's server rejects unknown Host headers; use its own check on the hosts clients use.
    from mlflow.server.security_utils import is_allowed_host_header

    allowed = [h.strip() for h in services["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")]
    uris = {s["environment"]["MLFLOW_TRACKING_URI"] for s in services.values()
            if "MLFLOW_TRACKING_URI" in (s.get("environment") or {})}
    assert uris
    for uri in uris | {"http://localhost:5000"}:  # the published port, from a browser on the host
        assert is_allowed_host_header(allowed, urlsplit(uri).netloc), f"MLflow would reject Host of {uri}"
        assert urlsplit(uri).hostname in ("mlflow", "localhost")


def ray_services(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services.items() if "ray start" in command_line(s)}


def test_ray_head_and_worker_exist_and_every_ray_node_has_shared_memory(services: dict[str, Any]) -> None:
    ray = ray_services(services)
    heads = [n for n, s in ray.items() if "--head" in command_line(s)]
    assert heads == ["ray-head"] and "ray-worker" in ray and "search" in ray
    for name, service in ray.items():
        assert "shm_size" in service, f"{name} runs Ray without shm_size (Docker's /dev/shm is 64 MB)"
        assert parse_size(service["shm_size"]) >= 2 ** 30, f"{name}: shm_size {service['shm_size']}"


def test_ray_nodes_join_the_head_service(services: dict[str, Any]) -> None:
    head = services["ray-head"]
    port = option_value(shlex.split(command_line(head)), "--port")
    for name, service in ray_services(services).items():
        if name == "ray-head":
            continue
        words = flat_words(command_line(service))
        address = next(w.split("=", 1)[1] for w in words if w.startswith("--address="))
        assert address == f"ray-head:{port}", f"{name} joins {address}"


def test_results_directory_is_shared_by_every_ray_node(services: dict[str, Any]) -> None:
    argv = search_invocations(command_line(services["search"]))[0]
    output = option_value(argv, "--output")
    assert output and output.startswith("/"), "Tune's storage_path must be absolute"
    for name in ray_services(services):
        assert mounts(services[name]).get(output) == "runs", f"{name} does not mount the shared {output}"


def test_search_is_a_one_shot_run_against_the_stack(services: dict[str, Any]) -> None:
    search = services["search"]
    assert search.get("restart") == "no"
    runs = search_invocations(command_line(search))
    assert len(runs) == 1 and runs[0][1] == "run"
    argv = runs[0]
    assert option_value(argv, "--address") == "ray-head:6379"
    assert option_value(argv, "--storage") == "$SEARCH_STORAGE"
    assert search["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"  # read by search
    space = argv[2]
    assert space.startswith("/spaces/") and mounts(search)["/spaces"].endswith("spaces")
    assert (DEPLOY / mounts(search)["/spaces"]).resolve() == (DEPLOY.parent / "spaces").resolve()
    storage = urlsplit(search["environment"]["SEARCH_STORAGE"])
    assert storage.hostname == "postgres" and storage.path == "/optuna"
    assert set(search["depends_on"]) == {"postgres", "mlflow", "ray-head", "ray-worker"}
    # `search run` sizes its concurrency from the CPUs it finds at start: the worker must have
    # joined, which its healthcheck (the raylet's liveness as the head sees it) tells.
    assert search["depends_on"]["ray-worker"]["condition"] == "service_healthy"
    assert "local_raylet_healthz" in str(services["ray-worker"]["healthcheck"]["test"])


def test_only_the_drivers_hold_the_study_storage_password(services: dict[str, Any]) -> None:
    # drivers: the `search` service, and the head, where jobs of `search submit` run theirs
    holders = {n for n, s in services.items()
               if ENV["POSTGRES_PASSWORD"] in str(s.get("environment", ""))}
    assert holders == {"postgres", "mlflow", "search", "ray-head"}
    storage = services["search"]["environment"]["SEARCH_STORAGE"]
    assert services["ray-head"]["environment"]["SEARCH_STORAGE"] == storage


def test_services_built_from_the_repo_use_the_cpu_dockerfile(services: dict[str, Any]) -> None:
    image = images_env()["SEARCH_IMAGE_CPU"]
    built = {n: s for n, s in services.items() if "build" in s}
    assert built and all(s["image"] == image for s in built.values())
    for name, service in built.items():
        context = (DEPLOY / service["build"]["context"]).resolve()
        assert context == DEPLOY.parent, f"{name}: the build context must be the repository root"
        assert (context / service["build"]["dockerfile"]) == DEPLOY / "docker" / "Dockerfile"


def test_gpu_override_switches_the_worker_to_the_cuda_image(services: dict[str, Any]) -> None:
    gpu = load_compose(DEPLOY / "compose.gpu.yaml", ENV)["services"]
    assert set(gpu) <= set(services), "the override names services compose.yaml lacks"
    worker = gpu["ray-worker"]
    assert worker["image"] == images_env()["SEARCH_IMAGE_CUDA"]
    assert (DEPLOY / worker["build"]["context"] / worker["build"]["dockerfile"]).resolve() == \
        DEPLOY / "docker" / "Dockerfile.cuda"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert parse_size(worker["shm_size"]) >= parse_size(services["ray-worker"]["shm_size"])


def test_published_ports_stay_on_the_loopback_interface(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
