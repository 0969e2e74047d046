"""The pipeline: the stages in order on the source checkpoint, each kept in its folder when it
finishes, measured, and recorded in MLflow; resumed after the last finished stage."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

from search.errors import UserError

from .files import MODEL_FILE, PIPELINE_FILE, RESULT_FILE, plain, read_json, write_result
from .placement import describe, in_task, placed, stage_resources, train_stage, train_student
from .source import Source, enabled_stages, find_source, pick_run
from .table import REPEATS, THREADS, Outcome, Row, stage_table

SHOWN = ("train_loss", "val_loss", "val_accuracy")  # the per-epoch line of a training stage


class StageFailed(Exception):
    """A stage raised something other than a user's mistake: one line for the command line,
    the traceback in the stage's error file."""

    exit_code = 1


def run_stages(output: str | Path, run_id: str | None = None, *, restart: bool = False,
               cpus: int | None = None, tracking_uri: str | None = None,
               storage: str | None = None, stream: TextIO | None = None) -> Outcome:
    """Run the enabled stages of a finished search run (default: the newest) on its best
    trial's checkpoint; resumes after the last finished stage unless `restart`."""
    import optuna

    from search.studies import study as studies
    from search.lifecycle.runs import read_run_file, run_space
    from search.tracking.stages import StageLog

    from .distill import forget, study_name

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    output = Path(output).expanduser().absolute()
    run_folder = pick_run(output, run_id)
    info = read_run_file(run_folder)
    space = run_space(run_folder, info)
    stages = enabled_stages(space)
    if not stages:
        raise UserError(f"stages: the space {info['space_name']!r} of run {run_folder.name} has "
                        "no enabled stages (its `stages:` section is empty or all disabled)")
    url = studies.storage_url(storage, output) if storage else info["storage_url"]
    study = studies.load_study(studies.open_storage(url), info["study_name"])
    source = find_source(study, output, run_folder)
    folder = output / "stages" / run_folder.name
    distill_study = study_name(info["space_name"], run_folder.name)
    if restart:  # pipeline.json stays: its attempt counts keep the MLflow runs apart
        for child in folder.iterdir() if folder.is_dir() else ():
            if child.is_dir():
                shutil.rmtree(child)
            elif child.name != PIPELINE_FILE:
                child.unlink()
        forget(url, distill_study)
    log = StageLog.open(output, run_folder.name, tracking_uri) if space.tracking.enabled \
        else None
    cpus = cpus or (info.get("options") or {}).get("cpus")
    distill = {"storage_url": url, "name": distill_study, "seed": space.seed}
    runner = _Pipeline(folder, source, stages, log, cpus, stream or sys.stdout, distill)
    address = (info.get("options") or {}).get("address")
    resources = stage_resources(space, address)
    if resources is None:
        return runner.run(Outcome(run_folder.name, folder, source))
    from search.cluster.connect import ray_session

    with ray_session(address, cpus):  # training stages run as tasks where the GPUs are
        runner.resources = placed(resources)
        return runner.run(Outcome(run_folder.name, folder, source))


