"""Preset values that follow the reference code's evaluation settings."""
import pytest

from dsr.config import load_config


@pytest.mark.parametrize("preset", ["rest_fmri", "aln", "paper"])
def test_fmri_presets_smooth_spectra_with_sigma_one(preset):
    assert load_config(preset).eval.spectrum_smoothing == 1.0


def test_lorenz_preset_keeps_sigma_twenty():
    assert load_config("lorenz63").eval.spectrum_smoothing == 20.0


def test_aln_preset_trains_3000_epochs_without_selection():
    """The ALN preset keeps the last epoch's parameters after 3000 epochs (session 10's latent-recovery
    comparison; benchmarks/RESULTS.md)."""
    cfg = load_config("aln")
    assert cfg.train.epochs == 3000 and cfg.train.select_every == 0
