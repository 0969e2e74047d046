"""The experiment and the runs of one search, found by tags so that a resumed search, a replayed
spool or `search sync` reattaches to the runs that exist instead of making duplicates.

Every run of a search carries `search.id` (the search) and `search.key` (which run it is:
"parent", "trial/<tune trial id>", "stage/<name>"); children carry `mlflow.parentRunId` too.
Values written to MLflow obey its limits here: param values <= 6000 characters, keys <= 250.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping

TAG_SEARCH = "search.id"
TAG_KEY = "search.key"
TAG_PARENT = "mlflow.parentRunId"
PARENT = "parent"

MAX_KEY = 250
MAX_PARAM = 6000
MAX_TAG = 8000
_BAD_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")


def trial_key(tune_trial_id: str) -> str:
    return f"trial/{tune_trial_id}"


def stage_key(name: str) -> str:
    return f"stage/{_BAD_KEY.sub('_', name)}"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def clean_key(key: str) -> str:
    """A name MLflow accepts as a param, metric or tag key."""
    key = _BAD_KEY.sub("_", str(key))
    return key if len(key) <= MAX_KEY else key[:MAX_KEY]


def text_value(value: Any, limit: int = MAX_PARAM) -> str:
    """A value as YAML would show it (true, null, 0.001, [0.9, 0.999]), cut to MLflow's limit."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def params_of(tree: Mapping[str, Any]) -> dict[str, str]:
    return {clean_key(k): text_value(v) for k, v in flatten(tree).items()}


def tags_of(tags: Mapping[str, Any]) -> dict[str, str]:
    return {clean_key(k): text_value(v, MAX_TAG) for k, v in tags.items() if v is not None}


def metrics_of(result: Mapping[str, Any], skip: Iterable[str] = ()) -> dict[str, float]:
    """The numeric values of a result (nested dicts flattened), NaN and inf kept: MLflow stores
    them, and a diverged trial should show it."""
    skip = set(skip)
    out = {}
    kept = {k: v for k, v in result.items() if k not in skip}  # Tune's "config" is a dict
    for key, value in flatten(kept).items():
        if key in skip or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[clean_key(key)] = float(value)
    return out


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


class Book:
    """Run ids of one search by key; the experiment is created on first use with an explicit
    artifact location (None: a tracking server's own)."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None,
                 search_id: str, client=None) -> None:
        self.uri, self.experiment, self.search_id = uri, experiment, search_id
        self.artifact_location = artifact_location
        self._client = client
        self._experiment_id: str | None = None
        self._ids: dict[str, str] = {}
        self.seen: dict[str, dict[str, int]] = {}  # run id -> metric -> last step logged

    @property
    def client(self):
        """Made on first use: for an unreachable database MLflow's constructor retries ~100 s,
        so it is only made after a probe succeeded."""
        if self._client is None:
            from mlflow import MlflowClient

            from search.urls import reveal

            self._client = MlflowClient(tracking_uri=reveal(self.uri),
                                        registry_uri=reveal(self.uri))
        return self._client

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = self._get_or_create_experiment()
        return self._experiment_id

    def _get_or_create_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            try:
                # the kind makes MLflow 3's UI open the experiment on its runs (model
                # training), not on the GenAI overview
                return self.client.create_experiment(
                    self.experiment, artifact_location=self.artifact_location,
                    tags={"mlflow.experimentKind": "custom_model_development"})
            except MlflowException as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":  # another search made it first
                    raise
                exp = self.client.get_experiment_by_name(self.experiment)
        if exp.lifecycle_stage == "deleted":
            # A deleted experiment keeps its name; reusing it beats failing a long search.
            self.client.restore_experiment(exp.experiment_id)
        return exp.experiment_id

    def find(self, key: str) -> str | None:
        """The id of the run with this key, or None; cached."""
        if key in self._ids:
            return self._ids[key]
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_SEARCH}` = {_quote(self.search_id)} and "
                          f"tags.`{TAG_KEY}` = {_quote(key)}",
            order_by=["attributes.start_time ASC"], max_results=5)
        if not runs:
            return None
        run = runs[0]
        self._ids[key] = run.info.run_id
        # Steps already stored: a resumed trial re-reports epochs after its checkpoint, and
        # those must not become second values of the same step.
        latest = getattr(run.data, "_metric_objs", [])  # latest value (and step) per metric
        self.seen[run.info.run_id] = {m.key: m.step for m in latest}
        return run.info.run_id

    def cached(self, key: str) -> str | None:
        """The run id of `key` if it is known already (no backend call)."""
        return self._ids.get(key)

    def run_id(self, key: str) -> str:
        run_id = self.find(key)
        if run_id is None:
            from mlflow.exceptions import MlflowException

            raise MlflowException(f"no run {key!r} in search {self.search_id!r}",
                                  error_code=_code("RESOURCE_DOES_NOT_EXIST"))
        return run_id

    def ensure(self, key: str, name: str, tags: Mapping[str, str], parent: str | None,
               start_time: int | None = None) -> str:
        """The run with this key, created when missing, RUNNING either way (a resumed search
        reopens its finished or killed runs)."""
        run_id = self.find(key)
        all_tags = {**tags, TAG_SEARCH: self.search_id, TAG_KEY: key}
        if parent is not None:
            all_tags[TAG_PARENT] = self.run_id(parent)
        if run_id is None:
            run = self.client.create_run(self.experiment_id, start_time=start_time,
                                         tags=all_tags, run_name=name)
            run_id = self._ids[key] = run.info.run_id
            self.seen[run_id] = {}
        else:
            if self.client.get_run(run_id).info.status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
            from mlflow.entities import RunTag

            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in all_tags.items()])
        return run_id

    def children(self) -> list:
        """All runs of this search but the parent (trials and stages)."""
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{TAG_SEARCH}` = {_quote(self.search_id)} and "
                          f"tags.`{TAG_KEY}` != {_quote(PARENT)}", max_results=50000)


def _code(name: str) -> int:
    from mlflow.protos import databricks_pb2

    return getattr(databricks_pb2, name)

