"""Fixtures for every test: an isolated cache and no user data root."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory):
    """One fresh cache for the session (the photo patches are cut once) and no user data root.

    Subprocesses started by tests inherit the variables, so they share the cache.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEPTHQ_CACHE", str(tmp_path_factory.mktemp("depthq-cache")))
        mp.delenv("DEPTHQ_DATA", raising=False)
        yield
