"""The suite's order: modules with slow tests (real Ray, servers, training) first, each module's
tests together. `make test` runs two xdist workers that take whole modules in this order, so the
long modules start at once and the many quick ones fill the end, instead of a long module
starting last while the other worker idles."""
from __future__ import annotations


def pytest_collection_modifyitems(items) -> None:
    slow_modules = {item.module.__name__ for item in items
                    if item.get_closest_marker("slow") is not None}
    # sort() is stable: within a group, collection order (and so each module's own order) stays
    items.sort(key=lambda item: item.module.__name__ not in slow_modules)
