"""The suite's order: modules with slow tests (real Ray, servers, training) first, each module's
tests together. `make test` runs two xdist workers that take whole modules (and tests/views/ as
one group) in this order, so the long modules start at once and the many quick ones fill the
end, instead of a long module starting last while the other worker idles."""
from __future__ import annotations

import pytest

# Modules sharing one session-scoped search (tests/views/conftest.py): on one worker it runs once.
SHARED_GROUPS = {"tests/views/": "views"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:  # xdist's --dist loadgroup keeps a group on one worker
        path = item.nodeid.split("::")[0]
        group = next((g for prefix, g in SHARED_GROUPS.items() if path.startswith(prefix)), path)
        item.add_marker(pytest.mark.xdist_group(group))
    slow_modules = {item.module.__name__ for item in items
                    if item.get_closest_marker("slow") is not None}
    # sort() is stable: within a group, collection order (and so each module's own order) stays
    items.sort(key=lambda item: item.module.__name__ not in slow_modules)
