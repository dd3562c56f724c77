"""Static figures of a single fit (PNG, matplotlib's Agg backend)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dsr.io.atomic import atomic_write_bytes
from dsr.report import plots


def data_vs_generated(x: np.ndarray, x_gen: np.ndarray, path: str | Path, tr: float, n_train: int | None = None,
                      max_channels: int = 6, title: str = "", names: list[str] | None = None) -> Path:
    """Data and generated series side by side (:func:`dsr.report.plots.data_vs_generated`: the held-out
    part marked, the generated series free-running, not a forecast), first ``max_channels`` regions."""
    png = plots.data_vs_generated(x, x_gen, tr, names, n_train, max_channels=max_channels, title=title)
    return atomic_write_bytes(path, png)
