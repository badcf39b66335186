"""The generated pages match what the code and the results files give now, and the README
stays a front page."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _gendocs():
    spec = importlib.util.spec_from_file_location("gendocs", ROOT / "tools" / "gendocs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gendocs"] = module
    spec.loader.exec_module(module)
    return module


gendocs = _gendocs()


def test_every_generated_page_is_current():
    stale = gendocs.stale_files("all")
    assert not stale, f"stale generated pages (run `make reference-docs results-docs`): {stale}"


def test_the_cli_page_has_every_command_and_flag():
    from depthq.cli import build_parser

    page = (ROOT / "docs" / "reference" / "cli.md").read_text()

    def walk(parser: argparse.ArgumentParser, path: list[str]):
        assert f"`{' '.join(path)}`" in page, f"{' '.join(path)} is missing from cli.md"
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert flag in page, f"{' '.join(path)} {flag} is missing from cli.md"
        for name, _, child in gendocs._subparsers(parser):
            walk(child, [*path, name])

    walk(build_parser(), ["depthq"])


def test_the_config_page_has_every_key():
    from depthq.config import DataConfig, TrainConfig
    from depthq.models import ModelConfig
    from depthq.prior.config import PriorConfig, PriorTrainConfig

    page = (ROOT / "docs" / "reference" / "config.md").read_text()
    for cls in (ModelConfig, DataConfig, TrainConfig, PriorConfig, PriorTrainConfig):
        for field in dataclasses.fields(cls):
            assert f"| `{field.name}` |" in page, f"{cls.__name__}.{field.name} is missing from config.md"


@dataclasses.dataclass
class Undocumented:
    """A config section with a key nobody explained."""

    documented: int = 1
    """This one says what it is."""
    silent: int = 2


def test_a_config_key_without_a_docstring_is_refused():
    with pytest.raises(ValueError, match="Undocumented.silent has no attribute docstring"):
        list(gendocs._config_sections(Undocumented, "section"))
    assert gendocs.attribute_docstrings(Undocumented) == {"documented": "This one says what it is."}


def test_a_changed_results_file_changes_its_page_and_the_readme():
    found = gendocs.results_files()
    anchors = found["anchors"]
    table = anchors.tables[0]
    changed_rows = tuple((r[0], "9.99", *r[2:]) for r in table.rows)
    changed = dataclasses.replace(anchors, tables=(dataclasses.replace(table, rows=changed_rows), *anchors.tables[1:]))
    page = gendocs.results_page(changed)
    assert page != (ROOT / "docs" / "results" / "anchors.md").read_text()
    assert "| 9.99 |" in page
    readme = (ROOT / "README.md").read_text()
    assert gendocs.fill_blocks(readme, gendocs.README, {**found, "anchors": changed}) != readme


def test_a_renamed_row_fails_the_generation():
    found = gendocs.results_files()
    anchors = found["anchors"]
    table = anchors.tables[0]
    renamed = dataclasses.replace(table, rows=tuple((f"renamed {r[0]}", *r[1:]) for r in table.rows))
    broken = {**found, "anchors": dataclasses.replace(anchors, tables=(renamed, *anchors.tables[1:]))}
    with pytest.raises(KeyError, match="has no row"):
        gendocs.glance_block(broken, gendocs.README)


def test_the_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    glance = re.search(r"<!-- generated: glance -->\n(.*?)<!-- /generated -->", text, re.S)
    assert glance, "the README has no results-at-a-glance block"
    rows = [line for line in glance.group(1).splitlines() if line.startswith("| ") and "---" not in line]
    assert 1 <= len(rows) - 1 <= 6, "the glance table has a header and one to six rows"
    assert "reference implementation" not in text.lower()
    assert "Itti" not in text
    assert "Fostiropoulos, Iordanis and Boehm, Barry" in text and "396--405" in text
    assert "K^M" in text and "M·K" in text
    for target in re.findall(r"\]\(((?:docs/)?[^)#:]+\.md)", text):
        assert (ROOT / target).is_file(), f"the README links to {target}, which does not exist"


def test_every_docs_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").rglob("*.md"):
        assert str(page.relative_to(ROOT / "docs")) in nav, f"{page} is not in mkdocs.yml's nav"


def test_results_files_are_not_ignored_by_git():
    """A results file git ignores would be missing from every clone (and its pages with it)."""
    import subprocess

    files = [str(p.relative_to(ROOT)) for p in (ROOT / "docs" / "results").iterdir()]
    try:
        ignored = subprocess.run(["git", "check-ignore", *files], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        pytest.skip("no git")
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert not ignored.stdout.strip(), f"git ignores {ignored.stdout.split()}"
