"""Typed configuration: dataclasses, TOML presets and a stable hash.

A config is six small sections (model, filter, train, eval, extract, seeds; their dataclasses in
:mod:`dsr.config_sections`) plus the seed.
Presets are TOML files in ``configs/`` (installed as ``dsr.presets``); a
preset may be given by name (``lorenz63``) or by path.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from dsr.config_sections import (
    LATENT_MODELS,
    OBSERVATION_MODELS,
    FILTER_KINDS,
    FORCING_KINDS,
    LOSS_STATES,
    MAX_WIDTH,
    MAX_SEQUENCE,
    MAX_BATCH_ELEMENTS,
    ModelConfig,
    FilterConfig,
    TrainConfig,
    EvalConfig,
    ExtractConfig,
    SeedsConfig,
    _check,
)
from dsr.errors import ConfigError


@dataclass
class DsrConfig:
    """Everything one fit needs besides the data."""

    model: ModelConfig = field(default_factory=ModelConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    seeds: SeedsConfig = field(default_factory=SeedsConfig)
    seed: int = 0

    def to_dict(self) -> dict:
        """Plain nested dict (JSON/TOML friendly)."""
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short stable hash of what one fit depends on (seed included, the ``seeds`` section not)."""
        data = self.to_dict()
        data.pop("seeds")
        for (section, key), neutral in LATER_KEYS.items():  # at their neutral value: as before they existed
            if data[section].get(key) == neutral:
                del data[section][key]
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict) -> "DsrConfig":
        """Build and validate a config from a nested dict; unknown keys are errors."""
        sections = SECTIONS
        kwargs = {}
        for key, value in data.items():
            if key == "seed":
                kwargs["seed"] = _typed("seed", value, "int")
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
        """Raise ConfigError, naming the key, for any value of the wrong range (types are checked when a
        section is built, see :func:`_section`). The one home of config validation: every fit, sweep trial
        and level checks its config here before any data is read or any training starts."""
        m, f, t, e = self.model, self.filter, self.train, self.eval
        _check(m.latent_model in LATENT_MODELS, f"model.latent_model must be one of {LATENT_MODELS}")
        _check(m.observation in OBSERVATION_MODELS, f"model.observation must be one of {OBSERVATION_MODELS}")
        _check(m.latent_dim >= 1 and m.hidden_dim >= 1, "model.latent_dim and model.hidden_dim must be >= 1")
        _check(m.latent_dim <= MAX_WIDTH and m.hidden_dim <= MAX_WIDTH,
               f"model.latent_dim and model.hidden_dim must be <= {MAX_WIDTH}")
        _check(f.kind in FILTER_KINDS, f"filter.kind must be one of {FILTER_KINDS}")
        _check(f.sliding_window >= 2, f"filter.sliding_window must be >= 2, got {f.sliding_window}")
        _check(f.tau is None or (math.isfinite(f.tau) and f.tau > 0), "filter.tau must be > 0 seconds")
        _check(0.0 <= f.cut_l < 1.0 and 0.0 <= f.cut_r < 1.0, "filter.cut_l and filter.cut_r must lie in [0, 1)")
        _check(math.isfinite(f.min_noise) and f.min_noise > 0, "filter.min_noise must be > 0")
        _check(t.forcing in FORCING_KINDS, f"train.forcing must be one of {FORCING_KINDS}")
        _check(0.0 <= t.alpha <= 1.0, "train.alpha must lie in [0, 1]")
        _check(t.loss_states in LOSS_STATES, f"train.loss_states must be one of {LOSS_STATES}")
        _check(t.sampler in ("auto", "host", "device"), "train.sampler must be auto, host or device")
        _check(0.0 < t.train_fraction <= 1.0, "train.train_fraction must lie in (0, 1]")
        for key in ("epochs", "batches_per_epoch", "batch_size", "sequence_length", "forcing_interval",
                    "adaptive_every", "checkpoint_every"):
            _check(getattr(t, key) >= 1, f"train.{key} must be >= 1, got {getattr(t, key)}")
        _check(t.nan_retries >= 0, f"train.nan_retries must be >= 0, got {t.nan_retries}")
        _check(t.select_every >= 0, f"train.select_every must be >= 0 (0: no checkpoint selection), got {t.select_every}")
        _check(t.select_steps == 0 or t.select_steps >= 2,
               f"train.select_steps must be 0 (the training part's length) or >= 2, got {t.select_steps}")
        _check(math.isfinite(t.select_holdout) and 0.0 <= t.select_holdout < 1.0,
               f"train.select_holdout must lie in [0, 1), got {t.select_holdout}")
        _check(1 <= t.select_rollouts <= 1000, f"train.select_rollouts must lie in [1, 1000], got {t.select_rollouts}")
        _check(t.select_holdout == 0 or t.select_every > 0, "train.select_holdout needs train.select_every > 0")
        _check(t.select_rescore == 0 or 2 <= t.select_rescore <= 100,
               f"train.select_rescore must be 0 (off) or lie in [2, 100], got {t.select_rescore}")
        _check(1 <= t.select_rescore_rollouts <= 1000,
               f"train.select_rescore_rollouts must lie in [1, 1000], got {t.select_rescore_rollouts}")
        _check(0.0 < t.adaptive_decay <= 1.0, "train.adaptive_decay must lie in (0, 1]")
        _check(0.0 < t.nan_lr_factor < 1.0, "train.nan_lr_factor must lie in (0, 1)")
        _check(math.isfinite(t.noise) and t.noise >= 0, f"train.noise must be >= 0, got {t.noise}")
        for key in ("lr_start", "lr_end"):
            _check(math.isfinite(getattr(t, key)) and getattr(t, key) > 0, f"train.{key} must be > 0")
        for key in ("latent_reg", "obs_reg"):
            _check(math.isfinite(getattr(t, key)) and getattr(t, key) >= 0, f"train.{key} must be >= 0")
        _check(t.sequence_length <= MAX_SEQUENCE, f"train.sequence_length must be <= {MAX_SEQUENCE}")
        batch = t.batch_size * (t.sequence_length + 1) * (m.latent_dim + m.hidden_dim)
        _check(batch <= MAX_BATCH_ELEMENTS, f"train.batch_size = {t.batch_size} with sequence_length "
               f"{t.sequence_length} and {m.latent_dim + m.hidden_dim} latent + hidden units needs "
               f"{batch:.3g} activations per step (more than {MAX_BATCH_ELEMENTS:.0e}); lower train.batch_size")
        for key in ("n_rollouts", "dstsp_bins", "bins_max_dims", "pe_steps", "lyap_steps", "lyap_orbits"):
            _check(getattr(e, key) >= 1, f"eval.{key} must be >= 1, got {getattr(e, key)}")
        _check(e.lyap_transient >= 0, f"eval.lyap_transient must be >= 0, got {e.lyap_transient}")
        _check(e.n_rollouts <= 100_000 and e.dstsp_bins <= 10_000 and e.lyap_steps <= 10_000_000,
               "eval.n_rollouts (<= 100000), eval.dstsp_bins (<= 10000) or eval.lyap_steps (<= 1e7) too large")
        for key in ("perturbation", "spectrum_smoothing", "dstsp_scaling"):
            _check(math.isfinite(getattr(e, key)) and getattr(e, key) >= 0, f"eval.{key} must be >= 0")
        _check(e.dstsp_scaling > 0, "eval.dstsp_scaling must be > 0")
        _check(0 <= self.seed < 2 ** 63, f"seed must be an integer in [0, 2^63), got {self.seed}")
        sd = self.seeds
        _check(1 <= sd.count <= MAX_SEEDS, f"seeds.count must lie in [1, {MAX_SEEDS}], got {sd.count}")
        _check(sd.combine in SEED_COMBINE, f"seeds.combine must be one of {SEED_COMBINE}, got {sd.combine!r}")
        _check(sd.select_by in SELECT_BY, f"seeds.select_by must be one of {SELECT_BY}, got {sd.select_by!r}")
        x = self.extract
        for name in ("high_pass", "low_pass"):
            v = getattr(x, name)
            _check(v is None or (isinstance(v, (int, float)) and v > 0), f"extract.{name} must be a positive frequency in Hz")
        _check(x.high_pass is None or x.low_pass is None or x.high_pass < x.low_pass,
               "extract.high_pass must be below extract.low_pass")
        _check(x.confounds_mode in (None, "regress", "nuisance"), "extract.confounds_mode must be regress or nuisance")


