"""Tables and figure of the baseline benchmark (``benchmarks/baselines.py --merge``): results.tsv,
table.md (median [IQR] per dataset x model) and dstsp.png from the per-process ``rows-*.tsv`` files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd


def write_tsv_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` as TSV through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_csv(tmp, sep="\t", index=False)
    os.replace(tmp, path)


COLUMNS = [("dstsp", "D_stsp"), ("dh", "D_H"), ("pe", "PE_n"), ("lyap_max", "λ_max / step"),
           ("dstsp_latent", "D_stsp latent"), ("seconds", "s / fit")]


def _cell(values) -> str:
    """'median [q1, q3]' of the finite values ('n/a' when none); a count of non-finite ones when any."""
    v = np.asarray(values, dtype=float)
    fin = v[np.isfinite(v)]
    if not fin.size:
        return "n/a"
    q1, med, q3 = np.percentile(fin, [25, 50, 75])
    bad = f" ({v.size - fin.size} inf)" if v.size > fin.size else ""
    return f"{med:.3g} [{q1:.3g}, {q3:.3g}]{bad}"


def summarise(df: pd.DataFrame) -> str:
    """Markdown table: median [IQR] of every metric per dataset × model."""
    head = "| dataset | model | fits | diverged | " + " | ".join(t for _, t in COLUMNS) + " |"
    rows = [head, "|" + "---|" * (4 + len(COLUMNS))]
    for (ds, model), g in df.groupby(["dataset", "model"], sort=True):
        n_div = int((g["status"] != "ok").sum())
        rows.append(f"| {ds} | {model} | {len(g)} | {n_div} | " + " | ".join(_cell(g[c]) for c, _ in COLUMNS) + " |")
    notes = ("\nD_stsp and D_H: generated vs observed series (standardised with the training part's statistics); "
             "D_stsp latent: vs the ground-truth latents (Lorenz-63 state, ALN latent activity), each z-scored; "
             "PE_n: n-step prediction error on the test part (n = 20 Lorenz, 10 ALN; MINDy in the deconvolved "
             "space); λ_max per sampling step; s / fit: training (stacked fits: their share) plus evaluation. "
             "Median [IQR] over recordings × seeds; '(k inf)': k fits diverged in that metric and are left out.\n")
    return "\n".join(rows) + "\n" + notes


def plot(df: pd.DataFrame, path: Path) -> None:
    """Box plot of D_stsp per model, one panel per dataset (plus ALN latent space)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(ds, "dstsp") for ds in sorted(df["dataset"].unique())]
    panels += [(ds, "dstsp_latent") for ds in sorted(df["dataset"].unique()) if ds == "aln"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, (ds, col) in zip(axes[0], panels):
        g = df[df["dataset"] == ds]
        models = sorted(g["model"].unique())
        ax.boxplot([g[g["model"] == m][col].replace(np.inf, np.nan).dropna() for m in models])
        ax.set_xticks(range(1, len(models) + 1), models, rotation=60, fontsize=7)
        ax.set_title(f"{ds} ({'latent' if col.endswith('latent') else 'observed'})")
        ax.set_ylabel("D_stsp")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def merge(dirs: list[Path], out: Path) -> pd.DataFrame:
    """Collect the ``rows-*.tsv`` of ``dirs`` into ``out``: results.tsv, table.md, dstsp.png."""
    parts = [pd.read_csv(p, sep="\t") for d in dirs for p in sorted(Path(d).glob("rows-*.tsv"))]
    if not parts:
        raise SystemExit(f"no rows-*.tsv in {[str(d) for d in dirs]}")
    df = pd.concat(parts, ignore_index=True).drop_duplicates(["dataset", "recording", "model", "seed"], keep="last")
    df = df.sort_values(["dataset", "model", "recording", "seed"]).reset_index(drop=True)
    out.mkdir(parents=True, exist_ok=True)
    write_tsv_atomic(df, out / "results.tsv")
    tmp = out / f".table.md.{os.getpid()}.tmp"
    tmp.write_text(summarise(df))
    os.replace(tmp, out / "table.md")
    plot(df, out / "dstsp.png")
    return df
