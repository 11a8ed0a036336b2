"""Logging setup for the command line.

scloop's modules log through the ``"scloop"`` logger and its children (``"scloop.runner"``,
``"scloop.sweep"`` ...) and never install handlers themselves: a program that imports scloop
decides where its messages go (``logging.basicConfig(level=logging.INFO)`` shows them).

The ``scloop`` command calls :func:`setup_logging` once per invocation: one handler on the
``"scloop"`` logger that writes to standard error, so that standard output carries results
only (tables, CSV, JSON) and ``scloop ... 2>/dev/null`` leaves exactly those::

    level      option            shows
    WARNING    -q / --quiet      warnings and errors
    INFO       (default)         + what was run and written ("run X: ...", "wrote FILE")
    DEBUG      -v / --verbose    + details, with time stamps and logger names
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LOGGER_NAME", "QUIET", "NORMAL", "VERBOSE", "get_logger", "reset_logging", "setup_logging"]

LOGGER_NAME = "scloop"
QUIET, NORMAL, VERBOSE = logging.WARNING, logging.INFO, logging.DEBUG


def get_logger(name: str = "") -> logging.Logger:
    """The ``"scloop"`` logger, or its child ``"scloop.<name>"``."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


class _Formatter(logging.Formatter):
    """INFO lines as they are; other levels prefixed (``warning: ...``); with DEBUG enabled,
    every line carries the time and the logger name."""

    def __init__(self, detailed: bool) -> None:
        super().__init__()
        self.detailed = detailed

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info and self.detailed:
            msg = f"{msg}\n{self.formatException(record.exc_info)}"
        if self.detailed:
            return f"{self.formatTime(record, '%H:%M:%S')} {record.name} {record.levelname.lower()}: {msg}"
        if record.levelno == logging.INFO:
            return msg
        return f"{record.levelname.lower()}: {msg}"


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record arrives (a redirected or captured
    stream included); a closed stream is ignored rather than reported."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            if stream is None:
                return
            stream.write(self.format(record) + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError):  # reader gone / stream closed: nothing to tell
            pass
        except Exception:
            self.handleError(record)


_STATE: dict[str, object] = {}


def setup_logging(level: int = NORMAL) -> logging.Logger:
    """Send the ``"scloop"`` logger's records at ``level`` and above to standard error.

    Idempotent: calling it again replaces the handler it installed and sets the new level.
    Records are not passed on to the root logger while it is installed, so an application's
    own root handler does not print them a second time; :func:`reset_logging` undoes it."""
    logger = logging.getLogger(LOGGER_NAME)
    old = _STATE.get("handler")
    if old is not None:
        logger.removeHandler(old)  # type: ignore[arg-type]
    else:
        _STATE["saved"] = (logger.level, logger.propagate)
    handler = _StderrHandler(level=logging.NOTSET)
    handler.setFormatter(_Formatter(detailed=level <= logging.DEBUG))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    _STATE["handler"] = handler
    return logger


def reset_logging() -> None:
    """Remove the handler of :func:`setup_logging` and restore the logger's level and
    propagation (used after each in-process command invocation, e.g. in tests)."""
    logger = logging.getLogger(LOGGER_NAME)
    handler = _STATE.pop("handler", None)
    if handler is not None:
        logger.removeHandler(handler)  # type: ignore[arg-type]
    saved = _STATE.pop("saved", None)
    if saved is not None:
        logger.setLevel(saved[0])  # type: ignore[index]
        logger.propagate = saved[1]  # type: ignore[index]
