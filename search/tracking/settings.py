"""The plain settings of one tracked search run, saved beside its spool so that `search sync`
and `search ui` (and a restored Tune callback) find the backend, the experiment and the runs
again without the space file.

Files of a search run: <output>/tracking/<run id>/{settings.json, spool.jsonl, plots/}.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from search.errors import UserError

from .names import experiment_tags
from .registry import DEFAULT_LOADER
from .runs import Book
from .spool import Spool, Writer

SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class Settings:
    """Everything needed to reconnect to the search's runs, all plain values."""

    uri: str
    experiment: str
    artifact_location: str | None
    search_id: str
    name: str
    output_dir: str  # the search's output folder (absolute)
    run_id: str  # the search run inside it: its files are in <output_dir>/tracking/<run_id>/
    metric: str
    mode: str = "max"
    keep_checkpoints: int = 3
    budget: int | None = None
    register_as: str | None = None
    loader: str = DEFAULT_LOADER
    retry_every: float = 30.0

    @property
    def folder(self) -> Path:
        return Path(self.output_dir) / "tracking" / self.run_id

    @property
    def spool_path(self) -> Path:
        return self.folder / "spool.jsonl"

    def writer(self, client=None) -> Writer:
        book = Book(self.uri, self.experiment, self.artifact_location, self.search_id, client,
                    experiment_tags(self.metric, self.mode, self.name))
        return Writer(book, Spool(self.spool_path), retry_every=self.retry_every)

    def save(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path, tmp = self.folder / SETTINGS_FILE, self.folder / (SETTINGS_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Settings:
        """The settings saved in `folder` (<output>/tracking/<run id>), for the output folder
        it is in now (see `at`)."""
        data = json.loads((Path(folder) / SETTINGS_FILE).read_text())
        known = {f.name for f in fields(cls)}
        settings = cls(**{k: v for k, v in data.items() if k in known})
        return settings.at(Path(folder).absolute().parent.parent)

    def at(self, output: Path) -> Settings:
        """These settings for the search's folder now at `output`: a copied or moved folder
        keeps using its own default database and artifacts (paths recorded inside the old
        folder are read relative to it); a database or server elsewhere stays as recorded."""
        old = Path(self.output_dir)
        if old == output:
            return self

        def rebase(text: str | None) -> str | None:
            for head, new in ((f"sqlite:///{old}/", f"sqlite:///{output}/"),
                              (old.as_uri() + "/", output.as_uri() + "/")):
                if text and text.startswith(head):
                    return new + text[len(head):]
            return text

        return replace(self, output_dir=str(output), uri=rebase(self.uri),
                       artifact_location=rebase(self.artifact_location))


def saved_runs(output_dir: str | os.PathLike) -> list[Settings]:
    """The tracked search runs of an output folder, oldest first."""
    root = Path(output_dir) / "tracking"
    if not root.is_dir():
        return []
    found = [Settings.load(p) for p in sorted(root.iterdir()) if (p / SETTINGS_FILE).is_file()]
    return found


def latest(output_dir: str | os.PathLike) -> Settings:
    runs = saved_runs(output_dir)
    if not runs:
        raise UserError(f"{output_dir}: no tracked search here (no tracking/*/{SETTINGS_FILE}); "
                        "give the output folder of a `search run`")
    return runs[-1]
