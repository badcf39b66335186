"""The terminal of depthq's commands: logging set up once, third-party noise filtered.

A leaf module: it imports nothing of depthq, so the training loops (which also quiet Lightning's
warnings for Python callers) and the command line share it.
"""

from __future__ import annotations

import logging
import warnings

#: third-party warnings that say nothing to a depthq user (regexes matched at the message start)
QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",  # raised inside lightning 2.6's pytree helper
    r"Total length of `list` across ranks is zero",  # val_fraction: 0 means no validation, on purpose
)
#: Lightning's INFO lines that are advertisements, not information
QUIET_MESSAGES = ("Tip: ", "💡 Tip")


class QuietThirdParty(logging.Filter):
    """Drops Lightning's banners and tips below WARNING unless ``verbose``; keeps depthq's lines."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("depthq"):
            return True
        message = record.getMessage()
        if any(message.lstrip().startswith(tip) for tip in QUIET_MESSAGES):
            return False
        return self.verbose or record.levelno >= logging.WARNING


def quiet_terminal(verbose: bool) -> None:
    """Logging to stderr at INFO (DEBUG with ``verbose``), third-party noise filtered."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, QuietThirdParty)]:
            handler.removeFilter(old)
        handler.addFilter(QuietThirdParty(verbose))
    # Lightning installs its own handler when it is imported before logging is configured; its
    # records then propagate to the root handlers above instead
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
