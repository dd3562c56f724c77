"""The one logger of user-facing lines: ``dsr: <message>`` on stderr.

Every module logs through ``logging.getLogger("dsr")``; :func:`user_log` gives that logger with its stderr
handler attached once (whatever ``sys.stderr`` is at the time, so redirected or captured streams get the
lines), at INFO level. Failures of single runs are warnings, progress is info.
"""
from __future__ import annotations

import logging
import sys


class _StderrHandler(logging.Handler):
    """Write ``dsr: <message>`` to the current ``sys.stderr``."""

    def emit(self, record):
        print(f"dsr: {record.getMessage()}", file=sys.stderr)


def user_log() -> logging.Logger:
    """The ``dsr`` logger, printing to stderr (handler attached on first use)."""
    logger = logging.getLogger("dsr")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
        logger.setLevel(logging.INFO)
    return logger
