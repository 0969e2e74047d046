"""The best trial's model in the MLflow model registry, with the alias `best`.

The model is rebuilt from its checkpoint (a state_dict and the config, never a pickled module):
`trainers.models.build_model(config["model"], in_channels=, num_classes=, image_size=)` with the
shapes of the config's dataset, then logged with `mlflow.pytorch.log_model`, a signature and an
input example. Serialisation: "pt2" (torch.export; loads without our code, so a model built by a
user's factory loads anywhere) when the exported program reproduces the model's outputs, else
"pickle" (loads where the model's classes import), else "torchscript" (a traced copy; what a
quantised stage model needs). Each format is checked by a round trip in memory before it is
logged (search.tracking never loads a model from the model store). All load back with
mlflow.pytorch.load_model. The stages register
their final model the same way (alias `candidate`, loader search.stages:registry_model).
The model expects the inputs the trainer fed it: images normalised by the training split's
mean/std, which are in the model's metadata.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from typing import Any, Callable

from . import versions
from .backend import http_limits, is_unreachable
from .runs import Book

QUIET = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}  # no "View run at" lines


def _use_tracking_uri(uri: str):
    """MLflow's fluent API (log_model, load_model) reads the process-wide tracking URI: point
    it at the search's backend for the duration, then back."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri as use

    from search.urls import reveal

    return use(reveal(uri))

log = logging.getLogger("search.tracking")

DEFAULT_LOADER = "search.tracking.registry:load_trainer_checkpoint"
# "torchscript": a traced copy saved by torch.jit (MLflow's pickle format stores a ScriptModule
# that way), for modules that neither export nor unpickle, e.g. int8 static FX graphs.
FORMATS = ("pt2", "pickle", "torchscript")


def load_trainer_checkpoint(path: str):
    """(model in eval mode, input example batch, metadata) from a trainer checkpoint."""
    from trainers.checkpoints import load_checkpoint
    from trainers.datasets import load_data
    from trainers.models import build_model

    state = load_checkpoint(path)
    config = state["config"]
    data = load_data(config["data"])
    model = build_model(config["model"], in_channels=data.in_channels,
                        num_classes=data.num_classes, image_size=data.image_size)
    best = state.get("best") or {}
    model.load_state_dict(best.get("model") or state["model"])
    model.eval()
    example, meta = input_example(data)
    return model, example, {**meta, "epoch": state.get("epoch"),
                            "selected_epoch": best.get("epoch")}


def input_example(data) -> tuple[Any, dict]:
    """Two test images (float, CPU) and what a user needs to feed the model: the normalisation
    the trainer applied, the image size, the classes."""
    from trainers.batches import iterate_batches

    example, _ = next(iterate_batches(data.test, 2, shuffle=False, device="cpu"))
    meta = {"input_mean": list(data.mean), "input_std": list(data.std),
            "image_size": list(data.image_size), "num_classes": data.num_classes,
            "dataset": data.name}
    return example.float(), meta


def import_loader(path: str) -> Callable[[str], tuple[Any, Any, dict]]:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def log_model(tracking_uri: str, run_id: str, model, example, metadata: dict,
              name: str = "model"):
    """Log `model` into the run as the logged model `name`; returns (ModelInfo, serialisation
    format). Each format is first checked in memory (what it keeps reproduces the model's
    outputs), then logged, then its files are looked for in the model store: nothing logged is
    read back, since a model store (the output folder's mlartifacts, a shared server) is not
    ours to trust."""
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        expected = model(example)
    signature = infer_signature(example.numpy(), expected.numpy())
    # Naming torch avoids MLflow inferring requirements in a subprocess (seconds per model).
    requirements = [f"torch=={torch.__version__.split('+')[0]}"]
    errors = []
    with _use_tracking_uri(tracking_uri), http_limits(QUIET), _quiet_torch_io():
        for fmt in FORMATS:
            try:
                logged = model
                if fmt == "torchscript":
                    with torch.no_grad():
                        logged = torch.jit.trace(model, example)
                copy = _in_memory_copy(logged, example, fmt)
                with torch.no_grad():
                    got = copy(example)
                if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
                    errors.append(f"{fmt}: its copy gives different outputs")
                    continue
                with mlflow.start_run(run_id=run_id):
                    info = mlflow.pytorch.log_model(
                        logged, name=name, signature=signature,
                        input_example=example.numpy(),
                        serialization_format="pickle" if fmt == "torchscript" else fmt,
                        pip_requirements=requirements,
                        metadata={**metadata, "serialization_format": fmt})
                _check_stored(info, fmt)
                return info, fmt
            except Exception as err:
                if is_unreachable(err) and "export" not in str(err).lower():
                    raise
                errors.append(f"{fmt}: {str(err).strip().splitlines()[0][:200]}")
    raise RuntimeError("the model could not be logged: " + "; ".join(errors))


