"""One BOLD run → cleaned region series, TR, nuisance regressors and inputs (with a cache).

Steps: validate the NIfTI, resolve the TR (sidecars, header fallback, mismatch = error), extract regions
with a nilearn masker, read the confound strategy and the events, clean (detrend, band-pass, z-score,
always with ``t_r``) and either regress the confounds out (``confounds_mode="regress"``) or keep them,
cleaned the same way, as nuisance regressors for the regressor observation model (``"nuisance"``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dsr.errors import InputError
from dsr.library_warnings import logged_warnings
from dsr.io import bids, confounds, events, nifti, series_cache
from dsr.io.feasibility import check_run_length, check_tr


@dataclass
class ExtractionSettings:
    """How region series are extracted and cleaned (all of it enters the cache key).

    ``confounds=None`` means :data:`dsr.io.confounds.DEFAULT_STRATEGY` when the run has a confounds
    table and nothing otherwise; ``"none"`` disables confounds.
    """

    confounds: str | None = None
    confounds_mode: str = "regress"  # or "nuisance"
    detrend: bool = True
    standardize: bool = True
    high_pass: float | None = None  # Hz
    low_pass: float | None = None  # Hz
    radius: float | None = None  # mm, sphere atlases
    use_events: bool = True
    fingerprint: str = "stat"  # or "sha256"; not part of the key

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("fingerprint")
        return d

    @classmethod
    def from_config(cls, section, observation: str = "identity", **overrides) -> "ExtractionSettings":
        """Settings from a config's ``extract`` section (:class:`dsr.config.ExtractConfig`).

        Keyword ``overrides`` that are not None (the command line's options, e.g. ``high_pass``,
        ``confounds``, ``radius``) win over the section. An unset ``confounds_mode`` follows the
        observation model: "nuisance" for the regressor model, "regress" otherwise.
        """
        values = {k: getattr(section, k) for k in ("detrend", "standardize", "high_pass", "low_pass",
                                                    "confounds", "confounds_mode")}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["confounds_mode"] is None:
            values["confounds_mode"] = "nuisance" if observation == "regressor" else "regress"
        return cls(**values)

    def __post_init__(self):
        if self.confounds_mode not in ("regress", "nuisance"):
            raise InputError(f"confounds_mode must be 'regress' or 'nuisance', got {self.confounds_mode!r}")
        if self.confounds is not None:
            confounds.strategy_columns(self.confounds)  # a malformed --confounds is refused before any run


@dataclass
class RunSeries:
    """The series of one run, ready for ``fit_to_dir``.

    Attributes
    ----------
    series : ndarray, shape (T, N)
    names : list of str
    tr : float
    nuisance, inputs : ndarray (T, C) or None
    """

    series: np.ndarray
    names: list
    tr: float
    nuisance: np.ndarray | None = None
    nuisance_names: list = field(default_factory=list)
    inputs: np.ndarray | None = None
    input_names: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    cached: bool = False


def min_volumes(tr: float, kind: str = "spm", tau=None, indicator=None, cut_l: float = 0.25,
                cut_r: float = 0.5) -> tuple[int, int]:
    """Fewest volumes a run needs for a filter: its K taps plus the samples deconvolution masks.

    Returns
    -------
    needed, K : int
    """
    from dsr.signal.filters import make_filter

    k = len(make_filter(kind, tr, tau=tau, indicator=indicator))
    return k + int(math.ceil((cut_l + cut_r) * k)), k


def check_length(n_volumes: int, tr: float, filter_config, path) -> None:
    """Raise InputError when a run is too short for the config's filter (``filter_config`` may be None).

    Given a whole :class:`~dsr.config.DsrConfig`, the run is checked against everything the fit needs
    (training, held-out part and evaluation, :func:`dsr.io.feasibility.check_run_length`)."""
    if filter_config is None:
        return
    if hasattr(filter_config, "filter"):
        return check_run_length(n_volumes, tr, filter_config, path)
    check_tr(tr, filter_config, path)
    f = filter_config
    needed, k = min_volumes(tr, f.kind, f.tau, f.indicator, f.cut_l, f.cut_r)
    if n_volumes < needed:
        raise InputError(f"the run has {n_volumes} volumes, shorter than the {f.kind} filter needs at TR "
                         f"{tr:g} s ({k} taps + {needed - k} samples masked by deconvolution = {needed})", path)


def check_readable(run: bids.BoldRun) -> None:
    """Raise the problem found with a run while looking for it (a dangling link, no fMRIPrep output)."""
    if run.problem:
        raise InputError(run.problem, run.bold)


def _resolve_strategy(run: bids.BoldRun, settings: ExtractionSettings) -> str:
    if settings.confounds is None:
        return confounds.DEFAULT_STRATEGY if run.confounds is not None else "none"
    return settings.confounds


def _clean(x: np.ndarray, tr: float, settings: ExtractionSettings, conf: np.ndarray | None, zscore: bool):
    from nilearn.signal import clean

    with logged_warnings("nilearn"):
        return clean(x, t_r=tr, detrend=settings.detrend, standardize="zscore_sample" if zscore else None,
                     confounds=conf if conf is not None and conf.shape[1] else None,
                     high_pass=settings.high_pass, low_pass=settings.low_pass,
                     filter="butterworth" if settings.high_pass or settings.low_pass else False)


def extract_run(run: bids.BoldRun, atlas: nifti.Atlas, settings: ExtractionSettings | None = None, *,
                filter_config=None, input_root: str | Path | None = None) -> RunSeries:
    """Extract and clean the region series of one run (no cache), on one BLAS thread.

    The BLAS thread count changes the order of floating-point sums in the masker and the cleaning, so the
    series would differ in the last bits between a process pool, a Ray worker and a laptop; one thread
    makes the extraction -- and every fit downstream -- the same wherever it runs.

    Parameters
    ----------
    run : BoldRun
    atlas : Atlas
    settings : ExtractionSettings, optional
    filter_config : FilterConfig, optional
        When given, runs shorter than the filter are refused.
    input_root : path, optional
        The input dataset: ``Sources`` are then BIDS URIs relative to it (:func:`dsr.io.bids.bids_uri`).

    Raises
    ------
    InputError
        Any bad input, naming the file.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn, which nilearn needs
        return _extract_run(run, atlas, settings, filter_config, input_root)
    with threadpool_limits(limits=1):
        return _extract_run(run, atlas, settings, filter_config, input_root)


