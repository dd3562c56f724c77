"""Samples of the product's generators (dsr.analysis.sampling) and the process-noise options of dsr.analysis.noise."""
import dataclasses

import numpy as np
import pytest
import torch

from dsr.analysis.evaluate import evaluate
from dsr.analysis.noise import estimate_noise
from dsr.analysis.sampling import generate_samples, stack, to_data_units
from dsr.config import EvalConfig, load_config
from dsr.models.convssm import LATENT_NOISE, OBS_NOISE, ConvSSM, ConvSSMSpec
from dsr.signal.filters import spm_hrf
from dsr.training.data import prepare_subject
from linear_support import A_TRUE, TR, linear_model

EVAL = EvalConfig(n_rollouts=4, lyap_steps=50, lyap_transient=10, lyap_orbits=2, spectrum_smoothing=1.0,
                  generation="stochastic")
SIGMA_Z = np.array([0.3, 0.5, 0.2])


def _linear_data(model, T, obs_sd=0.0, seed=3):
    """(T, 3) observations of the noisy linear system through the model's filter, plus white noise."""
    g = torch.Generator().manual_seed(seed)
    K = model.kernel_size
    eps = torch.randn(1, 1, T + K + 198, 3, generator=g, dtype=torch.float64)
    model.params[LATENT_NOISE] = torch.as_tensor(SIGMA_Z)[None]
    Z = model.generate(torch.zeros(1, 1, 3, dtype=torch.float64), T + K + 199, noise=eps)[:, :, 200:]
    del model.params[LATENT_NOISE]
    x = model.observe(Z)[0, 0].numpy()  # (T, 3)
    return x + obs_sd * np.random.default_rng(seed).standard_normal(x.shape)


def _lively_model(h):
    spec = ConvSSMSpec("cshPLRNN", 3, 20, "identity", n_obs=3, tr=TR)
    model = ConvSSM.initialise(spec, torch.as_tensor(h), [5], dtype=torch.float64)
    model.params["latent.W1"] *= 8.0
    return model


@pytest.mark.parametrize("latent_noise", ["none", "targets"])
def test_first_sample_is_the_metric_engines_rollout(latent_noise):
    """n = the fit's length, n_samples = n_rollouts: sample 0 is what evaluate() returns (same draws)."""
    h = spm_hrf(TR)
    model = _lively_model(h)
    x = _linear_data(linear_model(h), 300, obs_sd=0.3)
    sd = prepare_subject(x, h, load_config("quick"))
    _, xg, zg = evaluate(model, [sd], dataclasses.replace(EVAL, latent_noise=latent_noise), [7])[0]
    assert (LATENT_NOISE in model.params) == (latent_noise == "targets")
    X, Z = generate_samples(model, [sd], len(sd.x), EVAL.n_rollouts, [7])
    np.testing.assert_allclose(X[0, 0], xg, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Z[0, 0], zg, rtol=1e-12, atol=1e-12)
    assert X.shape == (1, 4, 300, 3) and not np.allclose(X[0, 0], X[0, 1])
    D, _ = generate_samples(model, [sd], 50, 2, [7], stochastic=False)
    assert D.shape == (1, 2, 50, 3)
    assert not np.allclose(D[0, 0], X[0, 0, :50])  # the deterministic generator has no noise
    np.testing.assert_allclose(to_data_units(X, [sd])[0, 0], X[0, 0] * sd.std + sd.mean)


def test_process_noise_generator_has_the_residual_sd_of_a_known_linear_system():
    """No filter: targets are the data, the estimate is σ_z, and the generator's one-step residuals have SD σ_z."""
    model = linear_model(np.ones(1))
    x = _linear_data(model, 4000)
    sd = prepare_subject(x, np.ones(1), load_config("quick"), standardise=False)
    estimate_noise(model, [sd], latent="targets")
    np.testing.assert_allclose(model.params[LATENT_NOISE][0].numpy(), SIGMA_Z, rtol=0.05)
    _, Z = generate_samples(model, [sd], 2000, 4, [1])  # (1, 4, 2000, 3)
    resid = Z[0, :, 1:] - A_TRUE * Z[0, :, :-1]  # (4, 1999, 3) one-step residuals of the generated orbit
    np.testing.assert_allclose(resid.reshape(-1, 3).std(0), SIGMA_Z, rtol=0.05)
    _, Z_obs = generate_samples(model, [sd], 200, 2, [1], latent=False)  # observation noise only
    np.testing.assert_allclose(Z_obs[0, :, 1:], A_TRUE * Z_obs[0, :, :-1], atol=1e-12)


def test_matched_process_noise_gives_generations_the_datas_variance():
    """Through the HRF the residual estimate is biased; "matched" rescales σ_z to the data's generated variance."""
    h = spm_hrf(TR)
    model = linear_model(h)
    x = _linear_data(model, 3000, obs_sd=0.05)
    sd = prepare_subject(x, h, load_config("quick"))
    var = {}
    for mode in ("targets", "matched"):
        m = stack([model])
        estimate_noise(m, [sd], latent=mode)
        X, _ = generate_samples(m, [sd], 2000, 8, [2])  # (1, 8, 2000, 3) standardised units
        var[mode] = X[0].var(1).mean(0)  # (3,)
        if mode == "matched":
            assert m.params[LATENT_NOISE].shape == (1, 3) and OBS_NOISE in m.params
    train_var = sd.x[:sd.n_train].var(0)  # 1 by standardisation
    np.testing.assert_allclose(var["matched"], train_var, rtol=0.15)
    assert np.abs(var["matched"] - train_var).sum() < np.abs(var["targets"] - train_var).sum()


def test_latent_noise_options_are_checked():
    from dsr.errors import ConfigError

    assert EvalConfig(latent_noise="matched").latent_noise == "matched"
    with pytest.raises(ConfigError, match="eval.latent_noise"):
        EvalConfig(latent_noise="residual")
    model = linear_model(np.ones(1))
    sd = prepare_subject(_linear_data(model, 300), np.ones(1), load_config("quick"))
    with pytest.raises(ValueError, match="latent must be one of"):
        estimate_noise(model, [sd], latent="residual")
    with pytest.raises(ValueError, match="same parameter keys"):
        estimate_noise(model, [sd])
        stack([model, linear_model(np.ones(1))])
