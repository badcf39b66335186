"""Measured results as data: a typed results file with its provenance and its tables.

Every table of measured figures in the README and the documentation is generated from a results
file (``docs/results/*.json``). A results file says what was measured (its tables, each with a
caption, headers, rows of cells as text and notes), where and when (the machine, the date, the
commit) and by which exact command, and keeps the raw figures in free ``data``::

    from depthq.results import ResultsFile, Table, provenance, read, write

    table = Table("PNG on the test split", ("split", "bits/dim"), (("photos", "4.78"),))
    results = ResultsFile("anchors", "Codec anchors", provenance(), (table,), data={"photos": 4.781})
    write("docs/results/anchors.json", results)
    assert read("docs/results/anchors.json") == results

A leaf module: it imports nothing of depthq but :mod:`depthq.atomic` and :mod:`depthq.errors`,
and torch only to name its version.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from depthq.atomic import write_json
from depthq.errors import MissingFileError, SchemaError

#: version of the JSON layout written by :func:`write`; :func:`read` refuses any other
SCHEMA_VERSION = 1
#: the ``kind`` field that marks a JSON file as a depthq results file
KIND = "depthq-results"


def _require(tree: Any, key: str, types: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(tree, dict) or key not in tree:
        raise SchemaError(f"{where}: missing field {key!r}")
    value = tree[key]
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _as_tuple(types):
        raise SchemaError(f"{where}: field {key!r} must be {_type_names(types)}, got {type(value).__name__}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _type_names(types: type | tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in _as_tuple(types))


def _check_fields(tree: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(tree) - known)
    if unknown:
        raise SchemaError(f"{where}: unknown field(s) {', '.join(unknown)} (a newer schema?)")


@dataclass(frozen=True)
class Machine:
    """The machine a result was measured on."""

    cpu: str
    """CPU model name (``/proc/cpuinfo``'s ``model name`` where there is one)."""
    cores: int | None
    """Logical CPU cores of the machine (``os.cpu_count()``)."""
    torch: str | None
    """torch version (None where torch is not installed)."""
    python: str
    """Python version."""
    threads: int | None = None
    """torch's intra-op threads during the measurement."""
    gpu: str | None = None
    """The GPU's name when the result was measured on one."""
    software: dict[str, str] = field(default_factory=dict)
    """Other versions that matter to the figures (CUDA, Triton, Pillow, ...)."""

    def __post_init__(self) -> None:
        if not isinstance(self.cpu, str) or not self.cpu:
            raise ValueError(f"Machine.cpu must be a non-empty string, got {self.cpu!r}")
        if self.cores is not None and (isinstance(self.cores, bool) or not isinstance(self.cores, int)):
            raise ValueError(f"Machine.cores must be an int or None, got {self.cores!r}")
        object.__setattr__(self, "software", {str(k): str(v) for k, v in self.software.items()})

    def describe(self) -> str:
        """One line: ``AMD EPYC 7B13, 2 cores (2 torch threads), torch 2.13.0, Python 3.11.2``."""
        where = self.cpu
        if self.cores is not None:
            where += f", {self.cores} cores"
        if self.threads is not None:
            where += f" ({self.threads} torch thread{'s' if self.threads != 1 else ''})"
        if self.gpu:
            where = f"{self.gpu} on {where}"
        versions = [f"torch {self.torch}" if self.torch else "no torch", f"Python {self.python}"]
        versions += [f"{k} {v}" for k, v in sorted(self.software.items())]
        return ", ".join([where, *versions])

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu": self.cpu,
            "cores": self.cores,
            "threads": self.threads,
            "torch": self.torch,
            "python": self.python,
            "gpu": self.gpu,
            "software": dict(self.software),
        }

    @classmethod
    def from_dict(cls, tree: Any, where: str = "machine") -> Machine:
        _check_fields(tree if isinstance(tree, dict) else {}, {f for f in cls.__dataclass_fields__}, where)
        return cls(
            cpu=_require(tree, "cpu", str, where),
            cores=_require(tree, "cores", (int, type(None)), where),
            torch=_require(tree, "torch", (str, type(None)), where),
            python=_require(tree, "python", str, where),
            threads=_require(tree, "threads", (int, type(None)), where),
            gpu=_require(tree, "gpu", (str, type(None)), where),
            software=_require(tree, "software", dict, where),
        )


