"""Triton, when installed, picks its interpreter or its compiler once, when first imported.

Without a GPU the Triton tests run the kernel in the interpreter, so the choice must be made
before any test module imports triton (test_search.py does, before test_triton_search.py).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
