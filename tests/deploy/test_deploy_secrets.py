"""No secret is written into deploy/: passwords and tokens come from the environment or from
Secrets the operator creates. The scanner is tested on what it must and must not flag."""
from __future__ import annotations

import pytest

from deploy_checks import DEPLOY, deploy_files, deploy_ignored_names, k8s_documents
from deploy_shell import scan_for_secrets


@pytest.mark.parametrize("line", [
    "POSTGRES_PASSWORD: hunter2",
    "      POSTGRES_PASSWORD=hunter2",
    "password=s3cret!",
    '  RAY_AUTH_TOKEN: "0123456789abcdef"',
    "url: postgresql+psycopg2://search:hunter2@postgres:5432/optuna",
    "MLFLOW_TRACKING_URI=https://user:pa55word@mlflow.example.com",
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "aws_access_key_id = AKIAABCDEFGHIJKLMNOP",
    "api_key: sk-live-123",
    "env: {POSTGRES_PASSWORD: hunter2}",
])
def test_scanner_flags_literal_secrets(line: str) -> None:
    assert scan_for_secrets(line, "sample"), f"not flagged: {line}"


@pytest.mark.parametrize("line", [
    "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}",
    "POSTGRES_PASSWORD=",
    "export POSTGRES_PASSWORD=$(openssl rand -hex 24)",
    'kubectl create secret generic db --from-literal=password="$POSTGRES_PASSWORD"',
    "value: postgresql+psycopg2://search:$(POSTGRES_PASSWORD)@torch-search-postgres:5432/optuna",
    "SEARCH_STORAGE=postgresql+psycopg2://search:${POSTGRES_PASSWORD}@db:5432/optuna",
    "the study storage, `postgresql+psycopg2://search:…@HOST:5432/optuna`",
    "RAY_AUTH_TOKEN: ${RAY_AUTH_TOKEN:-}",
    "              secretKeyRef:",
    "- name: POSTGRES_PASSWORD",
    "RAY_AUTH_MODE: token",
])
def test_scanner_lets_references_pass(line: str) -> None:
    assert scan_for_secrets(line, "sample") == []


def test_no_file_in_deploy_holds_a_secret() -> None:
    files = deploy_files()
    assert any(p.name == "compose.yaml" for p in files) and any(p.suffix == ".sh" for p in files)
    problems = [p for path in files
                for p in scan_for_secrets(path.read_text(encoding="utf-8"), str(path.relative_to(DEPLOY)))]
    assert problems == [], "\n".join(problems)


def test_operator_secret_files_are_git_ignored() -> None:
    # compose reads deploy/.env, ray-cluster.yaml copies deploy/ray-cluster.env: both hold passwords.
    assert {".env", "ray-cluster.env"} <= deploy_ignored_names()


def test_kubernetes_reads_passwords_only_through_secret_refs() -> None:
    for where, doc in k8s_documents():
        assert doc["kind"] != "Secret", f"{where}: a Secret object is committed"
        text = str(doc)
        assert "POSTGRES_PASSWORD', 'value'" not in text, f"{where}: POSTGRES_PASSWORD has a literal value"


def _containers(doc):
    from deploy_checks import pod_specs

    for where, pod in pod_specs(doc):
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            yield f"{where}/{c.get('name')}", c


def test_no_manifest_carries_a_literal_password() -> None:
    """Every secret-named variable comes from a Secret; every URL with credentials pastes them
    from such a variable, `$(VAR)`, never literally."""
    import re

    seen = 0
    for name, doc in k8s_documents():
        for where, c in _containers(doc):
            env = {e["name"]: e for e in c.get("env", [])}
            from_secret = {n for n, e in env.items()
                           if "secretKeyRef" in (e.get("valueFrom") or {})}
            for n, e in env.items():
                if re.search(r"PASSWORD|TOKEN|SECRET|_KEY$", n):
                    assert n in from_secret, f"{name} {where}: {n} is not read from a Secret"
                    seen += 1
                value = str(e.get("value", ""))
                for cred in re.findall(r"://[^/@\s]*:([^/@\s]*)@", value):
                    refs = re.fullmatch(r"\$\((\w+)\)", cred)
                    assert refs and refs.group(1) in from_secret, \
                        f"{name} {where}: {n} holds a literal password in {value!r}"
                    seen += 1
    assert seen >= 4  # the database password and the URLs built from it are checked


def test_ray_clusters_use_token_authentication() -> None:
    specs = {name: doc["spec"].get("rayClusterSpec", doc["spec"])
             for name, doc in k8s_documents() if doc["kind"] in ("RayCluster", "RayJob")}
    assert set(specs) == {"raycluster.yaml", "rayjob.yaml"}
    for name, spec in specs.items():
        assert spec.get("authOptions") == {"mode": "token"}, name
