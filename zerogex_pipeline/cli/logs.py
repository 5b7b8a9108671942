"""The pipeline's own log lines on stderr, at ``LOG_LEVEL`` (``--debug``: DEBUG)."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from zerogex_pipeline.settings import log_level_setting, read_environment

_HANDLER_NAME = "zerogex-cli"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record to ``sys.stderr`` as it is at that moment (tests and redirections replace it)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(debug: bool = False) -> str:
    """Send ``zerogex_pipeline.*`` log records at or above the level to stderr; returns the level's name.

    Raises:
        SettingsError: ``LOG_LEVEL`` is not DEBUG, INFO, WARNING, ERROR or CRITICAL.
    """
    level = "DEBUG" if debug else log_level_setting(read_environment())
    logger = logging.getLogger("zerogex_pipeline")
    logger.setLevel(level)
    if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        handler = _StderrHandler()
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    return level
