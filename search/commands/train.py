"""`search train SPACE [--set key=value ...] [--epochs N] [--checkpoint-dir DIR]`: one training
run of a space's fixed settings (plus overrides), no Ray, no Optuna; or of a config file
(`--config FILE`: a trial's MLflow config.yaml, best_config.yaml, `search sample` output).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from search.commands.values import whole

USER_CODE = True  # imports the space's factories and fit from the current folder (cli.py)
NAME = "train"
HELP = ("train once with a space's fixed settings (plus --set overrides) or a trial's config "
        "file, printing a line per epoch and the final test accuracy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", metavar="SPACE", help="space YAML file")
    parser.add_argument("--config", metavar="FILE",
                        help="a config file instead of a space: a trial's MLflow config.yaml, "
                             "the search's best_config.yaml, one `search sample` document "
                             "(settings groups, optionally under `config:`, or dotted params)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        dest="overrides", help="override a setting, e.g. --set optimizer.lr=1e-3 "
                        "(repeatable; values are read as YAML)")
    parser.add_argument("--epochs", type=whole(1), metavar="N",
                        help="shorthand for --set train.epochs=N")
    parser.add_argument("--checkpoint-dir", metavar="DIR",
                        help="write last.pt and best.pt here after every epoch")


def parse_sets(items: list[str]) -> dict[str, str]:
    from search.errors import UserError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item}: expected KEY=VALUE such as optimizer.lr=0.001")
        out[key.strip()] = value.strip()
    return out


def load_config_file(path: str, overrides: dict) -> dict:
    """The settings of a config file, with dotted overrides applied (fit checks them). Takes
    what the tool writes: a settings tree (a trial's MLflow `config.yaml`, `best_config.yaml`,
    one document of `search sample`), the same under a `config:` key, or dotted parameters
    (`search sample --params`, a `best_config.yaml` of parameters only)."""
    import yaml

    from search.errors import UserError
    from spaces.settings import parse_override
    from spaces.yamlio import load_yaml

    text = read_config_text(path)
    try:  # composing expands no alias: an alias bomb costs nothing here
        docs = [d for d in yaml.compose_all(text, Loader=yaml.SafeLoader) if d is not None]
    except yaml.YAMLError as err:
        raise UserError(f"--config {path}: not valid YAML ({' '.join(str(err).split())})") \
            from None
    except RecursionError:
        raise UserError(f"--config {path}: nested too deeply") from None
    if len(docs) > 1:
        raise UserError(f"--config {path}: holds {len(docs)} YAML documents (as `search sample` "
                        "prints); keep the one to train, e.g. `search sample SPACE -n 1`")
    # one document, read as space files are (aliases, values and depth bounded; YAML 1.2 floats)
    config = settings_of(load_yaml(text, file=path)[0] if docs else None, path)
    for key, value in overrides.items():
        group, name, parsed = parse_override(key, value)
        config.setdefault(group, {})[name] = parsed
    return config


MAX_CONFIG_BYTES = 1024 ** 2  # a config is a few kilobytes


def read_config_text(path: str) -> str:
    """The text of a config file: a regular file (a FIFO would block, /dev/zero never end) of
    at most MAX_CONFIG_BYTES, UTF-8; else one line naming it."""
    import stat

    from search.errors import UserError

    try:
        info = Path(path).stat()
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, FIFO or socket"
            raise UserError(f"--config {path}: not a regular file ({kind}); give a YAML file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise UserError(f"--config {path}: larger than 1 MiB ({info.st_size:,} bytes); a "
                            "config file is a few kilobytes")
        with open(path, "rb") as f:
            return f.read(MAX_CONFIG_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"--config {path}: does not exist") from None
    except UnicodeDecodeError as err:
        raise UserError(f"--config {path}: not a text file (byte {err.start} is not UTF-8)") \
            from None
    except (OSError, ValueError) as err:
        raise UserError(f"--config {path}: cannot read it "
                        f"({getattr(err, 'strerror', None) or err})") from None


def settings_of(raw, path: str) -> dict:
    """The settings tree of one parsed config document (see load_config_file)."""
    from search.errors import UserError
    from trainers.catalog import GROUPS

    if isinstance(raw, dict) and isinstance(raw.get("config"), dict):
        raw = raw["config"]
    expected = (f"--config {path}: expected the settings groups ({', '.join(GROUPS)}) as a "
                "trial's config.yaml, best_config.yaml or `search sample` has them (optionally "
                "under a `config:` key)")
    if not isinstance(raw, dict) or not raw:
        raise UserError(expected)
    if "space" in raw or "name" in raw:
        raise UserError(f"--config {path}: is a space file; train it with `search train {path}`")
    if all(isinstance(k, str) and k.partition(".")[0] in GROUPS and "." in k for k in raw):
        config: dict = {}
        for key, value in raw.items():  # dotted parameters: optimizer.lr -> optimizer: {lr}
            group, _, rest = key.partition(".")
            config.setdefault(group, {})[rest] = value
        return config
    unknown = [k for k in raw if k not in GROUPS]
    if unknown:
        raise UserError(f"{expected}; got {', '.join(map(str, unknown[:5]))}")
    return {g: dict(v) if isinstance(v, dict) else v for g, v in raw.items()}


def epoch_line(m: dict, epochs: int) -> str:
    return (f"epoch {m['epoch']:>3}/{epochs}  train_loss {m['train_loss']:.4f}  "
            f"val_loss {m['val_loss']:.4f}  val_acc {m['val_accuracy']:.4f}  lr {m['lr']:.2e}  "
            f"{m['samples_per_sec']:,.0f} samples/s  {m['epoch_time']:.1f} s")


def run(args: argparse.Namespace) -> int:
    from search.errors import UserError

    if (args.file is None) == (args.config is None):
        raise UserError("search train: give either a space file or --config FILE (one of them)")
    overrides = parse_sets(args.overrides)
    if args.checkpoint_dir is not None:
        from search.lifecycle.runs import check_folder

        check_folder(Path(args.checkpoint_dir).expanduser().absolute(), "--checkpoint-dir")
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    if args.config is not None:
        config = load_config_file(args.config, overrides)
    else:
        from search.lifecycle.usercode import check_user_code
        from spaces import load_space
        space = load_space(Path(args.file), filename=args.file)  # a path, newline or not
        check_user_code(space)
        config = space.config_with(overrides)
        if space.fit:
            return own_fit(space, config, args.checkpoint_dir)

    from trainers import DivergedError, fit, resolve_config

    epochs = resolve_config(config)["train"]["epochs"]
    warnings.filterwarnings("ignore", message="train.precision")  # printed as a note below
    try:
        result = fit(config, checkpoint_dir=args.checkpoint_dir,
                     report=lambda m: print(epoch_line(m, epochs), flush=True))
    except DivergedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for note in result.notes:
        print(f"note: {note}")
    print(f"test accuracy {result.test_accuracy:.4f} (model of epoch {result.best_epoch}, "
          f"val accuracy {result.best_val_accuracy:.4f}); {result.num_params:,} parameters")
    if result.folds:
        print(f"{len(result.folds)} folds ran; val accuracy per fold "
              + ", ".join(f"{f.best_val_accuracy:.4f}" for f in result.folds)
              + f" (mean {result.best_val_accuracy:.4f})")
    if result.checkpoint:
        print(f"checkpoint {result.checkpoint}")
    return 0


def own_fit(space, config: dict, checkpoint_dir: str | None) -> int:
    """One run of the space's `fit:` function, with the keywords it takes; its per-epoch
    metrics printed as they come."""
    from search.lifecycle.usercode import (ContractError, check_report, epoch_objectives,
                                          fit_keywords, fit_result, resolve_fit)

    fn = resolve_fit(space.fit, f"fit {space.fit}")
    reported: list[dict] = []
    expects = epoch_objectives(space.objectives)

    def report(metrics: dict) -> bool:  # held to the contract a search holds it to
        check_report(metrics, reported, int(config["train"]["epochs"]), expects)
        reported.append(metrics)
        print("  ".join(f"{k} {_short(v)}" for k, v in metrics.items()), flush=True)
        return False

    try:
        result = fit_result(fn(config, **fit_keywords(fn, dict(
            report=report, checkpoint_dir=checkpoint_dir, resume_from=None, cpus=None))),
            reported)
    except ContractError as err:
        raise ContractError(f"fit {space.fit}: {err}") from None
    test = getattr(result, "test_accuracy", None)
    if test is not None:
        print(f"test accuracy {test:.4f}")
    return 0


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
