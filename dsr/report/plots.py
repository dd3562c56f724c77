"""Figures of the subject and group reports, each returned as PNG bytes (matplotlib, Agg backend)."""
from __future__ import annotations

import io

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def training_curve(curve: np.ndarray) -> bytes:
    """Loss (log scale) and forcing α per epoch; curve (E, 4) columns epoch, loss, alpha, lr."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.semilogy(curve[:, 0], curve[:, 1], color="k", marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("GTF loss")
    ax2 = ax.twinx()
    ax2.plot(curve[:, 0], curve[:, 2], color="tab:orange", lw=1)
    ax2.set_ylabel("α", color="tab:orange")
    return _png(fig)


def data_vs_generated(x: np.ndarray, x_gen: np.ndarray, tr: float, names: list[str] | None = None,
                      n_train: int | None = None, reference: np.ndarray | None = None,
                      reference_name: str = "VAR(1)", max_channels: int = 6, title: str = "") -> bytes:
    """Data and generated series side by side, one row per region (first ``max_channels``): the data with its
    training part and held-out test part marked, the convSSM's free-running series, and a linear reference's
    sample where given. The generated series start from their own initial state: they are not forecasts of
    the data, so only their statistics (amplitude, rhythm, co-fluctuation) are comparable."""
    plt = _plt()
    n = min(x.shape[1], x_gen.shape[1], max_channels)
    series = [("data", x, "0.2"), ("convSSM, free-running", x_gen, "tab:red")]
    if reference is not None:
        series.append((f"{reference_name}, free-running", reference, "tab:blue"))
    fig, axes = plt.subplots(n, len(series), figsize=(3.6 * len(series), 1.0 * n + 0.9), sharex="col", sharey="row",
                             squeeze=False)
    lo, hi = np.nanpercentile(x[:, :n], [0.5, 99.5]) if np.isfinite(x).any() else (-3, 3)
    pad = 0.5 * (hi - lo)
    for j, (heading, arr, col) in enumerate(series):
        for i in range(n):
            ax = axes[i, j]
            ax.plot(np.arange(len(arr)) * tr, arr[:, i], color=col, lw=0.7)
            ax.set_ylim(lo - pad, hi + pad)
            if j == 0 and n_train is not None and 0 < n_train < len(x):
                ax.axvspan(n_train * tr, len(x) * tr, color="tab:orange", alpha=0.12, lw=0)
                ax.axvline(n_train * tr, color="tab:orange", ls="--", lw=0.8)
            if j == 0:
                ax.set_ylabel(names[i] if names and i < len(names) else f"region {i + 1}", fontsize=8,
                              rotation=0, ha="right", va="center")
            ax.tick_params(labelsize=7)
        axes[0, j].set_title(heading, fontsize=9)
        axes[-1, j].set_xlabel("time (s)", fontsize=8)
    if n_train is not None and 0 < n_train < len(x):
        axes[0, 0].text(n_train * tr, hi + 0.4 * pad, " test", color="tab:orange", fontsize=7, va="center")
        axes[0, 0].text(0, hi + 0.4 * pad, "train", color="0.3", fontsize=7, va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    return _png(fig)


def attractor_2d(orbit: np.ndarray, points: np.ndarray | None = None, stable=None,
                 approach: np.ndarray | None = None) -> bytes:
    """The latent orbit in its first two principal components (of the orbit and its approach), fixed
    points near it marked (filled = stable); ``approach`` (T', M), e.g. the generated series, drawn faintly."""
    plt = _plt()
    fin = orbit[np.isfinite(orbit).all(1)]
    both = fin if approach is None else np.concatenate([approach[np.isfinite(approach).all(1)], fin])
    mu = both.mean(0)
    _, _, Vt = np.linalg.svd(both - mu, full_matrices=False)
    pc = Vt[:2].T if Vt.shape[0] >= 2 else np.eye(orbit.shape[1])[:, :2]
    fig, ax = plt.subplots(figsize=(4, 4))
    if approach is not None:
        ya = (approach - mu) @ pc
        ax.plot(ya[:, 0], ya[:, 1], lw=0.5, color="0.7", label="generated")
    y = (fin - mu) @ pc
    ax.plot(y[:, 0], y[:, 1], lw=0.8, color="tab:blue", marker="." if len(y) < 50 or np.ptp(y) < 1e-9 else None,
            label="attractor")
    if points is not None and len(points):
        p = (np.asarray(points) - mu) @ pc
        st = np.zeros(len(p), bool) if stable is None else np.asarray(stable, bool)
        reach = 5 * max(np.abs((both - mu) @ pc).max(), 1e-3) + 1.0
        near = np.abs(p).max(1) <= reach  # far-away unstable points would squash the orbit
        ax.scatter(p[st & near, 0], p[st & near, 1], c="k", s=30, label="stable FP", zorder=3)
        ax.scatter(p[~st & near, 0], p[~st & near, 1], facecolors="none", edgecolors="k", s=30,
                   label="unstable FP", zorder=3)
    ax.legend(fontsize=6, loc="upper right", framealpha=0.6)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    return _png(fig)


def attractor_3d(orbit: np.ndarray) -> bytes:
    """The latent orbit in its first three latent dimensions."""
    plt = _plt()
    fin = orbit[np.isfinite(orbit).all(1)]
    fin = np.pad(fin, ((0, 0), (0, max(0, 3 - fin.shape[1]))))
    fig = plt.figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot(projection="3d")
    ax.plot(fin[:, 0], fin[:, 1], fin[:, 2], lw=0.5)
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_zlabel("z3")
    return _png(fig)


def power_spectra(x: np.ndarray, x_gen: np.ndarray, tr: float, smoothing: float = 2.0,
                  reference: np.ndarray | None = None, reference_name: str = "VAR(1)") -> bytes:
    """Mean smoothed power spectrum of data, generated series and a linear reference against frequency (Hz)."""
    from dsr.analysis.spectrum import power_spectrum

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    curves = [(x, "data", "0.2"), (x_gen, "convSSM", "tab:red")]
    if reference is not None:
        curves.append((reference, reference_name, "tab:blue"))
    for arr, lab, col in curves:
        if arr is not None and np.isfinite(arr).all() and len(arr) > 2:
            ps = power_spectrum(arr, smoothing).mean(1)
            ax.semilogy(np.fft.rfftfreq(len(arr), tr)[1:], ps[1:], color=col, label=lab)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("power")
    ax.legend(fontsize=7)
    return _png(fig)


def lyapunov_spectrum(lam: np.ndarray) -> bytes:
    """Bar chart of the Lyapunov spectrum (per second)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    lam = np.asarray(lam, float)
    ax.bar(np.arange(1, len(lam) + 1), np.nan_to_num(lam), color=np.where(lam > 0, "tab:red", "tab:blue"))
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("index")
    ax.set_ylabel("λ (1/s)")
    return _png(fig)


def eigenvalues(cycles: list) -> bytes:
    """Eigenvalues of every fixed point / cycle in the complex plane with the unit circle."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 4))
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(t), np.sin(t), color="0.5", lw=0.8)
    for i, c in enumerate(cycles[:10]):
        name = "FP" if c.period == 1 else f"{c.period}-cycle"
        ax.scatter(c.eigenvalues.real, c.eigenvalues.imag, s=12, label=f"{name} {i + 1}")
    if cycles:
        ax.legend(fontsize=6)
    else:
        ax.text(0, 0, "no fixed point found", ha="center")
    ax.set_aspect("equal")
    ax.set_xlabel("Re")
    ax.set_ylabel("Im")
    return _png(fig)


