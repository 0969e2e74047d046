"""`search train SPACE [--set key=value ...] [--epochs N] [--checkpoint-dir DIR]`: one training
run of a space's fixed settings (plus overrides), no Ray, no Optuna; or of a config file
(`--config FILE` holding a `config:` mapping, as a search prints for a trial).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

NAME = "train"
HELP = ("train once with a space's fixed settings (plus --set overrides) or a trial's config "
        "file, printing a line per epoch and the final test accuracy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", metavar="SPACE", help="space YAML file")
    parser.add_argument("--config", metavar="FILE",
                        help="YAML file with a `config:` mapping (instead of a space)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        dest="overrides", help="override a setting, e.g. --set optimizer.lr=1e-3 "
                        "(repeatable; values are read as YAML)")
    parser.add_argument("--epochs", type=int, metavar="N", help="shorthand for --set train.epochs=N")
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
    """The `config:` mapping of a YAML file, with dotted overrides applied (fit checks it)."""
    import yaml

    from search.errors import UserError
    from spaces.settings import parse_override

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise UserError(f"--config {path}: cannot read it ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise UserError(f"--config {path}: not valid YAML ({' '.join(str(err).split())})") \
            from None
    if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict):
        raise UserError(f"--config {path}: expected a mapping with a `config:` key holding the "
                        "settings groups (data, model, optimizer, ...)")
    config = {g: dict(v) if isinstance(v, dict) else v for g, v in raw["config"].items()}
    for key, value in overrides.items():
        group, name, parsed = parse_override(key, value)
        config.setdefault(group, {})[name] = parsed
    return config


def epoch_line(m: dict, epochs: int) -> str:
    return (f"epoch {m['epoch']:>3}/{epochs}  train_loss {m['train_loss']:.4f}  "
            f"val_loss {m['val_loss']:.4f}  val_acc {m['val_accuracy']:.4f}  lr {m['lr']:.2e}  "
            f"{m['samples_per_sec']:,.0f} samples/s  {m['epoch_time']:.1f} s")


def run(args: argparse.Namespace) -> int:
    from search.errors import UserError

    if (args.file is None) == (args.config is None):
        raise UserError("search train: give either a space file or --config FILE (one of them)")
    overrides = parse_sets(args.overrides)
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    if args.config is not None:
        config = load_config_file(args.config, overrides)
    else:
        from search.usercode import check_user_code
        from spaces import load_space
        space = load_space(args.file, filename=args.file)
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
    if result.checkpoint:
        print(f"checkpoint {result.checkpoint}")
    return 0


def own_fit(space, config: dict, checkpoint_dir: str | None) -> int:
    """One run of the space's `fit:` function, with the keywords it takes; its per-epoch
    metrics printed as they come."""
    from search.usercode import fit_keywords, resolve_fit

    fn = resolve_fit(space.fit, f"fit {space.fit}")

    def report(metrics: dict) -> bool:
        print("  ".join(f"{k} {_short(v)}" for k, v in metrics.items()), flush=True)
        return False

    result = fn(config, **fit_keywords(fn, dict(report=report, checkpoint_dir=checkpoint_dir,
                                                 resume_from=None, cpus=None)))
    test = result.get("test_accuracy") if isinstance(result, dict) \
        else getattr(result, "test_accuracy", None)
    if test is not None:
        print(f"test accuracy {test:.4f}")
    return 0


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