@dataclass(frozen=True)
class Provenance:
    """Where, when, from which commit and by which command a result was measured."""

    machine: Machine
    date: str
    """ISO 8601 date and time (UTC) the measurement finished."""
    commit: str | None
    """``git rev-parse HEAD`` of the checkout that measured it; None outside a git checkout."""
    command: str
    """The exact command line that produced the result, as it would be typed in the checkout."""
    dirty: bool | None = None
    """Whether tracked files differed from ``commit`` (None: not known)."""

    def __post_init__(self) -> None:
        try:
            datetime.datetime.fromisoformat(self.date)
        except (TypeError, ValueError):
            raise ValueError(f"Provenance.date must be an ISO 8601 date, got {self.date!r}") from None
        if not isinstance(self.command, str) or not self.command.strip():
            raise ValueError(f"Provenance.command must be the command line that ran, got {self.command!r}")

    def describe(self) -> str:
        """One line for a page: machine, date, commit and command."""
        commit = "no git checkout" if self.commit is None else f"commit {self.commit[:10]}"
        if self.dirty:
            commit += " with local changes"
        return f"Measured on {self.machine.describe()}; {self.date[:10]}; {commit}; command: `{self.command}`"

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine.to_dict(),
            "date": self.date,
            "commit": self.commit,
            "dirty": self.dirty,
            "command": self.command,
        }

    @classmethod
    def from_dict(cls, tree: Any, where: str = "provenance") -> Provenance:
        _check_fields(tree if isinstance(tree, dict) else {}, {"machine", "date", "commit", "dirty", "command"}, where)
        try:
            return cls(
                machine=Machine.from_dict(_require(tree, "machine", dict, where), f"{where}.machine"),
                date=_require(tree, "date", str, where),
                commit=_require(tree, "commit", (str, type(None)), where),
                command=_require(tree, "command", str, where),
                dirty=_require(tree, "dirty", (bool, type(None)), where),
            )
        except ValueError as err:
            if isinstance(err, SchemaError):
                raise
            raise SchemaError(f"{where}: {err}") from err


@dataclass(frozen=True)
class Table:
    """One table of measured figures, every cell already formatted as text.

    Args:
        caption: what the table shows, one sentence.
        headers: column titles.
        rows: one tuple of cells per row, one cell per column.
        notes: sentences printed under the table (footnotes, how to read it).
    """

    caption: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", tuple(self.headers))
        object.__setattr__(self, "rows", tuple(tuple(r) for r in self.rows))
        object.__setattr__(self, "notes", tuple(self.notes))
        if not self.caption:
            raise ValueError("a Table needs a caption")
        if not self.headers:
            raise ValueError(f"table {self.caption!r} has no columns")
        for cells in (self.headers, *self.rows, self.notes):
            for cell in cells:
                if not isinstance(cell, str):
                    raise TypeError(f"table {self.caption!r}: cells are text, got {type(cell).__name__} {cell!r}")
        for row in self.rows:
            if len(row) != len(self.headers):
                raise ValueError(
                    f"table {self.caption!r}: a row has {len(row)} cells for {len(self.headers)} columns: {row}"
                )

    def column(self, header: str) -> int:
        """Index of the column titled ``header`` (KeyError naming the columns there are)."""
        try:
            return self.headers.index(header)
        except ValueError:
            raise KeyError(f"table {self.caption!r} has no column {header!r}; columns: {list(self.headers)}") from None

    def cell(self, row: str, column: str) -> str:
        """The cell of the row whose first cell is ``row``, in the column titled ``column``."""
        j = self.column(column)
        for cells in self.rows:
            if cells[0] == row:
                return cells[j]
        raise KeyError(f"table {self.caption!r} has no row {row!r}; rows: {[r[0] for r in self.rows]}")

    def to_markdown(self) -> str:
        """A Markdown table (cells' ``|`` escaped), with the notes as a paragraph under it."""

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

        lines = [line(self.headers), "|" + "|".join("---" for _ in self.headers) + "|", *map(line, self.rows)]
        for note in self.notes:  # each note a paragraph of its own
            lines += ["", note]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "caption": self.caption,
            "headers": list(self.headers),
            "rows": [list(r) for r in self.rows],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, tree: Any, where: str = "table") -> Table:
        _check_fields(tree if isinstance(tree, dict) else {}, {"caption", "headers", "rows", "notes"}, where)
        try:
            return cls(
                caption=_require(tree, "caption", str, where),
                headers=tuple(_require(tree, "headers", list, where)),
                rows=tuple(tuple(_check_list(r, f"{where}.rows")) for r in _require(tree, "rows", list, where)),
                notes=tuple(_require(tree, "notes", list, where)),
            )
        except (TypeError, ValueError) as err:
            if isinstance(err, SchemaError):
                raise
            raise SchemaError(f"{where}: {err}") from err


