"""Image names live in deploy/images.env only: every manifest, the Makefile and the docs use exactly
those values, and the torch-search tags carry the package version."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from deploy_checks import (
    DEPLOY, containers, deploy_files, images_env, k8s_documents,
    load_compose, package_version, pod_specs, read_env_file,
)

# name:tag of our images; a tag has a dot or a letter, so host:port pairs (postgres:5432) are not
# mistaken for images.
IMAGE_REFERENCE = re.compile(
    r"(?<![\w./@-])((?:[\w.-]+/)*(?:torch-search|postgres|k8s)):(\d+\.[\w.-]+|[a-z][\w.-]*)")


def test_images_env_declares_each_image_once() -> None:
    images = images_env()
    assert set(images) == {"SEARCH_IMAGE_CPU", "SEARCH_IMAGE_CUDA", "POSTGRES_IMAGE", "KUBECTL_IMAGE"}
    assert len(set(images.values())) == len(images)
    for key, value in images.items():
        assert re.fullmatch(r"[\w./-]+:[\w][\w.-]*", value), f"{key}={value} is not name:tag"
        assert not value.endswith(":latest"), f"{key}: pin a tag, not latest"


def test_env_file_reader_refuses_malformed_lines(tmp_path) -> None:
    path = tmp_path / "bad.env"
    path.write_text("GOOD=1\nthis is not an assignment\n")
    with pytest.raises(ValueError, match="bad.env:2: expected KEY=VALUE"):
        read_env_file(path)


def test_search_image_tags_carry_the_package_version() -> None:
    version = package_version()
    images = images_env()
    assert images["SEARCH_IMAGE_CPU"] == f"torch-search:{version}-cpu"
    assert images["SEARCH_IMAGE_CUDA"] == f"torch-search:{version}-cuda"


def test_compose_uses_the_declared_images_by_default() -> None:
    images = images_env()
    env = {"POSTGRES_PASSWORD": "test-only-password"}
    for name in ("compose.yaml", "compose.gpu.yaml"):
        raw = (DEPLOY / name).read_text()
        # Each image is `${KEY:-default}` with KEY from images.env and its value as the default.
        for key, default in re.findall(r"image:\s*\$\{(\w+):-([^}]+)\}", raw):
            assert images.get(key) == default, f"{name}: ${{{key}:-{default}}} differs from images.env"
        assert not re.findall(r"(?m)^\s*image:\s*[^$\s]", raw), f"{name}: an image is not read from images.env"
        services = load_compose(DEPLOY / name, env)["services"]
        used = {s["image"] for s in services.values() if "image" in s}
        assert used <= set(images.values())
        # Overriding a variable reaches the service (the defaults are not hard-wired elsewhere).
        override = load_compose(DEPLOY / name, {**env, **{k: f"registry.test/{v}" for k, v in images.items()}})
        assert {s["image"] for s in override["services"].values() if "image" in s} == \
            {f"registry.test/{i}" for i in used}


def test_kubernetes_manifests_use_the_declared_images() -> None:
    images = set(images_env().values())
    found = {c["image"] for _, doc in k8s_documents() for _, pod in pod_specs(doc) for c in containers(pod)}
    assert found and found <= images, f"not in images.env: {found - images}"
    assert images_env()["SEARCH_IMAGE_CUDA"] in found and images_env()["KUBECTL_IMAGE"] in found


def test_every_image_reference_in_deploy_is_declared() -> None:
    # Comments, docs and build commands included: a stale tag anywhere is a trap for an operator.
    images = set(images_env().values())
    seen = set()
    for path in deploy_files():
        if path.name == "images.env":
            continue
        for name, tag in IMAGE_REFERENCE.findall(path.read_text(encoding="utf-8")):
            reference = f"{name}:{tag}".rstrip(".")
            assert reference in images, f"{path.relative_to(DEPLOY)}: {reference} is not declared in images.env"
            seen.add(reference)
    assert seen == images, f"declared but never used: {images - seen}"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_builds_each_image_from_its_dockerfile() -> None:
    out = subprocess.run(["make", "-n", "-C", str(DEPLOY), "images", "push", "REGISTRY=registry.test"],
                         capture_output=True, text=True, check=True).stdout
    images = images_env()
    builds = re.findall(r"docker build -f (\S+) -t (\S+) (\S+)", out)
    assert {(f.rsplit("/", 1)[-1], tag) for f, tag, _ in builds} == {
        ("Dockerfile", images["SEARCH_IMAGE_CPU"]), ("Dockerfile.cuda", images["SEARCH_IMAGE_CUDA"])}
    for dockerfile, _, context in builds:
        assert (DEPLOY.parent / "deploy" / "docker" / dockerfile.rsplit("/", 1)[-1]).is_file()
        assert context.rstrip("/") == str(DEPLOY.parent), "the build context must be the repository"
    assert f"docker push registry.test/{images['SEARCH_IMAGE_CUDA']}" in out


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_push_without_a_registry_stops_with_a_message() -> None:
    done = subprocess.run(["make", "-s", "-C", str(DEPLOY), "push", "DOCKER=true"],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "set REGISTRY" in done.stdout + done.stderr