def feature_distributions(table, features: list[str], ncols: int = 4) -> bytes:
    """One strip of points per feature (one point per participant, jittered), with the median marked."""
    plt = _plt()
    n = max(1, len(features))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.8 * ncols, 1.9 * nrows), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, f in zip(axes.ravel(), features):
        v = np.asarray(table[f], float)
        v = v[np.isfinite(v)]
        if v.size:
            ax.scatter(v, rng.uniform(-0.3, 0.3, v.size), s=14, color="tab:blue", alpha=0.8)
            ax.axvline(np.median(v), color="k", lw=0.8)
        ax.set_yticks([])
        ax.set_ylim(-1, 1)
        ax.xaxis.set_major_locator(plt.MaxNLocator(4))
        ax.set_title(f, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(features):]:
        ax.axis("off")
    return _png(fig)


def feature_vs_covariate(table, tests, ncols: int = 3) -> bytes:
    """Scatter (or strip for a categorical covariate) of feature against covariate, each titled with its
    test, p and FDR q; ``tests`` rows of a stats table (feature, covariate, test, statistic, p_permutation,
    q_fdr)."""
    plt = _plt()
    rows = list(tests.itertuples()) if hasattr(tests, "itertuples") else list(tests)
    n = max(1, len(rows))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.5 * ncols, 2.9 * nrows), squeeze=False)
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no covariates to test", ha="center", va="center")
        axes[0, 0].axis("off")
    for ax, r in zip(axes.ravel(), rows):
        y = np.asarray(table[r.feature], float)
        xv = table[r.covariate]
        try:
            x = np.asarray(xv, float)
            ax.scatter(x, y, s=14)
        except (TypeError, ValueError):
            cats = sorted(set(map(str, xv)))
            x = np.array([cats.index(str(v)) for v in xv])
            ax.scatter(x + np.random.default_rng(0).uniform(-0.1, 0.1, len(x)), y, s=14)
            ax.set_xticks(range(len(cats)), cats)
        ax.set_xlabel(r.covariate, fontsize=8)
        ax.set_ylabel(r.feature, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(f"{r.test} {r.statistic:.2f}, p={r.p_permutation:.3g}, q={r.q_fdr:.3g}", fontsize=8)
    for ax in axes.ravel()[len(rows):]:
        ax.axis("off")
    return _png(fig)


def distance_heatmap(D: np.ndarray, labels: list[str], title: str) -> bytes:
    """Between-subject distance matrix as a heat map."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(D, cmap="viridis")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


def embedding(coords: np.ndarray, labels: list[str], colour=None, colour_name: str = "") -> bytes:
    """2-D embedding of the subjects, optionally coloured by a covariate."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    c = None
    if colour is not None:
        try:
            c = np.asarray(colour, float)
        except (TypeError, ValueError):
            c = None
    sc = ax.scatter(coords[:, 0], coords[:, 1], s=25, **({} if c is None else {"c": c, "cmap": "viridis"}))
    if c is not None:
        fig.colorbar(sc, ax=ax, label=colour_name)
    for (x, y), lab in zip(coords, labels):
        ax.annotate(lab, (x, y), fontsize=6)
    ax.set_xlabel("MDS 1")
    ax.set_ylabel("MDS 2")
    return _png(fig)
