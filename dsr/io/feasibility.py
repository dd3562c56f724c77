"""Checks that a recording can be fitted with a config, made before any expensive work.

A run passes when its sampling interval gives a filter of sensible length and when it is long enough
for every step that follows: the deconvolved training targets (the filter's K taps plus the samples the
Wiener deconvolution masks at both edges), a training sequence, the n-step prediction errors on the
training and the held-out part (their decoder needs K valid states) and a held-out part of at least two
samples for the test metrics. A run that fails here would otherwise train every epoch and fail in
evaluation.
"""
from __future__ import annotations

import math

from dsr.errors import InputError

#: Most filter taps accepted: a longer filter means a sampling interval given in the wrong unit.
MAX_TAPS = 10_000
#: Kernel length of the HRF filters in seconds (SPM and Glover, 32 s).
HRF_SECONDS = 32.0


def filter_seconds(filter_config) -> float | None:
    """Length in seconds of the config's filter kernel (None when it cannot be told without building)."""
    kind = str(filter_config.kind).lower()
    if kind in ("spm", "glover"):
        return HRF_SECONDS
    if kind == "none":
        return 0.0
    if kind == "calcium":
        from dsr.signal.filters import indicator_tau

        tau = filter_config.tau
        if tau is None and filter_config.indicator is not None:
            tau = indicator_tau(filter_config.indicator)
        return None if tau is None else 5.0 * float(tau)
    return None


def check_tr(tr, filter_config, where=None, what: str = "the sampling interval (TR)") -> float:
    """``tr`` as a float after checking it gives the config's filter a sensible number of taps.

    Raises
    ------
    InputError
        A TR that is not a positive number, so short that the filter would have more than
        :data:`MAX_TAPS` taps, or longer than half an HRF kernel (a TR in milliseconds).
    """
    if isinstance(tr, bool):
        raise InputError(f"{what} must be a number of seconds, got {tr!r}", where)
    try:
        tr = float(tr)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number of seconds, got {tr!r}", where) from None
    if not (math.isfinite(tr) and tr > 0):
        raise InputError(f"{what} must be > 0 seconds, got {tr!r}", where)
    seconds = filter_seconds(filter_config)
    if seconds is None:
        return tr
    taps = seconds / tr + 1
    if taps > MAX_TAPS:
        raise InputError(f"{what} {tr:g} s gives the {filter_config.kind} filter ({seconds:g} s) {taps:.3g} taps, "
                         f"more than {MAX_TAPS}; is it in seconds?", where)
    if str(filter_config.kind).lower() in ("spm", "glover") and tr > seconds / 2:
        raise InputError(f"{what} {tr:g} s is longer than half the {seconds:g} s haemodynamic response, which "
                         "then has no shape to deconvolve; is it in seconds (not milliseconds)?", where)
    return tr


def _shortfalls(n: int, k: int, cut_left: int, cut_right: int, train_fraction: float, pe_steps: int) -> list[str]:
    """What a run of ``n`` samples lacks (empty when nothing), for a filter of ``k`` taps."""
    n_train = int(math.floor(train_fraction * n))
    out = []
    if n_train < k + 2 or n_train - 1 - cut_left < k + 1:
        out.append(f"the training part ({n_train} samples) must hold the filter ({k} taps), the masked start "
                   f"({cut_left}) and 2 more")
    if min(n_train - cut_right, n - pe_steps) - cut_left < k:
        out.append(f"after the masked edges ({cut_left} + {cut_right}) the training part keeps "
                   f"{n_train - cut_left - cut_right} deconvolved states, fewer than the {k} taps the decoder needs")
    if train_fraction < 1 and n - n_train < 2:
        out.append(f"the held-out part has {n - n_train} samples (at least 2 needed)")
    return out


def min_run_length(tr: float, config) -> tuple[int, int]:
    """Fewest samples a run sampled every ``tr`` seconds needs with ``config`` (a DsrConfig), and K."""
    k, cuts, tf, pe = _geometry(tr, config)
    start = max(k, int(math.ceil((k + cuts[0] + cuts[1] + 2) / tf)) - 4)
    n = start
    while _shortfalls(n, k, *cuts, tf, pe):
        n += 1
    return n, k


def _geometry(tr: float, config):
    from dsr.signal.deconvolution import edge_cuts
    from dsr.signal.filters import make_filter

    f = config.filter
    k = len(make_filter(f.kind, tr, tau=f.tau, indicator=f.indicator))
    return k, edge_cuts(k, f.cut_l, f.cut_r), float(config.train.train_fraction), int(config.eval.pe_steps)


def check_run_length(n: int, tr: float, config, path=None) -> None:
    """Raise InputError naming ``path`` when ``n`` samples at ``tr`` are too few for ``config``'s fit.

    The message says what falls short and the fewest samples that would do.
    """
    tr = check_tr(tr, config.filter, path)
    k, cuts, tf, pe = _geometry(tr, config)
    short = _shortfalls(int(n), k, *cuts, tf, pe)
    if short:
        needed, _ = min_run_length(tr, config)
        raise InputError(f"the run has {n} samples, too few to fit at TR {tr:g} s: {short[0]}; at least {needed} "
                         f"samples are needed (or a larger train.train_fraction, or a shorter filter)", path)
