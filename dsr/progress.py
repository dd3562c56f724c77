"""Progress of the long steps (fits of a participant level, epochs of a stack, participants of the group level).

On a terminal (``sys.stderr.isatty()``) a tqdm bar; otherwise a log line every few items (about 20 lines
for a whole run). Failed items are counted as failures, never as done: the bar and the lines say
``ok`` and ``failed`` apart. The pipelines call :class:`Progress` (items) and :func:`epoch_progress` (the
training callback of :func:`dsr.training.loop.train`); nothing else here knows about fits.

Epoch bars are drawn only where they cannot collide: in the driver (a stack trained in this process), or in
the one child process of a serial run, which the driver allows through ``DSR_PROGRESS=epochs``.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time

from dsr.log import user_log

log = user_log()
PROGRESS_ENV = "DSR_PROGRESS"


def on_terminal() -> bool:
    """Whether progress is drawn as bars (stderr is a terminal)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Items of one step finished so far, ok and failed apart.

    Parameters
    ----------
    total : int
    what : str
        What the items are (``fits``, ``participants``), in the bar and the lines.
    bar : bool, optional
        Draw a tqdm bar (default: when stderr is a terminal).
    """

    def __init__(self, total: int, what: str = "fits", bar: bool | None = None):
        self.total, self.what, self.ok, self.failed = total, what, 0, 0
        self.t0 = time.perf_counter()
        self.every = max(1, total // 20)
        self.bar = None
        if (on_terminal() if bar is None else bar) and total > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=what.rstrip("s") or "item", desc=what, file=sys.stderr,
                            dynamic_ncols=True, position=0)

    @property
    def done(self) -> int:
        return self.ok + self.failed

    def update(self, failed: bool = False) -> None:
        """One more item finished (``failed``: it failed, diverged or was refused)."""
        if failed:
            self.failed += 1
        else:
            self.ok += 1
        if self.bar is not None:
            self.bar.set_postfix(ok=self.ok, failed=self.failed, refresh=False)
            self.bar.update(1)
        elif self.total > 1 and (self.done % self.every == 0 or self.done == self.total):
            counts = f"{self.ok} ok, {self.failed} failed" if self.failed else "all ok"
            log.info("progress: %d/%d %s finished (%s; %.0f s)", self.done, self.total, self.what, counts,
                     time.perf_counter() - self.t0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def allow_epoch_bars(allowed: bool) -> None:
    """Let the one worker of a serial run (a child process of this one) draw its epoch bar."""
    if allowed and on_terminal():
        os.environ[PROGRESS_ENV] = "epochs"
    else:
        os.environ.pop(PROGRESS_ENV, None)


def epoch_progress(label: str, every: int = 10):
    """The training callback ``progress(epoch, epochs, info)`` of one fit or stack called ``label``: a tqdm bar
    below the item bar on a terminal (in the driver, or where :func:`allow_epoch_bars` allowed it), else a
    debug line (``-v``) for the first epoch trained and every ``every``-th."""
    in_driver = mp.parent_process() is None
    if on_terminal() and (in_driver or os.environ.get(PROGRESS_ENV) == "epochs"):
        from tqdm import tqdm

        state = {}

        def on_bar(epoch, total, info):
            if "bar" not in state:
                state["bar"] = tqdm(total=total, initial=epoch - 1, unit="epoch", desc=label, file=sys.stderr,
                                    position=1, leave=False, dynamic_ncols=True)
            state["bar"].update(1)
            state["bar"].set_postfix(loss=f"{info['loss']:.4g}", refresh=False)
            if epoch == total:
                state["bar"].close()

        return on_bar

    seen = []

    def on_line(epoch, total, info):
        if not seen or epoch % every == 0 or epoch == total:  # the first line says where a resumed fit starts
            seen.append(epoch)
            log.debug("%s: epoch %d/%d, loss %.5g (%.1f s)", label, epoch, total, info["loss"], info["seconds"])

    return on_line
