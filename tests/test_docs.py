"""Every code example in the README and the documentation runs as written.

Each page's blocks run in order, in one namespace and a fresh working folder, so a tutorial can
build on its earlier steps:

- every ```` ```python ```` block runs;
- a ```` ```bash ```` block runs when ``<!-- docs-test: run -->`` stands right before it: each of
  its commands must be a ``depthq ...`` command (run in this process, exit status 0);
- ``<!-- docs-test: write PATH -->`` before a block writes the block's text to PATH instead;
- ``<!-- docs-test: skip REASON -->`` before a block skips it, for a reason the page's source shows
  (it needs data that is not here, a GPU, or hours);
- ``<!-- docs-test: setup ... -->`` is Python the reader does not see, run at that point (e.g. to
  make a folder of photos for a tutorial).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

MARKER = re.compile(r"<!-- docs-test: (?P<kind>run|write|skip|setup)(?P<arg>.*?)-->\s*$", re.S)
FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.S | re.M)
#: everything the page shows or hides: a fenced block, or a docs-test comment (greedy up to -->)
ITEM = re.compile(r"^<!-- docs-test:.*?-->|^[ ]*```[\w+-]*[^\n]*\n.*?^[ ]*```[ ]*$", re.S | re.M)


@dataclass
class Step:
    """One thing to do on a page: run Python, run depthq commands, or write a file."""

    kind: str  # "python", "bash", "write"
    code: str
    line: int
    path: str = ""


def page_steps(page: Path) -> list[Step]:
    """The steps of a page, in order; a marker that does not precede a block fails."""
    text = page.read_text()
    steps: list[Step] = []
    pending: re.Match | None = None
    for item in ITEM.finditer(text):
        line = text.count("\n", 0, item.start()) + 1
        marker = MARKER.fullmatch(item.group(0))
        if marker:
            if pending is not None:
                raise AssertionError(f"{page.name}:{line}: a docs-test marker follows another without a block")
            if marker["kind"] == "setup":
                steps.append(Step("python", marker["arg"].strip("\n"), line))
                continue
            if marker["kind"] == "skip" and not marker["arg"].strip():
                raise AssertionError(f"{page.name}:{line}: docs-test: skip needs a reason")
            pending = marker
            continue
        if item.group(0).lstrip().startswith("<!-- docs-test"):
            raise AssertionError(f"{page.name}:{line}: unknown docs-test marker {item.group(0)[:60]!r}")
        fence = FENCE.match(item.group(0))
        assert fence, f"{page.name}:{line}: cannot read this code block"
        lang, body = fence["lang"], _dedent(fence["body"], len(fence["indent"]))
        kind = pending["kind"] if pending else None
        arg = pending["arg"].strip() if pending else ""
        pending = None
        if kind == "skip":
            continue
        if kind == "write":
            steps.append(Step("write", body, line, arg))
        elif kind == "run":
            if lang not in ("bash", "console", "sh"):
                raise AssertionError(f"{page.name}:{line}: docs-test: run is for bash blocks, this one is {lang!r}")
            steps.append(Step("bash", body, line))
        elif lang == "python":
            steps.append(Step("python", body, line))
    if pending is not None:
        raise AssertionError(f"{page.name}: a docs-test marker at the end of the page precedes no block")
    return steps


def _dedent(body: str, indent: int) -> str:
    return "".join(line[indent:] if line[:indent].isspace() else line for line in body.splitlines(True))


def bash_commands(body: str) -> list[list[str]]:
    """The commands of a bash block (comments dropped, ``\\`` continuations joined)."""
    commands, current = [], ""
    for raw in body.splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            commands.append(shlex.split(current))
        current = ""
    return commands


def run_page(page: Path, workdir: Path) -> None:
    from depthq.cli import main

    namespace: dict = {"__name__": "docs"}
    for step in page_steps(page):
        where = f"{page.relative_to(ROOT) if page.is_relative_to(ROOT) else page}:{step.line}"
        if step.kind == "write":
            target = workdir / step.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(step.code)
        elif step.kind == "python":
            exec(compile(step.code, where, "exec"), namespace)
        else:
            for argv in bash_commands(step.code):
                if argv[0] != "depthq":
                    raise AssertionError(f"{where}: a docs-test: run block runs depthq commands only, got {argv}")
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    status = main([os.path.expanduser(a) for a in argv[1:]])
                assert status == 0, f"{where}: `{shlex.join(argv)}` exited with {status}:\n{out.getvalue()}"


def test_the_pages_have_examples():
    assert any(step.kind == "python" for step in page_steps(ROOT / "README.md")), "README.md has no Python example"
    assert sum(len(page_steps(p)) for p in PAGES) > 20


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if not page_steps(page):
        pytest.skip("no code to run")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    # DEPTHQ_CACHE is the session's fresh cache (conftest.py); the photos are cut once
    monkeypatch.setenv("DEPTHQ_REPO", str(ROOT))
    # one intra-op thread: on 2 cores shared with other jobs, two threads that spin-wait for
    # each other made a tutorial's training steps 20 times slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_page(page, tmp_path)
    finally:
        torch.set_num_threads(threads)


def test_markers_are_read_as_the_reader_sees_them(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n<!-- docs-test: skip needs a GPU -->\n```python\nraise SystemExit\n```\n\n"
        "<!-- docs-test: setup\ny = x + 1\n-->\n\n<!-- docs-test: write a/b.txt -->\n```text\nhello\n```\n\n"
        "<!-- docs-test: run -->\n```bash\ndepthq capacity -M 2 \\\n  -K 8   # a comment\n```\n"
    )
    steps = page_steps(page)
    assert [s.kind for s in steps] == ["python", "python", "write", "bash"]
    assert steps[1].code == "y = x + 1" and steps[2].path == "a/b.txt" and steps[2].code == "hello\n"
    assert bash_commands(steps[3].code) == [["depthq", "capacity", "-M", "2", "-K", "8"]]
    monkeypatch_dir = os.getcwd()
    try:
        os.chdir(tmp_path)
        run_page(page, tmp_path)
    finally:
        os.chdir(monkeypatch_dir)
    assert (tmp_path / "a" / "b.txt").read_text() == "hello\n"


def test_a_failing_example_fails(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("```python\nassert 1 == 2, 'the page is wrong'\n```\n")
    with pytest.raises(AssertionError, match="the page is wrong"):
        run_page(page, tmp_path)
    page.write_text("<!-- docs-test: skip -->\n```python\npass\n```\n")
    with pytest.raises(AssertionError, match="needs a reason"):
        page_steps(page)
    page.write_text("<!-- docs-test: run -->\n```bash\nls -l\n```\n")
    with pytest.raises(AssertionError, match="depthq commands only"):
        run_page(page, tmp_path)