def _extract_run(run, atlas, settings, filter_config, input_root) -> RunSeries:
    check_readable(run)
    settings = settings or ExtractionSettings()
    img = nifti.load_bold(run.bold)
    tr, tr_source = bids.repetition_time(run, nifti.header_tr(img))
    n = img.shape[3]
    check_length(n, tr, filter_config, run.bold)
    raw = nifti.extract_regions(img, atlas, run.bold)  # (T, R)
    strategy = _resolve_strategy(run, settings)
    conf, conf_names = np.zeros((n, 0)), []
    if confounds.strategy_parts(strategy):
        if run.confounds is None:
            raise InputError(f"confound strategy '{strategy}' but no confounds table was found for the run",
                             run.bold)
        conf, conf_names = confounds.load_confounds(run.confounds, strategy, n, bold=run.bold)  # (T, C)
    inputs, input_names = None, []
    if settings.use_events and run.events is not None:
        inputs, input_names = events.events_to_inputs(run.events, n, tr)  # (T, E)
    nuisance = None
    if settings.confounds_mode == "regress":
        series = _clean(raw, tr, settings, conf, settings.standardize)  # (T, R)
    else:
        series = _clean(raw, tr, settings, None, settings.standardize)  # (T, R)
        if conf.shape[1]:
            nuisance = _clean(conf, tr, settings, None, True)  # (T, C)
    meta = {"RepetitionTime": tr, "SamplingFrequency": 1.0 / tr, "RepetitionTimeSource": tr_source,
            "ConfoundStrategy": strategy, "Atlas": atlas.name, "AtlasKind": atlas.kind,
            "Sources": [bids.bids_uri(p, input_root) for p in _inputs(run, atlas)]}
    return RunSeries(np.asarray(series, dtype=np.float64), list(atlas.names), tr, nuisance,
                     conf_names if nuisance is not None else [], inputs, input_names, meta)