def _in_memory_copy(model, example, fmt: str):
    """The model as `fmt` keeps it, saved to and loaded from memory: the round trip
    mlflow.pytorch.load_model would make, on bytes this process made a moment ago (never a
    file: nothing in a model store or run folder is loaded by us)."""
    import io

    import torch

    buffer = io.BytesIO()
    if fmt == "pt2":  # as MLflow exports it: the batch dimension left to the exporter
        program = torch.export.export(model, (example,),
                                      dynamic_shapes=[{0: torch.export.Dim.AUTO}])
        torch.export.save(program, buffer)
        buffer.seek(0)
        return torch.export.load(buffer).module()
    if fmt == "torchscript":
        torch.jit.save(model, buffer)
        buffer.seek(0)
        return torch.jit.load(buffer)
    import mlflow.pytorch

    torch.save(model, buffer, pickle_module=mlflow.pytorch.pickle_module)
    buffer.seek(0)
    # the bytes just written above, in memory: unpickling them runs only this process's code
    return torch.load(buffer, weights_only=False, pickle_module=mlflow.pytorch.pickle_module)


STORED_FILES = {"pt2": "model.pt2", "pickle": "model.pth", "torchscript": "model.pth"}


def _check_stored(info, fmt: str) -> None:
    """The logged model's weights file is in the model store, not empty (listed, not read)."""
    import mlflow

    client = mlflow.MlflowClient()
    files = {f.path.rsplit("/", 1)[-1]: f.file_size
             for f in client.list_logged_model_artifacts(info.model_id, "data")}
    if not files.get(STORED_FILES[fmt]):
        raise RuntimeError(f"the model store holds no {STORED_FILES[fmt]} for the logged model "
                           f"(found: {', '.join(files) or 'nothing'})")


@contextlib.contextmanager
def _quiet_torch_io():
    """No warnings about pickle, TorchScript or export deprecations while a model is logged and
    reloaded (the format that worked is recorded on the model version)."""
    # mlflow.models warns when its reload of a format fails ("Failed to validate serving input
    # example"): that format's failure is in this module's own list, and the next one is tried
    loggers = [logging.getLogger(name) for name in ("mlflow.pytorch", "mlflow.models")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def apply_model_op(book: Book, op: dict) -> str:
    """Log and register the model of `op["checkpoint"]` in the run `op["key"]` as the logged
    model `op["model_name"]`, alias `op["alias"]`, with its figures and description
    (versions.py); idempotent (a version already made from this run is reused). Returns the
    model version. Logged models that no version uses (a format that failed, an attempt cut
    short) are deleted."""
    from mlflow.exceptions import MlflowException

    client, name = book.client, op["name"]
    alias, model_name = op.get("alias", "best"), op.get("model_name") or "model"
    run_id = book.run_id(op["key"])
    try:
        description = client.get_registered_model(name).description
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(name)
        description = None
    versions.describe_model(client, name, description)
    done = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if done:
        version = max(done, key=lambda v: int(v.version)).version
    else:
        try:
            model, example, meta = import_loader(op.get("loader") or DEFAULT_LOADER)(
                op["checkpoint"])
        except Exception as err:  # not the backend's fault: retrying cannot help
            reason = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
            raise ValueError(f"cannot rebuild the model of {op['checkpoint']}: {reason}") \
                from None
        figures = dict(op.get("figures") or {})
        if "latency_ms_b1" not in figures:  # a trial's model: measured as the stages are
            figures = {**versions.measure(model, example), **figures}
        _drop_logged_models(book, run_id, keep=None)  # left by an attempt cut short
        kept = None
        try:
            info, fmt = log_model(book.uri, run_id, model, example, meta, model_name)
            kept = info.model_id
        finally:  # the formats tried before the one that worked
            _drop_logged_models(book, run_id, keep=kept)
        source = op.get("source") or f"run {run_id}"
        # The registry resolves a models:/ source through the *global* tracking URI.
        with _use_tracking_uri(book.uri):
            version = client.create_model_version(
                name, source=info.model_uri, run_id=run_id, model_id=info.model_id,
                tags=versions.version_tags(figures, source=source, fmt=fmt,
                                           search_id=book.search_id, extra=op.get("tags")),
                description=versions.describe(op.get("about") or source, alias, figures,
                                              fmt)).version
    client.set_registered_model_alias(name, alias, version)
    return str(version)


def _drop_logged_models(book: Book, run_id: str, keep: str | None) -> None:
    """Delete the logged models of `run_id` but `keep` (and any a version uses)."""
    client = book.client
    used = set()
    for v in client.search_model_versions(f"run_id = '{run_id}'"):
        # a version made from a logged model has it as its source (models:/<model id>)
        used.add(v.model_id or (v.source or "").removeprefix("models:/").split("/")[0])
    for logged in client.search_logged_models([book.experiment_id],
                                              filter_string=f"source_run_id = '{run_id}'"):
        if logged.model_id != keep and logged.model_id not in used:
            client.delete_logged_model(logged.model_id)
