"""What a report says about how its results were made: version, command, preset and overrides, the methods
paragraph and the papers to cite."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from dsr import __version__
from dsr.config import DsrConfig, load_config, preset_names

#: The method papers, as CITATION.cff lists them.
REFERENCES = {
    "volkmann2024": "Volkmann E, Brändle A, Durstewitz D, Koppe G (2024). A scalable generative model for dynamical "
                    "system reconstruction from neuroimaging data. Advances in Neural Information Processing "
                    "Systems 37 (NeurIPS 2024). arXiv:2411.02949.",
    "hess2023": "Hess F, Monfared Z, Brenner M, Durstewitz D (2023). Generalized teacher forcing for learning chaotic "
                "dynamics. Proceedings of the 40th International Conference on Machine Learning (ICML 2023).",
    "brenner2022": "Brenner M, Hess F, Mikhaeil JM, Bereska L, Monfared Z, Kuo P-C, Durstewitz D (2022). Tractable "
                   "dendritic RNNs for reconstructing nonlinear dynamical systems. Proceedings of the 39th "
                   "International Conference on Machine Learning (ICML 2022).",
    "koppe2019": "Koppe G, Toutounji H, Kirsch P, Lis S, Durstewitz D (2019). Identifying nonlinear dynamical "
                 "systems via generative recurrent neural networks with applications to fMRI. PLoS Computational "
                 "Biology 15.",
    "code": "Reference implementation of the convSSM: github.com/humml-lab/GTF-ConvSSM.",
}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def preset_and_overrides(config: DsrConfig) -> tuple[str, dict]:
    """The shipped preset closest to ``config`` (fewest differing keys) and the keys that differ from it,
    ``{"train.epochs": 40}``; ("none", all keys) when no preset loads."""
    mine = _flat(config.to_dict())
    best = ("none", mine)
    for name in preset_names():
        try:
            ref = _flat(load_config(name).to_dict())
        except Exception:  # a broken preset file does not stop a report
            continue
        diff = {k: v for k, v in mine.items() if ref.get(k, object()) != v}
        if len(diff) < len(best[1]):
            best = (name, diff)
    return best


def command_line(argv: list[str] | None = None) -> str:
    """The command that is running, as a shell would read it (program name shortened to ``dsr``)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name in ("dsr", "__main__.py", "-m"):
        argv[0] = "dsr"
    return " ".join(shlex.quote(a) for a in argv)


def config_summary(config: DsrConfig | None) -> dict[str, str]:
    """Summary lines about a fit's config: preset and overrides, model, training, evaluation."""
    if config is None:
        return {"configuration": "not available (no model sidecar)"}
    preset, diff = preset_and_overrides(config)
    shown = ", ".join(f"{k}={v}" for k, v in sorted(diff.items()))
    m, t = config.model, config.train
    return {"preset": preset,
            "overrides": shown if shown else "none",
            "model": f"{m.latent_model}, M={m.latent_dim} latent, L={m.hidden_dim} hidden, {m.observation} "
                     "observation",
            "training": f"{t.epochs} epochs × {t.batches_per_epoch} batches, {t.forcing} forcing, seed {config.seed}",
            "config hash": config.hash()}


def methods_paragraph(config: DsrConfig | None, n_train: int | None, n_samples: int | None) -> str:
    """A methods paragraph for a paper, with citations in brackets (numbers of :func:`reference_list`)."""
    if config is None:
        model = "a convolutional state-space model (convSSM)"
        train = ""
    else:
        m, t, e = config.model, config.train, config.eval
        model = (f"a convolutional state-space model (convSSM) with a {m.latent_model} latent model "
                 f"(M = {m.latent_dim} latent, L = {m.hidden_dim} hidden units) and a haemodynamic "
                 f"({config.filter.kind}) convolution decoder")
        train = (f" It was trained for {t.epochs} epochs of {t.batches_per_epoch} batches by generalized teacher "
                 f"forcing ({t.forcing}; [2]) with learning rate {t.lr_start:g} → {t.lr_end:g}; "
                 f"{e.n_rollouts} free-running rollouts from perturbed initial states were scored.")
    split = (f" The first {n_train} of {n_samples} volumes were used for training and the remaining "
             f"{n_samples - n_train} held out." if n_train and n_samples else "")
    return (f"Regional time series were modelled with {model} [1], implemented in dsr {__version__} after the "
            f"reference code [5].{train}{split} Reconstructions were judged by long-term statistics of the "
            "generated series: the state-space divergence D_stsp and the Hellinger distance D_H between power "
            "spectra [1, 2], beside a linear VAR(1) reference fitted to the same training volumes. The shallow "
            "PLRNN and generalized teacher forcing follow [2], the dendritic PLRNN variants [3], and the "
            "reconstruction of fMRI dynamics with piecewise-linear RNNs, with their fixed points, cycles and "
            "Lyapunov exponents, [4].")


def reference_list() -> list[str]:
    """The references cited by :func:`methods_paragraph`, in its numbering."""
    return [REFERENCES[k] for k in ("volkmann2024", "hess2023", "brenner2022", "koppe2019", "code")]


def version_line() -> str:
    return f"dsr {__version__}"
