"""depthq.results: typed results files, their provenance, and what read() refuses."""

import ast
import json
from pathlib import Path

import pytest

import depthq.results as results_module
from depthq.errors import MissingFileError, SchemaError
from depthq.results import (
    SCHEMA_VERSION,
    Machine,
    Provenance,
    ResultsFile,
    Table,
    command_line,
    provenance,
    read,
    write,
)


def example() -> ResultsFile:
    machine = Machine(cpu="Test CPU", cores=2, torch="2.13.0", python="3.11.2", threads=2, software={"Pillow": "11"})
    prov = Provenance(machine, "2026-12-07T10:00:00+00:00", "0123456789abcdef", "python benchmarks/x.py --a 1")
    table = Table("A caption", ("name", "value"), (("a", "1.5"), ("b", "2 | 3")), notes=("* a note",))
    return ResultsFile("example", "An example", prov, (table,), summary="What it is.", data={"a": 1.5})


def test_write_then_read_round_trips(tmp_path: Path):
    results = example()
    path = write(tmp_path / "example.json", results)
    assert read(path) == results
    tree = json.loads(path.read_text())
    assert tree["kind"] == "depthq-results" and tree["schema"] == SCHEMA_VERSION
    assert tree["provenance"]["machine"]["cpu"] == "Test CPU"


def test_write_wants_the_file_named_after_the_results(tmp_path: Path):
    with pytest.raises(ValueError, match="example.json"):
        write(tmp_path / "other.json", example())


def test_read_refuses_other_schemas_and_bad_fields(tmp_path: Path):
    tree = example().to_dict()
    path = tmp_path / "example.json"

    def attempt(changed: dict, match: str) -> None:
        path.write_text(json.dumps(changed))
        with pytest.raises(SchemaError, match=match):
            read(path)

    attempt({**tree, "schema": SCHEMA_VERSION + 1}, "schema")
    attempt({**tree, "kind": "something-else"}, "not a depthq results file")
    attempt({k: v for k, v in tree.items() if k != "tables"}, "missing field 'tables'")
    attempt({**tree, "extra": 1}, "unknown field")
    bad_table = {**tree["tables"][0], "rows": [["only one cell"]]}
    attempt({**tree, "tables": [bad_table]}, "1 cells for 2 columns")
    attempt({**tree, "tables": [{**tree["tables"][0], "rows": [["a", 1.5]]}]}, "cells are text")
    prov = {**tree["provenance"], "date": "yesterday"}
    attempt({**tree, "provenance": prov}, "ISO 8601")
    attempt({**tree, "name": "renamed"}, "holds the results named 'renamed'")
    path.write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        read(path)
    with pytest.raises(MissingFileError):
        read(tmp_path / "absent.json")


def test_tables_check_their_cells_and_find_them():
    table = example().tables[0]
    assert table.cell("a", "value") == "1.5"
    with pytest.raises(KeyError, match="no row 'z'"):
        table.cell("z", "value")
    with pytest.raises(KeyError, match="no column 'nope'"):
        table.cell("a", "nope")
    with pytest.raises(TypeError, match="cells are text"):
        Table("c", ("x",), ((1.0,),))
    with pytest.raises(ValueError, match="2 cells for 1 columns"):
        Table("c", ("x",), (("1", "2"),))


def test_markdown_escapes_pipes_and_keeps_notes():
    text = example().tables[0].to_markdown()
    assert text.splitlines()[:4] == ["| name | value |", "|---|---|", "| a | 1.5 |", "| b | 2 \\| 3 |"]
    assert text.endswith("\n\n* a note")


def test_results_files_refuse_bad_names_duplicate_captions_and_non_json_data():
    good = example()
    with pytest.raises(ValueError, match="name"):
        ResultsFile("a b", "t", good.provenance, ())
    with pytest.raises(ValueError, match="share a caption"):
        ResultsFile("x", "t", good.provenance, (good.tables[0], good.tables[0]))
    with pytest.raises(ValueError, match="plain JSON"):
        ResultsFile("x", "t", good.provenance, (), data={"nan": float("nan")})
    assert good.table("A caption") is good.tables[0]
    with pytest.raises(KeyError, match="no table"):
        good.table("missing")


def test_provenance_of_this_checkout_names_the_machine_and_the_commit():
    prov = provenance("python -c pass")
    assert prov.command == "python -c pass"
    assert prov.machine.cores and prov.machine.torch and prov.machine.python
    # the tests run from a git checkout of depthq: a 40-hex commit
    if prov.commit is not None:
        assert len(prov.commit) == 40 and int(prov.commit, 16) >= 0
    line = prov.describe()
    assert prov.machine.cpu in line and "`python -c pass`" in line


def test_provenance_outside_a_git_checkout_has_no_commit(tmp_path: Path):
    prov = provenance("x", root=tmp_path)
    assert prov.commit is None and prov.dirty is None
    assert "no git checkout" in prov.describe()


def test_command_line_is_what_one_would_type(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "bench" / "x.py"
    assert command_line([str(script), "--out", "a b.json"]) == "python bench/x.py --out 'a b.json'"
    assert command_line(["/usr/local/bin/depthq", "demo", "--quick"]) == "depthq demo --quick"


def test_the_module_is_a_leaf():
    """It imports nothing of depthq but depthq.atomic and depthq.errors."""
    tree = ast.parse(Path(results_module.__file__).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert {m for m in imported if m and m.startswith("depthq")} == {"depthq.atomic", "depthq.errors"}
