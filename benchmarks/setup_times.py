"""Time the README's set-up commands, `make test` and `make demo`, from a fresh clone.

    python benchmarks/setup_times.py [--commands test demo] [--out PATH]

Clones this checkout's HEAD into a temporary folder (so nothing built here helps), runs each
`make` target there, and writes a results file with each command's wall time and exit status
(default ``benchmarks/results/setup-times.json``; the published one is
``docs/results/setup-times.json``, which fills the README's slot through `make results-docs`).
Each command creates its own `.venv/` in the clone; set PIP_FIND_LINKS or a pip config if the
machine installs torch from a local wheel folder. Run it on an otherwise idle machine: the
timings are the machine's, and other jobs on the same cores lengthen them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_tables, write_results  # noqa: E402
from depthq.results import Table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: what each command is, for the table
WHAT = {
    "test": "the test suite, from a fresh clone (its .venv/ included)",
    "demo": "the demo, from a fresh clone (its .venv/ and data included)",
}


def load() -> str:
    """The 1-minute load average, to record how busy the machine was."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", nargs="+", default=["test", "demo"], choices=sorted(WHAT))
    parser.add_argument("--out", default="benchmarks/results/setup-times.json")
    args = parser.parse_args(argv)
    rows, data = [], {}
    with tempfile.TemporaryDirectory(prefix="depthq-clone-") as tmp:
        clone = Path(tmp) / "depthq"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        for command in args.commands:
            before = load()
            start = time.perf_counter()
            status = subprocess.run(["make", command], cwd=clone).returncode
            seconds = time.perf_counter() - start
            print(f"make {command}: {seconds / 60:.1f} min, exit status {status}", flush=True)
            rows.append(
                (
                    f"make {command}",
                    WHAT[command],
                    f"{seconds / 60:.1f} min",
                    "passed" if status == 0 else f"failed ({status})",
                    f"{before} / {load()}",
                )
            )
            data[command] = {"seconds": seconds, "status": status, "load_before": before, "load_after": load()}
    table = Table(
        "The set-up commands, timed from a fresh clone",
        ("command", "what", "wall time", "result", "load average before / after"),
        tuple(rows),
        notes=("The load average says how busy the machine's cores were (other jobs lengthen every timing).",),
    )
    print_tables([table])
    path = write_results(
        args.out,
        title="The set-up commands",
        tables=[table],
        data=data,
        summary="`make test` and `make demo` run in a fresh clone of the commit below, each creating its own `.venv/`.",
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
