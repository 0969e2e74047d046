"""Static checkers for the files under deploy/, shared by the tests of tests/deploy: paths, env
files, Compose's `${VAR}` interpolation and helpers that walk Kubernetes manifests.

Nothing here can start Docker or Kubernetes (neither runs on the development machine); each helper
reads one kind of file the way its real consumer does, closely enough to catch the mistakes that
matter. The other checkers: deploy_dockerfile (Dockerfiles, .dockerignore), deploy_cron (cron
expressions), deploy_shell (`search` command lines, secrets written into files).
"""
from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


# ---------------------------------------------------------------------------------------- files
def load_yaml_docs(path: Path) -> list[Any]:
    """Every document of a (multi-document) YAML file, empty documents dropped."""
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def deploy_ignored_names() -> set[str]:
    """Names that deploy/.gitignore keeps out of git (operator secrets): never scanned or required."""
    lines = (DEPLOY / ".gitignore").read_text(encoding="utf-8").splitlines()
    return {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}


def deploy_files() -> list[Path]:
    """The files of deploy/ that belong to the repository (not caches, not git-ignored secrets)."""
    ignored = deploy_ignored_names()
    return sorted(
        p for p in DEPLOY.rglob("*")
        if p.is_file() and p.name not in ignored and "__pycache__" not in p.parts
    )


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments and blank lines skipped), as Make and `--env-file` read them."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise ValueError(f"{path.name}:{number}: expected KEY=VALUE, got {line!r}")
        values[key] = value
    return values


def images_env() -> dict[str, str]:
    return read_env_file(DEPLOY / "images.env")


def package_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]["version"]


# ------------------------------------------------------------------------- compose interpolation
class ComposeVarError(ValueError):
    """A `${VAR:?message}` whose variable is unset: Compose refuses to start with this message."""


_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: `$$` is a literal `$`; `${V}`, `$V`, `${V:-default}`, `${V-default}`,
    `${V:?error}` and `${V?error}` read `env` (the colon forms also treat an empty value as unset)."""

    def replace(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op and op.endswith("-"):
            return arg if unset else value
        if op and op.endswith("?"):
            if unset:
                raise ComposeVarError(f"required variable {name} is missing a value: {arg}")
            return value
        return value or ""

    return _VAR.sub(replace, text)


def compose_variables(text: str) -> set[str]:
    """Names of the variables a Compose file reads (`$$NAME` is for the container, not Compose)."""
    return {m.group("braced") or m.group("bare") for m in _VAR.finditer(text)
            if not m.group("escaped")}


def load_compose(path: Path, env: dict[str, str]) -> dict[str, Any]:
    """A Compose file after interpolation; anchors and `<<` merges resolved by the YAML loader."""
    return yaml.safe_load(interpolate(path.read_text(encoding="utf-8"), env))


def parse_size(text: str | int) -> int:
    """Compose byte sizes ("2gb", "512m", 1024) in bytes."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", str(text).strip().lower())
    if not m:
        raise ValueError(f"not a byte size: {text!r}")
    return int(float(m.group(1)) * 1024 ** " kmg".index(m.group(2) or " "))


def flat_words(line: str) -> list[str]:
    """The words of a command line, with quoted scripts (`bash -c '...'`) split as well."""
    words = []
    for word in shlex.split(line):
        words.extend(flat_words(word) if " " in word else [word])
    return words


def command_line(service: dict[str, Any]) -> str:
    """A Compose service's command line: entrypoint + command, as one shell-quoted string."""
    def words(value: Any) -> list[str]:
        return shlex.split(value) if isinstance(value, str) else list(value or [])
    return shlex.join(words(service.get("entrypoint")) + words(service.get("command")))


def compose_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of the short-syntax volumes of a Compose service."""
    found = {}
    for spec in service.get("volumes", []):
        source, target = spec.split(":")[:2]
        found[target] = source
    return found


# ---------------------------------------------------------------------------------- kubernetes
def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every manifest of deploy/k8s (kustomization.yaml excluded)."""
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend((path.name, doc) for doc in load_yaml_docs(path))
    return docs


def pod_specs(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod template inside a workload document."""
    kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
    spec = doc.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "Job"):
        return [(f"{kind}/{name}", spec["template"]["spec"])]
    if kind == "CronJob":
        return [(f"{kind}/{name}", spec["jobTemplate"]["spec"]["template"]["spec"])]
    if kind in ("RayCluster", "RayJob"):
        name = name or doc["metadata"].get("generateName")
        cluster = ray_cluster_spec(doc)
        found = [(f"{kind}/{name} head", cluster["headGroupSpec"]["template"]["spec"])]
        for group in cluster.get("workerGroupSpecs", []):
            found.append((f"{kind}/{name} {group['groupName']}", group["template"]["spec"]))
        return found
    return []


def ray_cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    """The cluster spec of a RayCluster, or the one a RayJob brings along."""
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def pod_template_labels(doc: dict[str, Any]) -> list[dict[str, str]]:
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind in ("Deployment", "StatefulSet"):
        return [spec["template"].get("metadata", {}).get("labels", {})]
    if kind in ("RayCluster", "RayJob"):
        cluster = ray_cluster_spec(doc)
        groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
        return [g["template"].get("metadata", {}).get("labels", {}) for g in groups]
    return []


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def readme_created_objects(kind: str) -> dict[str, set[str]]:
    """Secrets or ConfigMaps that deploy/README.md tells the operator to create:
    name -> keys, from `kubectl ... create secret generic NAME --from-literal=KEY=...` and
    `kubectl ... create configmap NAME --from-file=KEY=...`."""
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    pattern = {"secret": r"create secret generic ([a-z0-9.\-]+)((?:\s+--from-literal=[\w.\-]+=\S+)+)",
               "configmap": r"create configmap ([a-z0-9.\-]+)((?:\s+--from-file=[\w.\-]+=\S+)+)"}[kind]
    found: dict[str, set[str]] = {}
    for m in re.finditer(pattern, text):
        keys = re.findall(r"--from-(?:literal|file)=([\w.\-]+)=", m.group(2))
        found.setdefault(m.group(1), set()).update(keys)
    return found
