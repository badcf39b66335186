"""The repository holds the package: no source file of depthq/ or tests/ is git-ignored.

A bare ``runs/`` in .gitignore (meant for the run folders of ``depthq train``) once matched
``depthq/runs/`` and ``tests/runs/`` too, so a fresh clone lacked the package's run layer.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_no_source_file_is_ignored():
    if _git("rev-parse", "--show-toplevel").returncode != 0:
        pytest.skip("not a git checkout (an installed copy)")
    sources = [str(p.relative_to(ROOT)) for d in ("depthq", "tests") for p in (ROOT / d).rglob("*.py")]
    ignored = _git("check-ignore", "--no-index", *sources).stdout.split()
    assert not ignored, f"git ignores these source files (fix .gitignore): {ignored}"
