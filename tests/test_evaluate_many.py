"""evaluate_many of a stacked convSSM equals evaluate of each fit alone (CPU)."""
import numpy as np
import pytest
import torch

from dsr.analysis.evaluate import evaluate
from dsr.analysis.evaluate_many import evaluate_many
from dsr.analysis.lyapunov import lyapunov_spectrum
from dsr.config import EvalConfig, load_config
from dsr.models.convssm import ConvSSM, ConvSSMSpec
from dsr.signal.filters import spm_hrf
from dsr.training.data import prepare_subject

TR = 2.0
EVAL = EvalConfig(n_rollouts=8, lyap_steps=60, lyap_transient=20, lyap_orbits=3)


def _data(n, T, seed):
    """Heavy-tailed AR(1) series (T, n): wide enough that the models' rollouts fall inside the binned volume."""
    rng = np.random.default_rng(seed)
    e = rng.standard_t(2, (T, n))  # (T, n)
    x = np.empty_like(e)
    x[0] = e[0]
    for t in range(1, T):
        x[t] = 0.8 * x[t - 1] + e[t]
    return x


def _stack(spec, lengths, seeds, diverge=None, **prep):
    h = spm_hrf(TR)
    cfg = load_config("quick")
    subs = [prepare_subject(_data(spec.n_obs, T, s), h, cfg,
                            **{k: v(T, s) for k, v in prep.items()}) for T, s in zip(lengths, seeds)]
    model = ConvSSM.initialise(spec, torch.as_tensor(h), seeds)
    with torch.no_grad():
        model.params["latent.W1"] *= 3.0  # livelier dynamics than the initialisation
        if diverge is not None:
            model.params["latent.A"][diverge] = 3.0
    return model, subs


def _same(a, b, key):
    if isinstance(a, list):
        assert len(a) == len(b), key
        for u, v in zip(a, b):
            _same(u, v, key)
    elif isinstance(a, float) and (np.isinf(a) or np.isnan(a)):
        assert (np.isnan(a) and np.isnan(b)) or a == b, key
    else:
        assert b == pytest.approx(a, rel=1e-6, abs=1e-9), key


