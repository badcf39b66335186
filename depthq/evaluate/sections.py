"""Sections other modules add to an evaluation (codec anchors, measured file sizes).

A section is any object with ``to_dict``, ``table_rows`` and ``report_markdown``
(``ResultSection``); its module registers a reader with ``register_section`` so that
``EvalResult.from_dict`` can read it back. The reader's module is imported on first read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from depthq.errors import SchemaError


@runtime_checkable
class ResultSection(Protocol):
    """Figures another module adds to a result (codec anchors, measured file sizes).

    A section prints itself: ``table_rows`` gives (label, value) rows for the comparison table,
    ``report_markdown`` a section of report.md. Register its reader with ``register_section``.
    """

    def to_dict(self) -> dict: ...

    def table_rows(self) -> list[tuple[str, str]]: ...

    def report_markdown(self) -> str: ...


SECTIONS = ("anchors", "codec")
#: where the reader of each section lives (imported on first read, where it registers itself)
SECTION_MODULES = {"anchors": "depthq.evaluate.anchor_section", "codec": "depthq.codec.section"}
_SECTION_READERS: dict[str, Callable[[Mapping], ResultSection]] = {}


def register_section(kind: str, reader: Callable[[Mapping], ResultSection]) -> None:
    """Make ``EvalResult.from_dict`` read the ``kind`` section (anchors or codec) with ``reader``."""
    if kind not in SECTIONS:
        raise ValueError(f"expected a section in {SECTIONS}, got {kind!r}")
    _SECTION_READERS[kind] = reader


def read_section(kind: str, values: Mapping | None) -> ResultSection | None:
    if values is None:
        return None
    if kind not in _SECTION_READERS:
        try:
            importlib.import_module(SECTION_MODULES[kind])
        except ImportError:
            pass
    if kind not in _SECTION_READERS:
        raise SchemaError(
            f"the result has a {kind!r} section but no reader for it is installed "
            f"({SECTION_MODULES[kind]} did not register one)"
        )
    return _SECTION_READERS[kind](values)
