"""Sections other modules add to an evaluation (codec anchors, measured file sizes).

A section is any object with ``to_dict``, ``table_rows`` and ``report_markdown``
(``ResultSection``). The layer that composes sections into results (``depthq.runs``) registers
their readers with ``register_section``, so that ``EvalResult.from_dict`` can read them back; the
metrics layer itself knows no section's module.
"""

from __future__ import annotations

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
_SECTION_READERS: dict[str, Callable[[Mapping], ResultSection]] = {}


def register_section(kind: str, reader: Callable[[Mapping], ResultSection]) -> None:
    """Make ``EvalResult.from_dict`` read the ``kind`` section (anchors or codec) with ``reader``."""
    if kind not in SECTIONS:
        raise ValueError(f"expected a section in {SECTIONS}, got {kind!r}")
    _SECTION_READERS[kind] = reader


def read_section(kind: str, values: Mapping | None) -> ResultSection | None:
    """The ``kind`` section of a saved result (None stays None), read by its registered reader."""
    if values is None:
        return None
    if kind not in _SECTION_READERS:
        raise SchemaError(
            f"the result has a {kind!r} section but no reader for it is registered (read results with "
            "depthq.runs.read_eval, or import depthq.runs first)"
        )
    return _SECTION_READERS[kind](values)
