"""The sections of a config: one typed dataclass each (model, filter, train, eval, extract, seeds), with
their allowed values and range checks. :mod:`dsr.config` assembles them, reads presets and hashes.
"""
from __future__ import annotations

from dataclasses import dataclass

from dsr.errors import ConfigError

LATENT_MODELS = ("cshPLRNN", "shPLRNN", "PLRNN", "mcPLRNN", "clipped_dendPLRNN", "dendPLRNN")
OBSERVATION_MODELS = ("identity", "affine", "regressor")
FILTER_KINDS = ("spm", "glover", "calcium", "none")
FORCING_KINDS = ("weak", "sparse", "adaptive", "none")
LOSS_STATES = ("free", "forced", "reference")
MAX_WIDTH = 65_536  # latent or hidden units
MAX_SEQUENCE = 1_000_000  # steps of one training sequence
#: Activations of one training step (batch x steps x units); tens of bytes each with the backward pass
#: (float32 values, gradients and the GTF mixing), so 5e8 is well over 10 GB: past it a step fits nowhere.
MAX_BATCH_ELEMENTS = 500_000_000


@dataclass
class ModelConfig:
    """Latent and observation model structure."""

    latent_model: str = "cshPLRNN"
    latent_dim: int = 3  # M
    hidden_dim: int = 50  # L (shallow models) or number of bases (dendritic)
    observation: str = "identity"


@dataclass
class FilterConfig:
    """The decoder's filter and the Wiener deconvolution that makes the targets."""

    kind: str = "spm"
    tau: float | None = None  # Ca2+ decay time in seconds
    indicator: str | None = None  # e.g. "GCaMP6f"
    cut_l: float = 0.25  # fraction of the kernel length masked at the start
    cut_r: float = 0.5  # fraction of the kernel length masked at the end
    min_noise: float = 1e-5  # floor of the wavelet noise estimate
    # test-part targets: each deconvolved from a window of the training length, at most this many
    # samples, ending cut_r·K samples after it (the reference: the training length, no cap)
    sliding_window: int = 2048


@dataclass
class TrainConfig:
    """Generalized teacher forcing and the optimiser."""

    epochs: int = 1000
    batches_per_epoch: int = 50
    batch_size: int = 16
    sequence_length: int = 200
    forcing: str = "weak"
    alpha: float = 0.1
    # which latent states the loss decodes: "free" z_t, or "forced" (1−α) z_t + α d_t as the reference code
    # does (humml-lab/GTF-ConvSSM src/tf_training/forcing.jl overwrites the state in place); "reference":
    # the forced values with the reference's Zygote gradient (the loss term reaches z_t unscaled)
    loss_states: str = "free"
    forcing_interval: int = 16  # tau of sparse forcing
    adaptive_every: int = 5  # batches between adaptive alpha estimates
    adaptive_decay: float = 0.999
    noise: float = 0.05
    lr_start: float = 1e-3
    lr_end: float = 1e-6
    latent_reg: float = 0.0
    obs_reg: float = 0.0
    train_fraction: float = 0.75
    checkpoint_every: int = 25
    nan_lr_factor: float = 0.5
    nan_retries: int = 3
    sampler: str = "auto"  # batches drawn on the "host" (NumPy) or the training "device"; auto: device on CUDA
    cuda_graph: bool = True  # on CUDA with device batches and fixed forcing, replay each step as one CUDA graph
    # checkpoint selection: every select_every epochs (and the last) score each fit by the D_stsp of a free-running
    # generation against its training part, and end with its best epoch's parameters (0: off, the last epoch)
    select_every: int = 0
    select_steps: int = 0  # observations generated per scoring (0: as many as the training part has)
    # > 0: this fraction at the end of the training part is held back from the training windows, and the scoring
    # compares against it instead of the whole training part
    select_holdout: float = 0.0
    # rollouts per scoring: the first from the unperturbed start, the others from starts perturbed by
    # N(0, eval.perturbation²) (drawn once per fit); the score is their mean D_stsp
    select_rollouts: int = 1
    # >= 2: keep each fit's this many best-scored checkpoints and, when training ends, score them again on
    # select_rescore_rollouts rollouts with the evaluation's observation noise (when eval.generation is
    # "stochastic") against the training part, ending with the lowest (0: off; nothing without select_every)
    select_rescore: int = 0
    select_rescore_rollouts: int = 10


@dataclass
class EvalConfig:
    """Generation and the DSR metrics."""

    n_rollouts: int = 100  # rollouts from perturbed initial states (paper: 100)
    perturbation: float = 0.01
    dstsp_bins: int = 30
    dstsp_scaling: float = 1.0
    bins_max_dims: int = 5  # bins up to this many dims, GMM above (the reference: bins for N < 6)
    spectrum_smoothing: float = 20.0
    pe_steps: int = 20
    lyap_steps: int = 5000
    lyap_transient: int = 1000
    lyap_orbits: int = 10
    generation: str = "deterministic"  # "stochastic": rollouts with the model's noise (the fMRI presets)
    latent_noise: str = "none"  # "targets": also process noise from one-step target residuals; "matched": and
    # rescaled so that generations have the data's variance (dsr.analysis.noise)
    obs_noise_covariance: str = "diagonal"  # "full": observation noise with the training residuals' covariance
    latent_noise_covariance: str = "diagonal"  # "full": process noise with the teacher residuals' covariance;
    # with latent_noise = "matched" the generated covariance (not only the variance) is matched to the data's
    output_calibration: str = "none"  # "moments": stochastic generations mapped affinely to the training part's mean
    # and covariance (dsr.analysis.calibration)

    def __post_init__(self):
        _check(self.generation in ("stochastic", "deterministic"), "eval.generation must be stochastic or deterministic")
        _check(self.latent_noise in ("none", "targets", "matched"),
               "eval.latent_noise must be none, targets or matched")
        for key in ("obs_noise_covariance", "latent_noise_covariance"):
            _check(getattr(self, key) in ("diagonal", "full"), f"eval.{key} must be diagonal or full")
        _check(self.output_calibration in ("none", "moments"), "eval.output_calibration must be none or moments")


@dataclass
class ExtractConfig:
    """How region series of BIDS runs are cleaned before fitting (read by :mod:`dsr.io.extract`).

    Command-line options (``--confounds`` …) override these. ``confounds=None`` means the default
    strategy when the run has a confounds table, ``"none"`` none; ``confounds_mode=None`` means
    "nuisance" with the regressor observation model and "regress" otherwise.
    """

    detrend: bool = True
    standardize: bool = True
    high_pass: float | None = None  # Hz
    low_pass: float | None = None  # Hz
    confounds: str | None = None
    confounds_mode: str | None = None  # "regress" or "nuisance"


@dataclass
class SeedsConfig:
    """How many fits the participant level makes of each run, and which of them the group level's features
    come from. Not part of a fit's identity (:meth:`DsrConfig.hash` leaves it out): a fit does not depend on
    how many siblings it has."""

    count: int = 1  # fits per run, seeds seed, seed + 1, ... (``--seeds`` overrides)
    combine: str = "mean"  # "mean" over a run's seeds, or "best": the seed with the lowest ``select_by``
    select_by: str = "dstsp_test"  # a metrics.json score of the run's held-out (test) part


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
