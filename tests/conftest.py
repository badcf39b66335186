"""Fixtures for every test: an isolated cache and no user data root; Triton's interpreter.

Triton, when installed, reads TRITON_INTERPRET once, when first imported, and more than the
Triton tests import it (vector-quantize-pytorch and torch.compile do). So without a GPU the
choice is made here, before any test module is collected: the Triton kernel's tests run in the
interpreter (tests/quantize/test_triton_search.py).
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory):
    """One fresh cache for the session (the photo patches are cut once) and no user data root.

    Subprocesses started by tests inherit the variables, so they share the cache.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEPTHQ_CACHE", str(tmp_path_factory.mktemp("depthq-cache")))
        mp.delenv("DEPTHQ_DATA", raising=False)
        yield