def _check(model, subs, seeds, truths=None, chunk=None):
    got = evaluate_many(model, subs, EVAL, seeds, latent_truths=truths, chunk=chunk)
    for i in range(model.n_subjects):
        want = evaluate(model.subject(i), subs[i], EVAL, None if truths is None else truths[i], seed=seeds[i])
        assert set(got[i][0]) == set(want[0])
        for key, v in want[0].items():
            _same(v, got[i][0][key], key)
        np.testing.assert_allclose(got[i][1], want[1], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(got[i][2], want[2], rtol=1e-6, atol=1e-9)
    return got


def test_gmm_with_diverging_fit_and_latent_truth():
    spec = ConvSSMSpec("cshPLRNN", 5, 20, "identity", n_obs=5, tr=TR)
    seeds = [3, 4, 5]
    model, subs = _stack(spec, [200] * 3, seeds, diverge=1)
    truths = [_data(4, 190, s + 10) for s in seeds]
    got = _check(model, subs, seeds, truths, chunk=2)  # chunks [0, 1], [2]
    assert got[1][0]["dstsp"] == float("inf") and got[1][0]["diverged_rollouts"] == 1.0
    assert np.isfinite(got[0][0]["dstsp"]) and np.isfinite(got[0][0]["dstsp_latent"])
    assert np.isfinite(got[0][0]["dstsp_latent_units"])


def test_latent_units_see_scale_zscored_does_not():
    """A truth 5× larger: the z-scored latent D_stsp is unchanged, the one in data units gets worse."""
    spec = ConvSSMSpec("cshPLRNN", 3, 20, "identity", n_obs=3, tr=TR)
    model, subs = _stack(spec, [200], [1])
    truth = model.generate(torch.as_tensor(subs[0].d_full[40], dtype=torch.float32)[None, None], 200)[0, 0]
    truth = truth.double().numpy() * subs[0].std + subs[0].mean  # (200, 3) the model's own orbit, data units
    one = model.subject(0)
    near = evaluate(one, subs[0], EVAL, truth, seed=1)[0]
    far = evaluate(one, subs[0], EVAL, 5.0 * truth, seed=1)[0]
    assert far["dstsp_latent"] == pytest.approx(near["dstsp_latent"], rel=1e-9)
    assert far["dstsp_latent_units"] > near["dstsp_latent_units"] + 1.0


def test_bins_with_unequal_lengths_and_latent_truth():
    spec = ConvSSMSpec("cshPLRNN", 4, 20, "identity", n_obs=3, tr=TR)
    seeds = [0, 1, 2]
    model, subs = _stack(spec, [200, 230, 200], seeds)
    truths = [_data(3, 240, s + 20) for s in seeds]  # longer than the rollout: generated further
    _check(model, subs, seeds, truths)


def test_regressors_inputs_and_latent_truth():
    spec = ConvSSMSpec("cshPLRNN", 5, 20, "regressor", n_obs=4, n_regressors=2, n_inputs=2, tr=TR)
    seeds = [7, 8]
    rand = lambda T, s: np.random.default_rng(s + 100).standard_normal((T, 2))  # noqa: E731
    model, subs = _stack(spec, [200, 200], seeds, nuisance=rand, inputs=rand)
    got = _check(model, subs, seeds, [_data(2, 150, s) for s in seeds])  # latent rollouts without inputs
    assert "dstsp_latent" in got[0][0] and "dstsp_latent_units" not in got[0][0]  # latents not in data units


def test_gram_schmidt_lyapunov_matches_lapack_qr():
    spec = ConvSSMSpec("cshPLRNN", 5, 20, "identity", n_obs=5, tr=TR)
    model = ConvSSM.initialise(spec, torch.as_tensor(spm_hrf(TR)), [0, 1]).to(dtype=torch.float64)
    model.params["latent.W1"] *= 3.0
    z0 = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def step(z):
        return model.step(z.view(2, 4, 5)).reshape(8, 5)

    def jac(z):
        return model.jacobian(z.view(2, 4, 5)).reshape(8, 5, 5)

    want = lyapunov_spectrum(step, jac, z0.reshape(8, 5), n_steps=200, transient=20, qr="lapack")
    got = lyapunov_spectrum(step, jac, z0.reshape(8, 5), n_steps=200, transient=20, qr="gram_schmidt")
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_equals_cpu_for_a_contracting_model_in_float64():
    """The GPU path (torch GMM, D_H, PE windows, Gram–Schmidt Lyapunov) equals the CPU path.

    A contracting float64 model keeps rollouts of the two devices together, so every metric must agree
    to rounding; on a chaotic float32 model they would drift apart after some steps.
    """
    spec = ConvSSMSpec("cshPLRNN", 5, 20, "identity", n_obs=5, tr=TR)
    seeds = [3, 4, 5]
    model, subs = _stack(spec, [200, 230, 200], seeds)
    model = model.to(dtype=torch.float64)
    with torch.no_grad():
        model.params["latent.W1"] /= 3.0  # undo _stack's livelier dynamics: a contracting map
    truths = [_data(4, 190, s + 10) for s in seeds]
    want = evaluate_many(model, subs, EVAL, seeds, latent_truths=truths)
    got = evaluate_many(model.to("cuda"), subs, EVAL, seeds, latent_truths=truths)
    for g, w in zip(got, want):
        assert set(g[0]) == set(w[0])
        for key, v in w[0].items():
            _same(v, g[0][key], key)
        np.testing.assert_allclose(g[1], w[1], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(g[2], w[2], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("n_freq", [5, 80, 81, 82, 161, 4001])
@pytest.mark.parametrize("smoothing", [20.0, 0.7])
def test_spectrum_smoothing_equals_scipy_reflect(n_freq, smoothing):
    """The padded-convolution smoothing equals scipy's reflect-mode filter, also below the kernel radius."""
    from scipy.ndimage import gaussian_filter1d

    from dsr.analysis.evaluate_many import _smooth

    ps = np.random.default_rng(n_freq).random((2, n_freq, 3))  # (B, F, N)
    want = gaussian_filter1d(ps, smoothing, axis=1, mode="reflect", truncate=4.0)
    np.testing.assert_allclose(_smooth(torch.as_tensor(ps), smoothing).numpy(), want, rtol=1e-10, atol=1e-13)