class _Pipeline:
    def __init__(self, folder: Path, source: Source, stages: list[dict], log, cpus,
                 stream: TextIO, distill: dict) -> None:
        self.folder, self.source, self.stages, self.log = folder, source, stages, log
        self.cpus, self.stream, self.distill = cpus, stream, distill
        self._data: dict[str, Any] = {}
        self.state = self._load_state()
        self.resources = None  # a plan.Resources: training stages run as Ray tasks with it

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def _load_state(self) -> dict:
        path = self.folder / PIPELINE_FILE
        state = json.loads(path.read_text()) if path.is_file() else {}
        src = {"trial": self.source.trial, "checkpoint": self.source.checkpoint}
        if state.get("source") != src and self.folder.exists():
            # another starting point: nothing measured or trained from the old one is valid
            for child in self.folder.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
        state["source"] = src
        state.setdefault("attempts", {})
        return state

    def _save_state(self, **changes) -> None:
        self.state.update(changes)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / (PIPELINE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        os.replace(tmp, self.folder / PIPELINE_FILE)

    def data_for(self, config: dict):
        from trainers.datasets import load_data

        key = json.dumps(config.get("data", {}), sort_keys=True, default=str)
        if key not in self._data:
            self._data[key] = load_data(config.get("data", {}))
        return self._data[key]

    def measure(self, sm) -> dict:
        import torch
        from trainers.stages import measure

        threads = torch.get_num_threads()
        try:
            return {k: float(v) for k, v in measure(sm, self.data_for(sm.config),
                                                      threads=THREADS, repeats=REPEATS).items()}
        finally:
            torch.set_num_threads(threads)

    def run(self, out: Outcome) -> Outcome:
        from trainers.stages import from_checkpoint, load_stage_model

        self._save_state(state="running", started=time.time())
        if self.log is not None:
            self.log.close_killed()
        self.say(f"stages of {out.run_id}: {len(self.stages)} after trial #{self.source.trial} "
                 f"({', '.join(f'{v:.4g}' for v in self.source.values)}), checkpoint "
                 f"{self.source.checkpoint}")
        sm = from_checkpoint(self.source.checkpoint)
        out.rows.append(self._best_row(sm))
        fresh = False  # once a stage runs, every later one runs too (it takes the new model)
        for index, stage in enumerate(self.stages, 1):
            name = f"{index}-{stage['stage']}"
            done = self.folder / name
            result = read_json(done / RESULT_FILE)
            if not fresh and result is not None and result["stage"] == plain(stage):
                sm = load_stage_model(done / MODEL_FILE)
                out.rows.append(Row(index, stage["stage"], result["kind"], result["figures"],
                                    result["seconds"]["stage"], reused=True))
                self.say(f"stage {index}/{len(self.stages)} {stage['stage']}: finished "
                         f"earlier, its model reused ({done / MODEL_FILE})")
                continue
            if not fresh:  # what was made after this stage came from its old model
                for j in range(index, len(self.stages) + 1):
                    shutil.rmtree(self.folder / f"{j}-{self.stages[j - 1]['stage']}",
                                  ignore_errors=True)
                fresh = True
            sm, row = self._run_one(index, stage, sm)
            note = slower_note(out.rows[-1], row)
            if note:
                self.say(f"stage {index}/{len(self.stages)} {stage['stage']}: note: {note}")
            out.rows.append(row)
        last = self.folder / f"{len(self.stages)}-{self.stages[-1]['stage']}"
        out.final_model = last / MODEL_FILE
        out.model_version, out.registry_note = self._register(last, out)
        self._save_state(state="finished", ended=time.time(), final_model=str(out.final_model))
        return out

    def _best_row(self, sm) -> Row:
        """Stage 0: the search's best model as it is, measured (once; then read back)."""
        folder = self.folder / "0-best"
        result = read_json(folder / RESULT_FILE)
        reused = result is not None
        if result is None:
            run_name = self._attempt("0-best")
            figures = self.measure(sm)
            result = {"index": 0, "stage": {"stage": "best"}, "kind": sm.kind,
                      "figures": figures, "seconds": {"stage": 0.0},
                      "source_checkpoint": self.source.checkpoint,
                      "source_trial": self.source.trial, "mlflow_run": run_name}
            write_result(folder, result)
            if self.log is not None:
                self.log.start(run_name, {"stage": "best"}, 0,
                               {"trial": self.source.trial,
                                "checkpoint": self.source.checkpoint})
                self.log.finish(run_name, figures, [folder / RESULT_FILE])
        return Row(0, "best", result["kind"], result["figures"], 0.0, reused=reused)

    def _attempt(self, name: str) -> str:
        """The MLflow run name of this attempt at a stage: each attempt gets its own run
        (`<name>`, then `<name> attempt N`), so no curve mixes two attempts."""
        attempt = self.state["attempts"].get(name, 0) + 1
        self._save_state(attempts={**self.state["attempts"], name: attempt}, current=name)
        return name if attempt == 1 else f"{name} attempt {attempt}"

    def _run_one(self, index: int, stage: dict, previous) -> tuple[Any, Row]:
        from trainers.errors import TrainerError
        from trainers.stages import run_stage, save_stage_model

        name = f"{index}-{stage['stage']}"
        run_name = self._attempt(name)
        head = f"stage {index}/{len(self.stages)} {stage['stage']}"
        if self.log is not None:
            self.log.start(run_name, stage, index, _options(stage))
        self.say(f"{head}: {_options_text(stage)}")

        def report(metrics: dict) -> None:  # trainers.fit's per-epoch report
            epoch = int(metrics.get("epoch", 0))
            values = {k: v for k, v in metrics.items() if k != "epoch"
                      and isinstance(v, (int, float)) and not isinstance(v, bool)}
            if self.log is not None:
                self.log.curve(run_name, epoch, values)
            shown = ", ".join(f"{k} {values[k]:.4g}" for k in SHOWN if k in values)
            self.say(f"{head}: epoch {epoch}: {shown}")

        partial = self.folder / (name + ".partial")
        started = time.monotonic()
        ran_on: list[dict] = []  # where each Ray task of the stage ran
        try:
            searched = None
            search_distill = stage["stage"] == "distill" and stage.get("trials", 0) > 0
            if self.resources is not None:
                tasks = "one Ray task per student" if search_distill else "a Ray task"
                self.say(f"{head}: runs as {tasks}, holding {describe(self.resources)}")
            if self.resources is not None and not search_distill:
                sm, reports, where = in_task(self.resources, train_stage, stage, previous,
                                             self.resources.threads)
                ran_on.append(where)
                for metrics in reports:
                    report(metrics)
            elif search_distill:
                sm, searched = self._distill_search(index, stage, previous, run_name, ran_on)
            else:
                given = None if stage.get("data") else self.data_for(previous.config)
                sm = run_stage(stage, previous, data=given, cpus=self.cpus, report=report)
            seconds = time.monotonic() - started
            figures = self.measure(sm)
            if partial.exists():
                shutil.rmtree(partial)
            save_stage_model(sm, partial / MODEL_FILE)
            result = {"index": index, "stage": plain(stage), "kind": sm.kind,
                      "figures": figures, "seconds": {"stage": seconds,
                                                      "measure": time.monotonic() - started
                                                      - seconds},
                      "source_checkpoint": self.source.checkpoint,
                      "source_trial": self.source.trial, "mlflow_run": run_name,
                      "finished": time.time(), **({"search": searched} if searched else {}),
                      **({"ran_on": ran_on} if ran_on else {})}
            write_result(partial, result)
            os.replace(partial, self.folder / name)
        except KeyboardInterrupt:
            self._failed(run_name, "interrupted", "KILLED")
            raise
        except UserError as err:
            self._failed(run_name, str(err))
            kind = TrainerError if isinstance(err, TrainerError) else UserError
            raise kind(f"stage {index} ({stage['stage']}): {err}") from None
        except Exception as err:
            line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            self.folder.mkdir(parents=True, exist_ok=True)
            trace = self.folder / f"{name}.error.txt"
            trace.write_text(traceback.format_exc())
            self._failed(run_name, f"{type(err).__name__}: {line}")
            raise StageFailed(f"stage {index} ({stage['stage']}) failed: {type(err).__name__}: "
                              f"{line} (traceback in {trace}); the finished stages are kept, "
                              "`search stages` continues from this one") from err
        folder = self.folder / name
        if self.log is not None:
            if searched:
                self.log.tracker.log_params(run_name, {f"chosen.{k}": v
                                                       for k, v in searched["best"].items()})
            self.log.finish(run_name, figures, [folder / MODEL_FILE, folder / RESULT_FILE])
        self.say(f"{head}: done in {seconds:.1f} s, test accuracy "
                 f"{figures.get('test_accuracy', float('nan')):.4f} ({folder / MODEL_FILE})")
        return sm, Row(index, stage["stage"], sm.kind, figures, seconds)

    def _distill_search(self, index: int, stage: dict, teacher, run_name: str,
                        ran_on: list[dict]):
        """`trials: N`: the best of N students (distill.py), each trained as a Ray task with
        the stage's resources when the stages have them, else in this process."""
        from .distill import search_distill
        from .distill import train_student as train_here

        previous = self.folder / (f"{index - 1}-{self.stages[index - 2]['stage']}"
                                  if index > 1 else "0-best")
        teacher_id = json.dumps([self.source.checkpoint, previous.name,
                                 (read_json(previous / RESULT_FILE) or {}).get("finished")])

        def on_trial(number: int, options: dict, accuracy: float) -> None:
            if self.log is not None:
                self.log.tracker.log_metrics(run_name, {"trial/val_accuracy": accuracy},
                                             step=number)

        def train(student_stage: dict):
            if self.resources is None:
                return train_here(student_stage, teacher, data=self.data_for(teacher.config),
                                  cpus=self.cpus)
            student, accuracy, where = in_task(self.resources, train_student, student_stage,
                                               teacher, self.resources.threads)
            ran_on.append(where)
            return student, accuracy

        return search_distill(stage, teacher, storage_url=self.distill["storage_url"],
                              name=self.distill["name"], seed=self.distill["seed"],
                              teacher_id=teacher_id,
                              folder=self.folder / f"{index}-distill.trials",
                              train=train, say=self.say, on_trial=on_trial)

    def _failed(self, run_name: str, reason: str, status: str = "FAILED") -> None:
        if self.log is not None:
            self.log.fail(run_name, reason, status)
        self._save_state(state="failed", reason=reason[:1000], ended=time.time())

    def _register(self, last: Path, out: Outcome) -> tuple[str | None, str]:
        """The final model in the registry with alias `candidate`, and the table on the
        parent run; (version, a note for the user)."""
        if self.log is None:
            return None, "tracking is off: not registered"
        self.log.note("stages/summary.txt", stage_table(out.rows) + "\n")
        result = read_json(last / RESULT_FILE) or {}
        version = self.log.register(result.get("mlflow_run", last.name), last / MODEL_FILE,
                                    result)
        self.log.done()
        name = self.log.settings.register_as
        if version is not None:
            return version, f"registered as {name} version {version}, alias candidate"
        if self.log.spooled:
            return None, (f"tracking backend unreachable: {self.log.spooled} writes (the "
                          f"registration too) wait for `search sync`")
        return None, f"not registered: {self.log.refused() or 'the backend refused it'}"


def slower_note(previous: Row, row: Row) -> str:
    """Quantisation that does not pay at batch 1: said, not hidden (tiny layers spend their
    time in the quantise/requantise steps, not in the arithmetic int8 makes cheaper)."""
    if row.stage != "quantize":
        return ""
    before, after = previous.figures.get("latency_ms_b1"), row.figures.get("latency_ms_b1")
    if not before or not after or after < before:
        return ""
    smaller = previous.figures.get("size_bytes", 0) / max(row.figures.get("size_bytes", 1), 1)
    return (f"{row.kind} is not faster than its input at batch 1 ({after:.3f} vs {before:.3f} "
            f"ms on 1 thread): this model's layers are too small for the saving to outweigh "
            f"the quantisation steps; it is {smaller:.1f}× smaller on disk")


def _options(stage: dict) -> dict:
    return {k: v for k, v in stage.items() if k not in ("stage", "enabled")}


def _options_text(stage: dict) -> str:
    """The stage's options in one line; a student as its name and what differs from that
    model's defaults."""
    parts = []
    for key, value in _options(stage).items():
        if key == "student" and isinstance(value, dict):
            from trainers.catalog import defaults

            base = defaults({"model": value.get("name")}).get("model", {})
            value = value.get("name", "?") + "(" + ", ".join(
                f"{k}={v}" for k, v in value.items() if k != "name" and base.get(k) != v) + ")"
        if value is not None:
            parts.append(f"{key}={value}")
    return ", ".join(parts) or "defaults"
