"""Warnings of the libraries dsr calls (nilearn, nibabel, ...) routed to the ``dsr`` log instead of hidden.

Inside :func:`logged_warnings`, every warning is caught and logged once per distinct message when the block
ends: DeprecationWarning, PendingDeprecationWarning and FutureWarning (about the library's own future, not the
user's data) at DEBUG, every other category at INFO, each as one line ``<where>: <Category>: <message>``.
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

log = logging.getLogger("dsr")
_QUIET = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


@contextmanager
def logged_warnings(where: str = ""):
    """Catch the warnings raised in the block and log them (see the module docstring)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen = set()
            for w in caught:
                text = " ".join(str(w.message).split())
                key = (w.category, text)
                if key in seen:
                    continue
                seen.add(key)
                level = logging.DEBUG if issubclass(w.category, _QUIET) else logging.INFO
                log.log(level, "%s%s: %s", f"{where}: " if where else "", w.category.__name__, text)