def _inputs(run: bids.BoldRun, atlas: nifti.Atlas) -> list[Path]:
    files = [run.bold] + bids.sidecars(run) + atlas.files()
    return files + [p for p in (run.confounds, run.events) if p is not None]


def _spec_and_key(run: bids.BoldRun, atlas: nifti.Atlas, settings: ExtractionSettings, atlas_spec: str | None):
    spec = {"extraction": settings.to_dict(), "atlas": atlas_spec or atlas.name, "atlas_kind": atlas.kind,
            "strategy": _resolve_strategy(run, settings), "format": 1}
    try:
        prints = series_cache.fingerprint(_inputs(run, atlas), settings.fingerprint)
    except OSError as exc:
        raise InputError(f"cannot read an input file ({exc})", run.bold) from None
    return spec, series_cache.cache_key(spec, prints)


def series_key(run: bids.BoldRun, atlas: nifti.Atlas, settings: ExtractionSettings | None,
               atlas_spec: str | None = None) -> str:
    """The cache key :func:`extract_run_cached` gives this run's tables (inputs' fingerprints + settings),
    computed without extracting or writing anything."""
    return _spec_and_key(run, atlas, settings or ExtractionSettings(), atlas_spec)[1]


def extract_run_cached(run: bids.BoldRun, atlas: nifti.Atlas, settings: ExtractionSettings | None,
                       folder: str | Path, base: str, *, filter_config=None,
                       atlas_spec: str | None = None, input_root: str | Path | None = None) -> RunSeries:
    """:func:`extract_run`, reusing the tables saved in ``folder`` while inputs and settings are unchanged.

    The tables are ``{base}_desc-cleaned_timeseries.tsv`` (+ ``desc-nuisance``, ``desc-inputs``), each
    with a JSON sidecar carrying the settings hash and the cache key.
    """
    check_readable(run)
    settings = settings or ExtractionSettings()
    spec, key = _spec_and_key(run, atlas, settings, atlas_spec)
    hit = series_cache.load_series(folder, base, key)
    if hit is not None:
        return _from_cache(hit, run, filter_config, cached=True)
    out = extract_run(run, atlas, settings, filter_config=filter_config, input_root=input_root)
    meta = dict(out.meta, Settings=spec, SettingsHash=series_cache.settings_hash(spec))
    tables = {"cleaned": (out.series, out.names)}
    if out.nuisance is not None:
        tables["nuisance"] = (out.nuisance, out.nuisance_names)
    if out.inputs is not None:
        tables["inputs"] = (out.inputs, out.input_names)
    series_cache.save_series(folder, base, tables, meta, key)
    # return the tables as stored (rounded as written), so a fit gives the same result whether this call
    # or an earlier one extracted them
    return _from_cache(series_cache.load_series(folder, base, key), run, filter_config, cached=False)


def _from_cache(hit: dict, run: bids.BoldRun, filter_config, cached: bool) -> RunSeries:
    """A :class:`RunSeries` from the tables and sidecar read back by :func:`series_cache.load_series`."""
    meta = hit["meta"]
    series, names = hit["cleaned"]
    check_length(series.shape[0], float(meta["RepetitionTime"]), filter_config, run.bold)
    nuis, nuis_names = hit.get("nuisance", (None, []))
    inp, inp_names = hit.get("inputs", (None, []))
    return RunSeries(series, names, float(meta["RepetitionTime"]), nuis, nuis_names, inp, inp_names, meta,
                     cached=cached)