#: The config's sections by name (the TOML tables and the ``section`` of ``--set section.key=value``).
SECTIONS = {"model": ModelConfig, "filter": FilterConfig, "train": TrainConfig, "eval": EvalConfig,
            "extract": ExtractConfig, "seeds": SeedsConfig}
#: Keys added after fits were first hashed, with the value that means "as before"; a config holding that
#: value hashes as it did before the key existed, so finished fits keep their identity (rerun safety).
LATER_KEYS = {("train", "select_every"): 0, ("train", "select_steps"): 0, ("train", "select_holdout"): 0.0,
              ("train", "select_rollouts"): 1, ("train", "select_rescore"): 0,
              ("train", "select_rescore_rollouts"): 10,
              ("eval", "obs_noise_covariance"): "diagonal", ("eval", "latent_noise_covariance"): "diagonal",
              ("eval", "output_calibration"): "none"}
#: ``seeds.combine``: average a run's fits, or keep its best one (lowest ``seeds.select_by``).
SEED_COMBINE = ("mean", "best")
#: Scores ``seeds.select_by`` may name: held-out (test part) scores of ``metrics.json``, lower is better.
SELECT_BY = ("dstsp_test", "dh_test", "pe_test")
MAX_SEEDS = 1000


def apply_overrides(cfg: DsrConfig, items: list[str]) -> DsrConfig:
    """``cfg`` with ``section.key=value`` overrides applied (``--set``; ``seed=N`` for the seed), each value
    parsed by the key's declared type (``none`` for an optional key); ConfigError naming the key otherwise.

    Examples
    --------
    >>> apply_overrides(DsrConfig(), ["train.epochs=3", "extract.low_pass=0.1"]).train.epochs
    3
    """
    data = cfg.to_dict()
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.epochs=100")
        section, _, name = key.rpartition(".")
        if not section and name == "seed":
            data["seed"] = _parse_value(key, text.strip(), "int")
            continue
        if section not in SECTIONS:
            raise ConfigError(f"--set {item}: unknown config key '{key}' (sections: {', '.join(SECTIONS)}; "
                              "and seed)")
        fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])}
        if name not in fields:
            raise ConfigError(f"--set {item}: unknown config key '{key}' (keys of [{section}]: "
                              f"{', '.join(fields)})")
        data[section][name] = _parse_value(key, text.strip(), fields[name].type)
    try:
        return DsrConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"--set: {exc}") from None


