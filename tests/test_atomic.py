import os
import subprocess
import sys

import pytest

from depthq import atomic
from depthq.atomic import atomic_write, write_json


def test_atomic_writes_keep_usual_permissions_and_leave_no_temp_files(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "a.json", {"x": 1})
        assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~atomic._UMASK)
        with pytest.raises(RuntimeError, match="boom"):
            atomic_write(tmp_path / "b.json", lambda tmp: (_ for _ in ()).throw(RuntimeError("boom")))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # no partial or temp file
    finally:
        os.umask(old)


def test_atomic_is_a_leaf_module():
    # writing a file must not pull in the models (or torch)
    code = "import sys, depthq.atomic; print(sorted(m for m in sys.modules if m.startswith(('depthq', 'torch'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['depthq', 'depthq.atomic', 'depthq.version']"