def _check_list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise SchemaError(f"{where}: a row must be a list of cells, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class ResultsFile:
    """A committed results file: what was measured, its provenance, its tables and raw data.

    Args:
        name: the file's stem (``docs/results/<name>.json``); letters, digits, ``-`` and ``_``.
        title: the heading of its page.
        provenance: machine, date, commit and command (:func:`provenance`).
        tables: the tables of formatted figures a page shows.
        summary: a paragraph saying what was measured and how (Markdown), shown above the tables.
        data: the raw figures, free JSON (kept so that a table can be re-derived or re-formatted).
    """

    name: str
    title: str
    provenance: Provenance
    tables: tuple[Table, ...]
    summary: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", tuple(self.tables))
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ValueError(f"a results file's name is letters, digits, '-' and '_', got {self.name!r}")
        if not self.title:
            raise ValueError(f"results file {self.name!r} needs a title")
        for table in self.tables:
            if not isinstance(table, Table):
                raise TypeError(f"results file {self.name!r}: tables are Table objects, got {type(table).__name__}")
        captions = [t.caption for t in self.tables]
        if len(set(captions)) != len(captions):
            raise ValueError(f"results file {self.name!r}: two tables share a caption: {captions}")
        try:
            json.dumps(self.data, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"results file {self.name!r}: data must be plain JSON ({err})") from None

    def table(self, caption: str) -> Table:
        """The table with this caption (KeyError naming the captions there are)."""
        for t in self.tables:
            if t.caption == caption:
                return t
        raise KeyError(
            f"results file {self.name!r} has no table {caption!r}; tables: {[t.caption for t in self.tables]}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "schema": SCHEMA_VERSION,
            "name": self.name,
            "title": self.title,
            "provenance": self.provenance.to_dict(),
            "summary": self.summary,
            "tables": [t.to_dict() for t in self.tables],
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, tree: Any, where: str = "results file") -> ResultsFile:
        if not isinstance(tree, dict) or tree.get("kind") != KIND:
            raise SchemaError(f'{where}: not a depthq results file (no "kind": "{KIND}")')
        schema = tree.get("schema")
        if schema != SCHEMA_VERSION:
            raise SchemaError(
                f"{where}: schema {schema!r}, this depthq reads schema {SCHEMA_VERSION} "
                "(re-run the command in its provenance, or update depthq)"
            )
        _check_fields(tree, {"kind", "schema", "name", "title", "provenance", "summary", "tables", "data"}, where)
        try:
            return cls(
                name=_require(tree, "name", str, where),
                title=_require(tree, "title", str, where),
                provenance=Provenance.from_dict(_require(tree, "provenance", dict, where), f"{where}: provenance"),
                tables=tuple(
                    Table.from_dict(t, f"{where}: tables[{i}]")
                    for i, t in enumerate(_require(tree, "tables", list, where))
                ),
                summary=_require(tree, "summary", str, where),
                data=_require(tree, "data", dict, where),
            )
        except (TypeError, ValueError) as err:
            if isinstance(err, SchemaError):
                raise
            raise SchemaError(f"{where}: {err}") from err


def write(path: str | os.PathLike, results: ResultsFile) -> Path:
    """Write ``results`` as JSON (atomically). The file's stem must be the results' name."""
    path = Path(path)
    if path.suffix != ".json" or path.stem != results.name:
        raise ValueError(f"results {results.name!r} belong in a file named {results.name}.json, not {path.name}")
    return write_json(path, results.to_dict())


def read(path: str | os.PathLike) -> ResultsFile:
    """Read a results file; :class:`~depthq.errors.SchemaError` for another schema or a bad field."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"results file {path} not found")
    try:
        tree = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SchemaError(f"{path}: not valid JSON ({err})") from None
    results = ResultsFile.from_dict(tree, str(path))
    if results.name != path.stem:
        raise SchemaError(f"{path}: holds the results named {results.name!r}; rename one of them")
    return results


def cpu_model() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine(device: str | None = None, software: dict[str, str] | None = None) -> Machine:
    """This machine; with ``device="cuda"`` (or ``"cuda:1"``) also the GPU's name and CUDA version."""
    extra = dict(software or {})
    gpu = torch_version = threads = None
    try:  # results files are read and written without torch (tools/gendocs.py); torch only describes it
        import torch
    except ImportError:
        pass
    else:
        torch_version, threads = torch.__version__, torch.get_num_threads()
        if device is not None and str(device).startswith("cuda"):
            gpu = torch.cuda.get_device_name(torch.device(device))
            extra.setdefault("CUDA", str(torch.version.cuda))
    return Machine(
        cpu=cpu_model(),
        cores=os.cpu_count(),
        torch=torch_version,
        python=platform.python_version(),
        threads=threads,
        gpu=gpu,
        software=extra,
    )


def git_commit(root: str | os.PathLike | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout at ``root`` (default: the one holding depthq), or
    (None, None) when it is not one (an installed package, no git)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        if Path(top).resolve() != root.resolve():
            return None, None  # depthq is installed inside some other repository
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit, bool(status.strip())


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as it would be typed: ``python benchmarks/x.py --a 1`` or ``depthq demo``."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return "python"
    program = argv[0]
    if program.endswith(".py"):
        try:
            program = str(Path(program).resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            pass
        head = ["python", program]
    elif program == "-c":
        head = ["python", "-c"]
    else:
        head = [Path(program).name]
    return shlex.join([*head, *argv[1:]])


def provenance(
    command: str | Sequence[str] | None = None,
    *,
    device: str | None = None,
    software: dict[str, str] | None = None,
    root: str | os.PathLike | None = None,
) -> Provenance:
    """Provenance of a measurement that has just finished, on this machine.

    Args:
        command: the command that ran (a string, or an argv list); default: this process's.
        device: ``"cuda"`` when the figures were measured on a GPU (its name is recorded).
        software: other versions to record, e.g. ``{"Pillow": PIL.__version__}``.
        root: the git checkout to read the commit of (default: the one holding depthq).
    """
    commit, dirty = git_commit(root)
    text = command if isinstance(command, str) else command_line(command)
    return Provenance(
        machine=machine(device, software),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        commit=commit,
        command=text,
        dirty=dirty,
    )
