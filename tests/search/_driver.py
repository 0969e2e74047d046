"""A `search run` driver for the kill -9 test: python _driver.py OUTPUT LOG."""
from __future__ import annotations

import os
import sys

os.environ.update({"RAY_USAGE_STATS_ENABLED": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"})

from search.lifecycle.runner import RunOptions, run_search  # noqa: E402
from search.testing import toy_space  # noqa: E402

SPACE = dict(name="killed", trials=8, epochs=4, sampler_name="random", pruner_name="none",
             resources={"cpu": 1, "max_concurrent": 2})

if __name__ == "__main__":
    output, log = sys.argv[1], sys.argv[2]
    space = toy_space(**SPACE, toy={"epoch_seconds": 0.4, "log": log})
    outcome = run_search(space, RunOptions(output=output, fit="search.testing:known_work_fit",
                                           cpus=2, retries=0, live=False))
    sys.exit(outcome.exit_code)
