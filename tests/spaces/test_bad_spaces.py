"""Every file in tests/data/bad_spaces is broken in one way; its first line says how:
`# expect: <part of the message>`. `search validate` must exit 2 with that one-line message,
naming the file, and no traceback."""
from __future__ import annotations

from pathlib import Path

import pytest

from search.cli import main

BAD = sorted((Path(__file__).parents[1] / "data" / "bad_spaces").glob("*.yaml"))


def test_there_are_enough_broken_files():
    assert len(BAD) >= 18


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_validate_reports_one_clear_line(path: Path, capsys):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: ...'"
    expected = first[len("# expect: "):]
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code == 2, out
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}"), lines[0]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err


def test_validate_goes_on_after_a_broken_file(capsys):
    good = Path(__file__).parents[2] / "spaces" / "quickstart.yaml"
    code = main(["validate", str(BAD[0]), str(good), str(BAD[1])])
    out, err = capsys.readouterr()
    assert code == 2
    assert len(err.strip().splitlines()) == 2
    assert "quickstart" in out and "searched parameters" in out
