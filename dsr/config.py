"""Typed configuration: dataclasses, TOML presets and a stable hash.

A config is five small sections (model, filter, train, eval, extract) plus the seed.
Presets are TOML files in ``configs/`` (installed as ``dsr.presets``); a
preset may be given by name (``lorenz63``) or by path.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from dsr.errors import ConfigError

LATENT_MODELS = ("cshPLRNN", "shPLRNN", "PLRNN", "mcPLRNN", "clipped_dendPLRNN", "dendPLRNN")
OBSERVATION_MODELS = ("identity", "affine", "regressor")
FILTER_KINDS = ("spm", "glover", "calcium", "none")
FORCING_KINDS = ("weak", "sparse", "adaptive", "none")


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


@dataclass
class TrainConfig:
    """Generalized teacher forcing and the optimiser."""

    epochs: int = 1000
    batches_per_epoch: int = 50
    batch_size: int = 16
    sequence_length: int = 200
    forcing: str = "weak"
    alpha: float = 0.1
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


@dataclass
class EvalConfig:
    """Generation and the DSR metrics."""

    n_rollouts: int = 100  # rollouts from perturbed initial states (paper: 100)
    perturbation: float = 0.01
    dstsp_bins: int = 30
    dstsp_scaling: float = 1.0
    bins_max_dims: int = 3  # bins up to this many dims, GMM above
    spectrum_smoothing: float = 20.0
    pe_steps: int = 20
    lyap_steps: int = 5000
    lyap_transient: int = 1000
    lyap_orbits: int = 10


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
class DsrConfig:
    """Everything one fit needs besides the data."""

    model: ModelConfig = field(default_factory=ModelConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    seed: int = 0

    def to_dict(self) -> dict:
        """Plain nested dict (JSON/TOML friendly)."""
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short stable hash of the config (seed included)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict) -> "DsrConfig":
        """Build and validate a config from a nested dict; unknown keys are errors."""
        sections = {"model": ModelConfig, "filter": FilterConfig, "train": TrainConfig, "eval": EvalConfig, "extract": ExtractConfig}
        kwargs = {}
        for key, value in data.items():
            if key == "seed":
                kwargs["seed"] = int(value)
            elif key in sections:
                kwargs[key] = _section(sections[key], key, value)
            elif key in ("name", "description"):
                continue
            else:
                raise ConfigError(f"unknown config section '{key}'")
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def replace(self, **sections) -> "DsrConfig":
        """Copy with some fields changed, e.g. ``cfg.replace(train={"epochs": 5})``."""
        data = self.to_dict()
        for key, value in sections.items():
            if isinstance(value, dict):
                data[key].update(value)
            else:
                data[key] = value
        return DsrConfig.from_dict(data)

    def validate(self) -> None:
        """Raise ConfigError for values out of range."""
        m, f, t = self.model, self.filter, self.train
        _check(m.latent_model in LATENT_MODELS, f"latent_model must be one of {LATENT_MODELS}")
        _check(m.observation in OBSERVATION_MODELS, f"observation must be one of {OBSERVATION_MODELS}")
        _check(m.latent_dim >= 1 and m.hidden_dim >= 1, "latent_dim and hidden_dim must be >= 1")
        _check(f.kind in FILTER_KINDS, f"filter kind must be one of {FILTER_KINDS}")
        _check(t.forcing in FORCING_KINDS, f"forcing must be one of {FORCING_KINDS}")
        _check(0.0 <= t.alpha <= 1.0, "alpha must lie in [0, 1]")
        _check(t.sampler in ("auto", "host", "device"), "sampler must be auto, host or device")
        _check(0.0 < t.train_fraction <= 1.0, "train_fraction must lie in (0, 1]")
        _check(t.epochs >= 1 and t.batches_per_epoch >= 1 and t.batch_size >= 1, "epochs, batches and batch size must be >= 1")
        _check(t.forcing_interval >= 1, "forcing_interval must be >= 1")
        _check(t.lr_start > 0 and t.lr_end > 0, "learning rates must be > 0")
        e = self.extract
        for name in ("high_pass", "low_pass"):
            v = getattr(e, name)
            _check(v is None or (isinstance(v, (int, float)) and v > 0), f"extract.{name} must be a positive frequency in Hz")
        _check(e.high_pass is None or e.low_pass is None or e.high_pass < e.low_pass,
               "extract.high_pass must be below extract.low_pass")
        _check(e.confounds_mode in (None, "regress", "nuisance"), "extract.confounds_mode must be regress or nuisance")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _section(cls, name: str, values: dict):
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{name}' must be a table")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown key '{key}' in config section '{name}'")
    return cls(**values)


def _preset_dir():
    """The installed presets (``dsr.presets``), or ``configs/`` beside the source tree."""
    try:
        return resources.files("dsr.presets")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "configs"


def preset_names() -> list[str]:
    """Names of the presets shipped with dsr."""
    return sorted(p.name[:-5] for p in _preset_dir().iterdir() if p.name.endswith(".toml"))


def load_config(preset: str | Path | None = None, **overrides) -> DsrConfig:
    """Load a preset by name or path (default: ``paper``) and apply section overrides.

    Raises
    ------
    ConfigError
        Unknown preset, unreadable TOML, unknown keys or invalid values.
    """
    preset = "paper" if preset is None else preset
    path = Path(preset)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        text = path.read_text()
        origin = str(path)
    else:
        entry = _preset_dir() / f"{preset}.toml"
        if not entry.is_file():
            raise ConfigError(f"unknown preset '{preset}' (known: {', '.join(preset_names())})")
        text = entry.read_text()
        origin = f"preset {preset}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML ({exc})") from None
    cfg = DsrConfig.from_dict(data)
    return cfg.replace(**overrides) if overrides else cfg
