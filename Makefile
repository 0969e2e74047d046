# Two entry points for a fresh machine (see README): `make quickstart` and `make test`.
# Both create .venv on first use from the pinned constraints; afterwards set-up is a no-op.
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed-stamp

.PHONY: quickstart test setup
setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

quickstart: $(STAMP)
	$(VENV)/bin/search run spaces/quickstart.yaml

# Two workers on the 2 cores: most tests wait on Ray, servers and subprocesses. A module stays on
# one worker (its module-scoped search runs once); slow modules go first (tests/conftest.py).
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile
