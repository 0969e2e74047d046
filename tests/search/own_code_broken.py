"""A user module that fails when imported (tests/data/bad_spaces/fit_module_raises.yaml)."""
raise RuntimeError("boom at import")
