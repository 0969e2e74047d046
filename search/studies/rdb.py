"""Optuna's RDBStorage without its password in a pickle.

Tune pickles its callbacks, and some hold a study, so the storage's URL is written into Tune's
state in the run folder. Pickled, this storage keeps the URL masked; unpickled, the secret comes
back from this process or the environment (search/urls.py)."""
from __future__ import annotations

from optuna.storages import RDBStorage

from search import urls


class SecretFreeStorage(RDBStorage):
    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "url": urls.mask_url(self.url)}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__({**state, "url": urls.reveal(state["url"])})
