"""Types of the command line's number flags: a whole number within the flag's range, or one line
naming the flag and the rule (search/cli.py's Parser prints it). NaN, inf, fractions, words
and numbers past the range (`--cpus 999...9`, `-n 1e30`) are refused before anything starts."""
from __future__ import annotations

import argparse
from typing import Callable

from search.errors import shown_value

MAX_CPUS = 100_000          # Ray's own limit is 1e14; past this it is a typo
MAX_RETRIES = 100           # Tune's max_failures; -1 (forever) is not offered
MAX_WARM_START = 100_000    # capped by the run's budget anyway
MAX_SAMPLES = 100_000       # `search sample -n`: each is drawn and printed
MAX_SEED = 2 ** 32 - 1      # numpy's and Optuna's samplers' seed range
MAX_PORT = 65_535
MAX_LINES = 1_000_000


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an int in [low, high] (no upper bound when high is None)."""
    rule = f"between {low:,} and {high:,}" if high is not None else f">= {low:,}"

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:  # also 5,000 digits and more (Python refuses to parse them)
            what = "must be" if text.strip().lstrip("+-").isdigit() else \
                "expected a whole number"
            raise argparse.ArgumentTypeError(f"{what} {rule}, got {shown_value(text)}") \
                from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {shown_value(text)}")
        return value

    parse.__name__ = "whole number"
    return parse
