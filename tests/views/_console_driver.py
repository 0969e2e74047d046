"""`search ARGS...` (search.cli.main) with stdout watched: at its first write, how long this
process had run and whether Ray, MLflow or torch were imported yet go, as JSON, to the file
named by the first argument. Used by tests/views to check that `search run` speaks first."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

START = time.monotonic()


class Watched:
    def __init__(self, stream, record: Path):
        self.stream, self.record, self.noted = stream, record, False

    def write(self, text: str) -> int:
        if not self.noted and text.strip():
            self.noted = True
            self.record.write_text(json.dumps({
                "seconds": time.monotonic() - START, "text": text,
                **{name: name in sys.modules for name in ("ray", "mlflow", "torch")}}))
        return self.stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


if __name__ == "__main__":
    sys.stdout = Watched(sys.stdout, Path(sys.argv[1]))
    from search.cli import main

    sys.exit(main(sys.argv[2:]))
