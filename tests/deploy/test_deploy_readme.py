"""deploy/README.md documents every file of deploy/, how to start it and what it needs."""
from __future__ import annotations

import re

from deploy_checks import DEPLOY, deploy_files, k8s_documents, readme_created_objects

README = (DEPLOY / "README.md").read_text(encoding="utf-8")


def test_every_file_is_documented() -> None:
    for path in deploy_files():
        rel = path.relative_to(DEPLOY).as_posix()
        if rel == "README.md":
            continue
        assert f"`{rel}`" in README, f"deploy/README.md does not document {rel}"


def test_every_secret_and_configmap_the_manifests_need_has_a_create_command() -> None:
    secrets = readme_created_objects("secret")
    configmaps = readme_created_objects("configmap")
    text = str([doc for _, doc in k8s_documents()])
    for name in re.findall(r"'secretKeyRef': \{'name': '([\w-]+)'", text):
        assert name in secrets, f"Secret {name}: no `kubectl create secret` in the README"
    assert "torch-search-space" in configmaps and "space.yaml" in configmaps["torch-search-space"]


def test_each_way_of_starting_is_shown() -> None:
    for command in ("docker compose -f deploy/compose.yaml up", "kubectl apply -k deploy/k8s",
                    "ray up deploy/ray-cluster.yaml", "make -C deploy images",
                    "kubectl create -f deploy/k8s/rayjob.yaml"):
        assert command in README, f"the README never shows `{command}`"
