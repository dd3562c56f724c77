"""The stochastic generator: noise estimated from training residuals, generation with it, reproducibility."""
import dataclasses

import numpy as np
import pytest
import torch

from dsr.analysis.evaluate import evaluate
from dsr.analysis.metrics_record import FitMetrics, describe
from dsr.analysis.noise import estimate_noise
from dsr.config import EvalConfig, load_config
from dsr.errors import ConfigError
from dsr.models.convssm import LATENT_NOISE, OBS_NOISE, ConvSSM, ConvSSMSpec
from dsr.signal.filters import spm_hrf
from dsr.training.data import prepare_subject

TR = 2.0
EVAL = EvalConfig(n_rollouts=4, lyap_steps=50, lyap_transient=10, lyap_orbits=2, spectrum_smoothing=1.0)


def _lively_model(h):
    """A 3-latent cshPLRNN with an irregular bounded orbit (lag-1 autocorrelation ≈ 0.9)."""
    spec = ConvSSMSpec("cshPLRNN", 3, 20, "identity", n_obs=3, tr=TR)
    model = ConvSSM.initialise(spec, torch.as_tensor(h), [5], dtype=torch.float64)
    model.params["latent.W1"] *= 8.0
    return model


def _noisy_data(model, T, rel_noise, seed=2):
    """Observations of the model's orbit (T, 3) plus white noise of SD rel_noise × the signal's SD; and that SD."""
    z0 = torch.randn(1, 1, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    Z = model.generate(z0, T + model.kernel_size - 1 + 500)[:, :, 500:]  # past the transient
    clean = model.observe(Z)[0, 0].numpy()  # (T, 3)
    sigma = np.asarray(rel_noise) * clean.std(0)  # (3,)
    return clean + np.random.default_rng(seed).standard_normal(clean.shape) * sigma, sigma


def _lag1(a):
    return np.array([np.corrcoef(a[1:, i], a[:-1, i])[0, 1] for i in range(a.shape[1])])


def test_observation_noise_estimate_recovers_a_known_level():
    h = spm_hrf(TR)
    model = _lively_model(h)
    x, sigma = _noisy_data(model, 800, [0.2, 0.5, 1.0])
    sd = prepare_subject(x, h, load_config("quick"), standardise=False)
    estimate_noise(model, [sd])
    est = model.params[OBS_NOISE][0].numpy()  # (3,)
    np.testing.assert_allclose(est, sigma, rtol=0.15)
    assert LATENT_NOISE not in model.params


def test_process_noise_estimate_recovers_a_known_level():
    """Without a filter the targets are the data: one-step residuals are the process noise itself."""
    model = _lively_model(np.ones(1))
    sigma_z = np.array([0.05, 0.1, 0.2])
    T = 3000
    eps = torch.randn(1, 1, T - 1, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    model.params[LATENT_NOISE] = torch.as_tensor(sigma_z)[None]
    z0 = torch.zeros(1, 1, 3, dtype=torch.float64)
    x = model.generate(z0, T, noise=eps)[0, 0].numpy()  # (T, 3) noisy orbit
    del model.params[LATENT_NOISE]
    sd = prepare_subject(x, np.ones(1), load_config("quick"), standardise=False)
    estimate_noise(model, [sd], latent=True)
    np.testing.assert_allclose(model.params[LATENT_NOISE][0].numpy(), sigma_z, rtol=0.05)
    np.testing.assert_allclose(model.params[OBS_NOISE][0].numpy(), 0.0, atol=1e-12)


def test_stochastic_generation_matches_noisy_data_better_than_deterministic():
    """Data of a known noisy model: the stochastic rollout's lag-1 autocorrelation and SD are closer to the data's."""
    h = spm_hrf(TR)
    model = _lively_model(h)
    x, _ = _noisy_data(model, 800, [0.2, 0.5, 1.0])
    sd = prepare_subject(x, h, load_config("quick"), standardise=False)
    err = {}
    for gen in ("deterministic", "stochastic"):
        rec, xg, _ = evaluate(model, [sd], dataclasses.replace(EVAL, generation=gen), [0])[0]
        err[gen] = (np.abs(_lag1(xg) - _lag1(x)).sum(), np.abs(xg.std(0) - x.std(0)).sum(), rec.dh)
    assert err["stochastic"][0] < 0.5 * err["deterministic"][0]
    assert err["stochastic"][1] < 0.5 * err["deterministic"][1]
    assert err["stochastic"][2] < err["deterministic"][2]  # D_H of the configured generator


def test_same_seed_same_output():
    h = spm_hrf(TR)
    model = _lively_model(h)
    x, _ = _noisy_data(model, 300, [0.5, 0.5, 0.5])
    sd = prepare_subject(x, h, load_config("quick"))
    cfg = dataclasses.replace(EVAL, generation="stochastic")
    a = evaluate(model, [sd], cfg, [4])[0]
    b = evaluate(model, [sd], cfg, [4])[0]
    c = evaluate(model, [sd], cfg, [5])[0]
    assert a[0].to_json() == b[0].to_json()
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.allclose(a[1], c[1])


def test_record_round_trips_and_describes_every_key():
    h = spm_hrf(TR)
    model = _lively_model(h)
    x, _ = _noisy_data(model, 300, [0.5, 0.5, 0.5])
    sd = prepare_subject(x, h, load_config("quick"))
    truth = x[:, :2]
    rec = evaluate(model, [sd], dataclasses.replace(EVAL, generation="stochastic"), [0], [truth])[0][0]
    data = dict(rec.to_json(), status="ok", fit_seconds=1.5)
    back = FitMetrics.from_json(data)
    assert back.to_json() == data and back.extra == {"status": "ok", "fit_seconds": 1.5}
    assert back.dstsp_test_median == rec.dstsp_test_median and back.deterministic == rec.deterministic
    assert set(rec.to_json()) <= set(describe())
    assert {"dstsp_test_det", "dh_test_det", "dstsp_latent_units_det", "obs_noise_sd"} <= set(rec.to_json())
    assert rec.score("dstsp_test_det") == rec.deterministic.dstsp_test and np.isnan(rec.score("nothing"))


def test_generation_config():
    with pytest.raises(ConfigError):
        EvalConfig(generation="noisy")
    for preset in ("paper", "rest_fmri", "aln", "lorenz63"):
        assert load_config(preset).eval.generation == "stochastic"
    assert load_config("quick").eval.generation == "deterministic"


@pytest.mark.parametrize("observation", ["identity", "regressor"])
def test_stacked_noise_estimate_equals_one_fit_at_a_time(observation):
    """σ_obs and σ_z of a stack (fits of two lengths, nuisance regressors and inputs) equal the residuals of
    each fit alone (:func:`observation_residuals`, :func:`latent_residuals`)."""
    from dsr.analysis.noise import latent_residuals, observation_residuals

    h = spm_hrf(TR)
    rng = np.random.default_rng(4)
    P = 2 if observation == "regressor" else 0
    spec = ConvSSMSpec("cshPLRNN", 5, 20, observation, n_obs=4, n_regressors=P, n_inputs=1, tr=TR)
    lengths, seeds = [200, 230, 200], [1, 2, 3]
    subs = [prepare_subject(rng.standard_normal((T, 4)), h, load_config("quick"),
                            nuisance=rng.standard_normal((T, 2)) if P else None, inputs=rng.standard_normal((T, 1)))
            for T in lengths]
    model = ConvSSM.initialise(spec, torch.as_tensor(h), seeds, dtype=torch.float64)
    estimate_noise(model, subs, latent="targets")
    for i, sd in enumerate(subs):
        one = model.subject(i)
        want_obs = np.sqrt(np.mean(observation_residuals(one, sd) ** 2, axis=0))
        res_z = latent_residuals(one, sd)
        want_lat = np.zeros(5)
        want_lat[:res_z.shape[1]] = np.sqrt(np.mean(res_z ** 2, axis=0))
        np.testing.assert_allclose(model.params[OBS_NOISE][i].numpy(), want_obs, rtol=1e-12)
        np.testing.assert_allclose(model.params[LATENT_NOISE][i].numpy(), want_lat, rtol=1e-12)
