"""Static figures of a single fit (PNG, matplotlib's Agg backend)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from dsr.io.atomic import atomic_write_bytes


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def data_vs_generated(x: np.ndarray, x_gen: np.ndarray, path: str | Path, tr: float, n_train: int | None = None,
                      max_channels: int = 6, title: str = "") -> Path:
    """Observed against generated series, one panel per channel (first ``max_channels``)."""
    plt = _plt()
    n = min(x.shape[1], max_channels)
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.6 * n + 0.6), sharex=True, squeeze=False)
    t = np.arange(len(x)) * tr
    tg = np.arange(len(x_gen)) * tr
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(t, x[:, i], color="0.3", lw=0.8, label="data")
        ax.plot(tg, x_gen[:, i], color="tab:red", lw=0.8, alpha=0.8, label="generated")
        if n_train is not None:
            ax.axvline(n_train * tr, color="tab:blue", ls="--", lw=0.6)
        ax.set_ylabel(f"ch {i}")
    axes[0, 0].legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        axes[0, 0].set_title(title, fontsize=9)
    h = 1.6 * n + 0.6  # fixed margins in inches: tight_layout measured every label and cost most of the time
    fig.subplots_adjust(left=0.7 / 10, right=1 - 0.15 / 10, bottom=0.5 / h, top=1 - (0.35 if title else 0.15) / h,
                        hspace=0.12)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, pil_kwargs={"compress_level": 3})
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
