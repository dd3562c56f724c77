"""Full-covariance noise of the stochastic generator (eval.obs_noise_covariance, eval.latent_noise_covariance) and
its moment calibration (eval.output_calibration)."""
import dataclasses

import numpy as np
import pytest
import torch

from dsr.analysis.calibration import calibrate_output
from dsr.analysis.evaluate import evaluate
from dsr.analysis.noise import cholesky_factor, estimate_noise
from dsr.analysis.sampling import generate_samples, stack
from dsr.config import EvalConfig, load_config
from dsr.errors import ConfigError
from dsr.models.convssm import (CALIB_MAP, CALIB_SHIFT, LATENT_NOISE, LATENT_NOISE_CHOL, OBS_NOISE_CHOL, ConvSSM,
                                ConvSSMSpec)
from dsr.signal.filters import spm_hrf
from dsr.training.data import prepare_subject
from linear_support import A_TRUE, TR, linear_model

Q_TRUE = np.array([[0.09, 0.10, 0.05],
                   [0.10, 0.25, 0.08],
                   [0.05, 0.08, 0.04]])  # correlated process noise (correlations 0.67, 0.83, 0.8)
EVAL = EvalConfig(n_rollouts=4, lyap_steps=50, lyap_transient=10, lyap_orbits=2, spectrum_smoothing=1.0,
                  generation="stochastic")


def _correlated_data(model, T, obs_sd=0.0, seed=3):
    """(T, 3) observations of the linear system driven by N(0, Q_TRUE), through the model's filter, plus white noise."""
    g = torch.Generator().manual_seed(seed)
    K = model.kernel_size
    eps = torch.randn(1, 1, T + K + 198, 3, generator=g, dtype=torch.float64)
    L = np.linalg.cholesky(Q_TRUE)
    model.params[LATENT_NOISE_CHOL] = torch.as_tensor(L)[None]
    model.params[LATENT_NOISE] = torch.as_tensor(np.sqrt(np.diag(Q_TRUE)))[None]
    Z = model.generate(torch.zeros(1, 1, 3, dtype=torch.float64), T + K + 199, noise=eps)[:, :, 200:]
    del model.params[LATENT_NOISE_CHOL], model.params[LATENT_NOISE]
    x = model.observe(Z)[0, 0].numpy()  # (T, 3)
    return x + obs_sd * np.random.default_rng(seed).standard_normal(x.shape)


def test_full_noise_factors_recover_a_known_covariance():
    """No filter: the targets are the data, so the teacher residuals' covariance is Q itself."""
    model = linear_model(np.ones(1))
    sd = prepare_subject(_correlated_data(model, 4000), np.ones(1), load_config("quick"), standardise=False)
    estimate_noise(model, [sd], latent="targets", obs_covariance="full", latent_covariance="full")
    L = model.params[LATENT_NOISE_CHOL][0].numpy()
    assert L.shape == (3, 3) and model.params[OBS_NOISE_CHOL].shape == (1, 3, 3)
    np.testing.assert_allclose(L, np.tril(L))  # lower triangular, positive diagonal: Q = L Lᵀ positive definite
    assert (np.diag(L) > 0).all() and (np.linalg.eigvalsh(L @ L.T) > 0).all()
    np.testing.assert_allclose(L @ L.T, Q_TRUE, atol=0.01)
    np.testing.assert_allclose(model.params[LATENT_NOISE][0].numpy(), np.sqrt(np.diag(L @ L.T)))
    _, Z = generate_samples(model, [sd], 2000, 4, [1])  # (1, 4, 2000, 3)
    resid = (Z[0, :, 1:] - A_TRUE * Z[0, :, :-1]).reshape(-1, 3)  # one-step residuals of the generated orbit
    np.testing.assert_allclose(np.cov(resid.T), Q_TRUE, atol=0.01)
    estimate_noise(model, [sd], latent="targets")  # a diagonal re-estimate drops the factors
    assert LATENT_NOISE_CHOL not in model.params and OBS_NOISE_CHOL not in model.params


def test_cholesky_factor_of_singular_and_empty_residuals():
    r = np.random.default_rng(0).standard_normal((50, 1)) @ np.ones((1, 3))  # rank 1
    L = cholesky_factor(r, 4)
    assert L.shape == (4, 4) and np.isfinite(L).all() and (L[3] == 0).all() and (L[:, 3] == 0).all()
    np.testing.assert_allclose(L[:3, :3] @ L[:3, :3].T, r.T @ r / 50, atol=1e-6)
    assert (cholesky_factor(np.zeros((0, 3))) == 0).all()


def test_full_noise_is_saved_and_loaded_with_the_model(tmp_path):
    h = spm_hrf(TR)
    model = linear_model(h)
    sd = prepare_subject(_correlated_data(model, 600, obs_sd=0.1), h, load_config("quick"))
    estimate_noise(model, [sd], latent="matched", obs_covariance="full", latent_covariance="full")
    calibrate_output(model, [sd], [4], n_samples=4)
    model.save(tmp_path / "m.safetensors")
    back = ConvSSM.load(tmp_path / "m.safetensors")
    assert set(back.params) == set(model.params) >= {OBS_NOISE_CHOL, LATENT_NOISE_CHOL, CALIB_MAP, CALIB_SHIFT}
    for k in model.params:
        torch.testing.assert_close(back.params[k], model.params[k])
    np.testing.assert_array_equal(generate_samples(back, [sd], 100, 2, [3])[0],
                                  generate_samples(model, [sd], 100, 2, [3])[0])


