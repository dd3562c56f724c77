"""dsr: dynamical systems reconstruction from neuroimaging data (convSSM + generalized teacher forcing)."""

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)


def fit(x, tr, config=None, **kwargs):
    """Fit a convSSM to a (T, N) array; see :func:`dsr.pipelines.fit_array.fit`."""
    from dsr.pipelines.fit_array import fit as _fit

    return _fit(x, tr, config, **kwargs)


def load_config(preset=None, **overrides):
    """Load a preset or TOML file; see :func:`dsr.config.load_config`."""
    from dsr.config import load_config as _load

    return _load(preset, **overrides)