def _parse_value(key: str, text: str, annotation):
    """A ``--set`` value parsed by a field annotation (``"int"``, ``"float | None"``, ``"bool"``, ``"str"``)."""
    kinds = [a.strip() for a in str(annotation).split("|")]
    if text.lower() in ("none", "null") and "None" in kinds:
        return None
    for kind in kinds:
        if kind == "bool" and text.lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
            return text.lower() in ("true", "yes", "1", "on")
        if kind in ("int", "float"):
            try:
                return int(text) if kind == "int" else float(text)
            except ValueError:
                continue
        if kind == "str":
            return text
    want = " or ".join([_TYPE_WORDS[k] for k in kinds if k in _TYPE_WORDS] + (["none"] if "None" in kinds else []))
    raise ConfigError(f"--set {key}={text}: the value of config key '{key}' must be {want}")


#: Most trials one sweep may hold (grid combinations or random samples); each trial is a fit per run and seed.
MAX_TRIALS = 10_000


def check_sweep_size(grid_sizes: list[int], n_samples: int, origin) -> int:
    """The number of trials of a sweep; ConfigError naming ``origin`` past :data:`MAX_TRIALS`."""
    n = n_samples if n_samples else math.prod(int(k) for k in grid_sizes)
    if n > MAX_TRIALS:
        what = "n_samples" if n_samples else " x ".join(str(k) for k in grid_sizes) + " grid"
        raise ConfigError(f"{origin}: the sweep has {n:.3g} trials ({what}), more than {MAX_TRIALS}; each trial is "
                          "fitted for every run and seed: narrow the grid or split the sweep")
    return n


def _section(cls, name: str, values: dict):
    """Build a section dataclass, checking every value against the field's declared type."""
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{name}' must be a table")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown key '{key}' in config section '{name}'")
    return cls(**{k: _typed(f"{name}.{k}", v, known[k].type) for k, v in values.items()})


_TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


def _typed(key: str, value, annotation):
    """``value`` checked (and an int widened to float) against a field annotation such as
    ``"int"``, ``"float | None"`` or ``"str"``; ConfigError naming the key otherwise."""
    kinds = [a.strip() for a in str(getattr(annotation, "__name__", annotation)).split("|")]
    if value is None and "None" in kinds:
        return None
    for kind in kinds:
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind == "str" and isinstance(value, str):
            return value
    if not any(kind in _TYPE_WORDS for kind in kinds):
        return value  # a type this check does not know: left to validate()
    want = " or ".join(_TYPE_WORDS[k] for k in kinds if k in _TYPE_WORDS)
    raise ConfigError(f"config key '{key}' must be {want}, got {value!r}")


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
        text = _read_toml_text(path)
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
    try:
        cfg = DsrConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    return cfg.replace(**overrides) if overrides else cfg


def read_toml(path: str | Path) -> dict:
    """A TOML file (config or sweep) as a dict; ConfigError naming the file when it is missing, unreadable,
    not UTF-8 or not valid TOML."""
    path = Path(path)
    try:
        return tomllib.loads(_read_toml_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def _read_toml_text(path: Path) -> str:
    """A TOML file's text; ConfigError naming the file when it is unreadable or not UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the file is not UTF-8 text (byte {exc.start}); TOML files must be "
                          "saved as UTF-8") from None