def test_metric_engine_uses_the_full_noise():
    """evaluate() with the full-covariance options estimates the factors; its rollout is generate_samples' sample 0."""
    h = spm_hrf(TR)
    model = linear_model(h)
    sd = prepare_subject(_correlated_data(model, 300, obs_sd=0.2), h, load_config("quick"))
    cfg = dataclasses.replace(EVAL, latent_noise="targets", obs_noise_covariance="full", latent_noise_covariance="full")
    _, xg, _ = evaluate(model, [sd], cfg, [7])[0]
    assert {OBS_NOISE_CHOL, LATENT_NOISE_CHOL} <= set(model.params)
    X, _ = generate_samples(model, [sd], len(sd.x), cfg.n_rollouts, [7])
    np.testing.assert_allclose(X[0, 0], xg, rtol=1e-12, atol=1e-12)
    diag = stack([model])
    estimate_noise(diag, [sd], latent="targets")
    assert not np.allclose(generate_samples(diag, [sd], len(sd.x), 4, [7])[0][0, 0], xg)


def test_covariance_matching_gives_generations_the_training_datas_covariance():
    """Through the HRF with strong observation noise, diagonal noise loses the cross-region correlations; the
    full, covariance-matched generator reproduces the training part's covariance."""
    h = spm_hrf(TR)
    model = linear_model(h)
    x = _correlated_data(model, 3000)
    x = x + np.random.default_rng(5).standard_normal(x.shape) * x.std(0)  # white noise as strong as the signal
    sd = prepare_subject(x, h, load_config("quick"))
    target = np.cov(sd.x[:sd.n_train].T, bias=True)  # (3, 3) standardised units
    err = {}
    for name, kw in (("diagonal", {}), ("full", dict(obs_covariance="full", latent_covariance="full"))):
        m = stack([model])
        estimate_noise(m, [sd], latent="matched", **kw)
        X, _ = generate_samples(m, [sd], 2000, 8, [2])  # (1, 8, 2000, 3) standardised units
        err[name] = np.abs(np.cov(X[0].reshape(-1, 3).T, bias=True) - target).max()
    assert err["full"] < 0.1 < err["diagonal"]


def _lively_model(h):
    """A nonlinear 3-latent cshPLRNN (irregular bounded orbit) whose moments are not the data's."""
    spec = ConvSSMSpec("cshPLRNN", 3, 20, "identity", n_obs=3, tr=TR)
    model = ConvSSM.initialise(spec, torch.as_tensor(h), [5], dtype=torch.float64)
    model.params["latent.W1"] *= 8.0
    return model


def test_moment_calibration_gives_generations_the_training_parts_mean_and_covariance():
    h = spm_hrf(TR)
    x = _correlated_data(linear_model(h), 2000, obs_sd=0.2)
    sd = prepare_subject(x, h, load_config("quick"))
    model = _lively_model(h)  # a wrong model of these data: its generations have other moments
    estimate_noise(model, [sd], latent="targets", obs_covariance="full", latent_covariance="full")
    mu_d, C_d = sd.x[:sd.n_train].mean(0), np.cov(sd.x[:sd.n_train].T, bias=True)
    err = {}
    for name in ("raw", "calibrated"):
        if name == "calibrated":
            calibrate_output(model, [sd], [0])
            assert model.params[CALIB_MAP].shape == (1, 3, 3) and model.params[CALIB_SHIFT].shape == (1, 3)
        X = generate_samples(model, [sd], 1500, 8, [9])[0][0].reshape(-1, 3)  # other draws than the calibration's
        err[name] = (np.abs(X.mean(0) - mu_d).max(), np.abs(np.cov(X.T, bias=True) - C_d).max())
    assert err["calibrated"][0] < 0.1 and err["calibrated"][1] < 0.1
    assert err["raw"][0] + err["raw"][1] > 3 * (err["calibrated"][0] + err["calibrated"][1])
    D, _ = generate_samples(model, [sd], 100, 2, [9], stochastic=False)  # the deterministic generator: not calibrated
    Z0 = generate_samples(model, [sd], 100, 2, [9], stochastic=False)[1]
    np.testing.assert_allclose(D, model.observe(torch.as_tensor(Z0)).numpy(), atol=1e-12)
    cfg = dataclasses.replace(EVAL, latent_noise="targets", obs_noise_covariance="full",
                              latent_noise_covariance="full", output_calibration="moments")
    fresh = _lively_model(h)
    _, xg, _ = evaluate(fresh, [sd], cfg, [3])[0]  # the metric engine calibrates with the fit's seed
    assert CALIB_MAP in fresh.params
    np.testing.assert_allclose(generate_samples(fresh, [sd], len(sd.x), cfg.n_rollouts, [3])[0][0, 0], xg, atol=1e-12)


def test_noise_covariance_options_are_checked(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[eval]\nlatent_noise_covariance = "dense"\n')
    with pytest.raises(ConfigError, match="bad.toml: eval.latent_noise_covariance must be diagonal or full"):
        load_config(str(bad))
    assert EvalConfig(obs_noise_covariance="full", latent_noise_covariance="full").obs_noise_covariance == "full"
    assert load_config("quick").eval.latent_noise_covariance == "diagonal"
    for key in ("obs_noise_covariance", "latent_noise_covariance"):
        with pytest.raises(ConfigError, match=f"eval.{key} must be diagonal or full"):
            EvalConfig(**{key: "dense"})
    with pytest.raises(ConfigError, match="eval.output_calibration must be none or moments"):
        EvalConfig(output_calibration="affine")
    model = linear_model(np.ones(1))
    sd = prepare_subject(_correlated_data(model, 300), np.ones(1), load_config("quick"))
    with pytest.raises(ValueError, match="obs_covariance must be one of"):
        estimate_noise(model, [sd], obs_covariance="dense")
    with pytest.raises(ValueError, match="estimate it first"):
        calibrate_output(model, [sd])
