"""The one logger of user-facing lines: ``dsr: <message>`` on stderr, and the log file of a command.

Every module logs through ``logging.getLogger("dsr")``; :func:`user_log` gives that logger with its stderr
handler attached once (whatever ``sys.stderr`` is at the time, so redirected or captured streams get the
lines), at INFO level. Failures of single runs are warnings, progress is info, details are debug.

The command line (:mod:`dsr.cli`) calls :func:`configure` with its verbosity (``-v``: debug lines too,
``-vv``: also other libraries' log records and Python warnings, nilearn's included) and, once the output
folder is known to be writable, the pipeline calls :func:`open_log_file`: ``OUTPUT_DIR/logs/dsr_<UTC time>.log``
gets every line logged since :func:`configure` (kept in memory until then, so a command refused before it
writes anything leaves no file) and every line after it, with time and level. Worker processes follow
through the ``DSR_VERBOSITY`` / ``DSR_LOG_FILE`` environment variables.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path

VERBOSITY_ENV = "DSR_VERBOSITY"
LOG_FILE_ENV = "DSR_LOG_FILE"
LOG_DIR = "logs"
_FILE_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


class _StderrHandler(logging.Handler):
    """Write ``dsr: <message>`` to the current ``sys.stderr`` (above any progress bar drawn there)."""

    def emit(self, record):
        line = f"dsr: {record.getMessage()}" if record.name == "dsr" or record.name.startswith("dsr.") else \
            f"dsr: [{record.name}] {record.getMessage()}"
        tqdm = sys.modules.get("tqdm")
        if tqdm is not None and getattr(tqdm.tqdm, "_instances", None):
            tqdm.tqdm.write(line, file=sys.stderr)  # keeps the bars whole
        else:
            print(line, file=sys.stderr)


def verbosity() -> int:
    """The verbosity asked for (0 default, 1 ``-v``, 2 ``-vv``), also in worker processes."""
    try:
        return int(os.environ.get(VERBOSITY_ENV, "0"))
    except ValueError:
        return 0


def user_log() -> logging.Logger:
    """The ``dsr`` logger, printing to stderr (handler attached on first use) and, in a worker process of
    a command with a log file, appending to that file."""
    logger = logging.getLogger("dsr")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
        logger.setLevel(logging.DEBUG if verbosity() >= 1 else logging.INFO)
    path = os.environ.get(LOG_FILE_ENV)
    if path and not any(isinstance(h, logging.FileHandler) for h in logger.handlers):
        try:
            logger.addHandler(_file_handler(Path(path)))
        except OSError:
            pass  # the driver's lines still reach the file
    return logger


def _file_handler(path: Path) -> logging.FileHandler:
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FILE_FORMAT))
    handler.setLevel(logging.DEBUG)
    return handler


def configure(level: int = 0, command: list[str] | None = None) -> logging.Logger:
    """Set the verbosity of this command (0, 1 = ``-v``, 2 = ``-vv``) and start keeping its lines for the log
    file that :func:`open_log_file` opens. ``command`` (the arguments) heads the file."""
    close_log()
    os.environ[VERBOSITY_ENV] = str(level)
    logger = user_log()
    logger.setLevel(logging.DEBUG if level >= 1 else logging.INFO)
    buffer = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 10, target=None)
    buffer.setLevel(logging.DEBUG)
    logger.addHandler(buffer)
    if level >= 2:  # other libraries' records and Python warnings (nilearn's) reach the same handlers
        logging.captureWarnings(True)
        for name in ("py.warnings", "nilearn", "ray"):
            other = logging.getLogger(name)
            other.setLevel(logging.DEBUG)
            other.propagate = False
            other.handlers = [h for h in logger.handlers]
    from dsr import __version__

    logger.debug("dsr %s; python %s; command: dsr %s", __version__, sys.version.split()[0],
                 " ".join(command or []))
    return logger


def open_log_file(output_dir: str | Path) -> Path | None:
    """Start ``OUTPUT_DIR/logs/dsr_<UTC time>.log`` with every line kept since :func:`configure`; None (and
    nothing written) when the command line did not configure logging (an API call)."""
    logger = logging.getLogger("dsr")
    buffers = [h for h in logger.handlers if isinstance(h, logging.handlers.MemoryHandler)]
    if not buffers or buffers[0].target is not None:
        return getattr(buffers[0].target, "baseFilename", None) if buffers else None
    folder = Path(output_dir) / LOG_DIR
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path, k = folder / f"dsr_{stamp}.log", 1
    try:
        folder.mkdir(parents=True, exist_ok=True)
        while path.exists():  # two commands in one second
            k += 1
            path = folder / f"dsr_{stamp}_{k}.log"
        handler = _file_handler(path)
    except OSError as exc:  # the outputs themselves will say what is wrong with the folder
        logger.warning("%s: cannot write the log file (%s)", path, exc.strerror or exc)
        return None
    buffers[0].setTarget(handler)
    buffers[0].flush()
    logger.addHandler(handler)
    logger.removeHandler(buffers[0])
    for name in ("py.warnings", "nilearn", "ray"):
        other = logging.getLogger(name)
        if buffers[0] in other.handlers:
            other.handlers = [h for h in other.handlers if h is not buffers[0]] + [handler]
    os.environ[LOG_FILE_ENV] = str(path)
    return path


def log_file() -> Path | None:
    """The log file of this command, once open."""
    path = os.environ.get(LOG_FILE_ENV)
    return Path(path) if path else None


def to_file(message: str) -> None:
    """Write a line printed outside the logger (the command's final error) into the log file, if open."""
    for h in logging.getLogger("dsr").handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(logging.LogRecord("dsr", logging.ERROR, __file__, 0, message, None, None))


def close_log() -> None:
    """End this command's logging: close the log file, forget kept lines, back to the default verbosity."""
    logger = logging.getLogger("dsr")
    for h in list(logger.handlers):
        if isinstance(h, (logging.FileHandler, logging.handlers.MemoryHandler)):
            logger.removeHandler(h)
            h.close()
    for name in ("py.warnings", "nilearn", "ray"):
        other = logging.getLogger(name)
        if any(isinstance(h, (logging.FileHandler, logging.handlers.MemoryHandler, _StderrHandler))
               for h in other.handlers):
            other.handlers, other.propagate = [], True
            other.setLevel(logging.NOTSET)
    logging.captureWarnings(False)
    os.environ.pop(LOG_FILE_ENV, None)
    os.environ.pop(VERBOSITY_ENV, None)
    logger.setLevel(logging.INFO)
