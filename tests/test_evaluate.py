"""The metric engine (dsr.analysis.evaluate) equals a one-fit evaluation built from the ``*_ref`` twins.

The reference path below scores each fit alone with the NumPy twins (dstsp_ref, dh_ref,
prediction_errors_ref) and LAPACK-QR Lyapunov exponents; the engine scores the whole stack in
batched float64 torch. Models are float64 so both must agree to 1e-10.
"""
import dataclasses

import numpy as np
import pytest
import torch

from dsr.analysis.dstsp import dstsp_ref
from dsr.analysis.evaluate import (column_scale, evaluate, generation_noise, initial_states, latent_identified,
                                   zscore)
from dsr.analysis.lyapunov import lyapunov_spectrum
from dsr.analysis.prediction import clean_observations, prediction_errors_ref
from dsr.analysis.spectrum import dh_ref
from dsr.config import EvalConfig, load_config
from dsr.models.convssm import LATENT_NOISE, ConvSSM, ConvSSMSpec
from dsr.signal.filters import spm_hrf
from dsr.training.data import prepare_subject

TR = 2.0
EVAL = EvalConfig(n_rollouts=8, lyap_steps=60, lyap_transient=20, lyap_orbits=3, spectrum_smoothing=2.0)


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
    model = ConvSSM.initialise(spec, torch.as_tensor(h), seeds, dtype=torch.float64)
    with torch.no_grad():
        model.params["latent.W1"] *= 3.0  # livelier dynamics than the initialisation
        if diverge is not None:
            model.params["latent.A"][diverge] = 1e3  # overflows float64 within 110 steps
    return model, subs


def _summary(values, name, out):
    v = np.asarray(values, dtype=float)
    fin = v[np.isfinite(v)]
    out[name] = float(fin.mean()) if fin.size else float("inf")
    out[f"{name}_median"] = float(np.median(v))


def _rollout_ref(x_obs, X, Zl, sd, truth, model, cfg, seed):
    """RolloutMetrics of one fit from the NumPy twins: X (R, T, N), Zl (R, t_len, n_lat) or None."""
    kw = dict(n_bins=cfg.dstsp_bins, scaling=cfg.dstsp_scaling, bins_max_dims=cfg.bins_max_dims, seed=seed)
    out = {}
    for suffix, ref in (("", x_obs), ("_train", x_obs[:sd.n_train]), ("_test", x_obs[sd.n_train:])):
        _summary([dstsp_ref(ref, xg, **kw) for xg in X], f"dstsp{suffix}", out)
        _summary([dh_ref(ref, xg[:len(ref)], cfg.spectrum_smoothing) for xg in X], f"dh{suffix}", out)
    out["diverged_rollouts"] = float(np.mean(~np.isfinite(X).all(axis=(1, 2))))
    if truth is not None:
        t_z = zscore(truth)
        gz = [zscore(z) if np.isfinite(z).all() else np.full_like(z, np.nan) for z in Zl]
        _summary([dstsp_ref(t_z, z, **kw) for z in gz], "dstsp_latent", out)
        _summary([dh_ref(t_z, z, cfg.spectrum_smoothing) for z in gz], "dh_latent", out)
        if latent_identified(model, truth.shape[1]):
            n = truth.shape[1]
            mu, sd_t = column_scale(truth)
            _summary([dstsp_ref(t_z, (z * sd.std[:n] + sd.mean[:n] - mu) / sd_t, **kw) for z in Zl],
                     "dstsp_latent_units", out)
    return out


def evaluate_ref(model, sd, cfg, truth, seed):
    """One fit (S = 1) scored with the twins: the record's JSON dict, x_gen, z_gen."""
    gen = torch.Generator().manual_seed(seed)
    R, K, (T, N), M = cfg.n_rollouts, model.kernel_size, sd.x.shape, model.spec.latent_dim
    x_obs = clean_observations(model, sd)
    z0 = initial_states(model, sd, R, cfg.perturbation, gen)  # (1, R, M)
    inputs = None
    if sd.s is not None:
        s = np.zeros((T + K - 1, sd.s.shape[1]))
        s[:min(len(s), len(sd.s))] = sd.s[:len(s)]
        inputs = torch.as_tensor(s)[None, None].expand(1, R, -1, -1)
    t_len = 0 if truth is None else len(truth)
    stochastic = cfg.generation == "stochastic"
    lat = stochastic and LATENT_NOISE in model.params
    eps_z, eps_x = generation_noise(seed, R, max(T + K - 1, t_len), T, M, N, lat)
    eps_z = None if eps_z is None else eps_z[None]

    def run(noise):
        Z = model.generate(z0, T + K - 1, inputs, noise)  # (1, R, T+K-1, M)
        Zl = None if truth is None else model.generate(z0, t_len, None, noise)[0, :, :, :truth.shape[1]].numpy()
        return Z, model.observe(Z)[0].numpy(), Zl

    Z, X, Zl = run(None)
    det = _rollout_ref(x_obs, X, Zl, sd, truth, model, cfg, seed)
    main = det
    if stochastic:
        if lat:
            Z, X, Zl = run(eps_z)
        X = X + model.params["noise.obs"][0].numpy() * eps_x.numpy()
        main = _rollout_ref(x_obs, X, Zl, sd, truth, model, cfg, seed)
    out = dict(main, generation=cfg.generation)
    if stochastic:
        out.update({f"{k}_det": v for k, v in det.items()})
        out["obs_noise_sd"] = model.params["noise.obs"][0].tolist()
        if lat:
            out["latent_noise_sd"] = model.params[LATENT_NOISE][0].tolist()
    out["pe_train"], out["pe_test"] = prediction_errors_ref(model, sd, cfg.pe_steps)
    out["pe_steps"] = cfg.pe_steps
    z0l = initial_states(model, sd, cfg.lyap_orbits, 0.1, gen)[0]  # (O, M)
    spec = lyapunov_spectrum(lambda z: model.step(z[None])[0], lambda z: model.jacobian(z[None])[0], z0l,
                             n_steps=cfg.lyap_steps, transient=cfg.lyap_transient, qr="lapack").numpy()
    spec = np.nanmedian(spec, axis=0) if np.isfinite(spec).any() else np.full(M, np.nan)
    out.update(lyapunov_max=float(spec[0]), lyapunov_max_per_second=float(spec[0] / model.spec.tr),
               lyapunov_spectrum=[float(v) for v in spec])
    return out, X[0], Z[0, 0].numpy()


def _same(a, b, key, tol=1e-10):
    if isinstance(a, list):
        assert len(a) == len(b), key
        for u, v in zip(a, b):
            _same(u, v, key, tol)
    elif isinstance(a, str):
        assert a == b, key
    elif isinstance(a, float) and (np.isinf(a) or np.isnan(a)):
        assert (np.isnan(a) and np.isnan(b)) or a == b, key
    else:
        assert b == pytest.approx(a, rel=tol, abs=tol), key


def _check(model, subs, seeds, truths=None, cfg=EVAL, chunk=None):
    got = evaluate(model, subs, cfg, seeds, latent_truths=truths, chunk=chunk)
    for i in range(model.n_subjects):
        want = evaluate_ref(model.subject(i), subs[i], cfg, None if truths is None else truths[i], seeds[i])
        have = got[i][0].to_json()
        assert set(have) == set(want[0])
        for key, v in want[0].items():
            _same(v, have[key], key)
        np.testing.assert_allclose(got[i][1], want[1], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(got[i][2], want[2], rtol=1e-10, atol=1e-10)
    return got


def test_gmm_with_diverging_fit_unequal_lengths_and_latent_truth():
    spec = ConvSSMSpec("cshPLRNN", 6, 20, "identity", n_obs=6, tr=TR)
    seeds = [3, 4, 5]
    model, subs = _stack(spec, [200, 230, 200], seeds, diverge=1)
    truths = [_data(4, 190, s + 10) for s in seeds]
    with np.errstate(over="ignore", invalid="ignore"):  # the reference z-scores the exploding rollouts
        got = _check(model, subs, seeds, truths, chunk=1)
    assert got[1][0].dstsp == float("inf") and got[1][0].diverged_rollouts == 1.0
    assert np.isfinite(got[0][0].dstsp) and np.isfinite(got[0][0].dstsp_latent)
    assert np.isfinite(got[0][0].dstsp_latent_units)


def test_single_fit():
    spec = ConvSSMSpec("cshPLRNN", 7, 20, "identity", n_obs=6, tr=TR)
    model, subs = _stack(spec, [210], [9])
    _check(model, subs, [9])


def test_latent_units_see_scale_zscored_does_not():
    """A truth 5× larger: the z-scored latent D_stsp is unchanged, the one in data units gets worse."""
    spec = ConvSSMSpec("cshPLRNN", 3, 20, "identity", n_obs=3, tr=TR)
    model, subs = _stack(spec, [200], [1])
    truth = model.generate(torch.as_tensor(subs[0].d_full[40])[None, None], 200)[0, 0]
    truth = truth.numpy() * subs[0].std + subs[0].mean  # (200, 3) the model's own orbit, data units
    near = evaluate(model, subs, EVAL, [1], [truth])[0][0]
    far = evaluate(model, subs, EVAL, [1], [5.0 * truth])[0][0]
    assert far.dstsp_latent == pytest.approx(near.dstsp_latent, rel=1e-9)
    assert far.dstsp_latent_units > near.dstsp_latent_units + 1.0


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
    assert got[0][0].dstsp_latent is not None and got[0][0].dstsp_latent_units is None  # latents not in data units


@pytest.mark.parametrize("latent_noise", ["none", "targets"])
def test_stochastic_generation_equals_reference(latent_noise):
    """Stochastic rollouts (estimated noise, optional process noise) and their _det copies equal the twins."""
    spec = ConvSSMSpec("cshPLRNN", 4, 20, "regressor", n_obs=4, n_regressors=1, tr=TR)
    seeds = [11, 12]
    rand = lambda T, s: np.random.default_rng(s).standard_normal((T, 1))  # noqa: E731
    model, subs = _stack(spec, [200, 220], seeds, nuisance=rand)
    cfg = dataclasses.replace(EVAL, generation="stochastic", latent_noise=latent_noise)
    got = _check(model, subs, seeds, [_data(3, 150, s) for s in seeds], cfg=cfg)
    assert "noise.obs" in model.params and model.params["noise.obs"].shape == (2, 4)
    assert (LATENT_NOISE in model.params) == (latent_noise == "targets")
    rec = got[0][0]
    assert rec.deterministic is not None and rec.to_json()["dstsp_test_det"] == rec.deterministic.dstsp_test
    assert rec.dstsp_test != rec.deterministic.dstsp_test


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("generation", ["deterministic", "stochastic"])
def test_cuda_equals_cpu_for_a_contracting_model_in_float64(generation):
    """The GPU path (torch estimators, PE windows, Gram–Schmidt Lyapunov) equals the CPU path.

    A contracting float64 model keeps rollouts of the two devices together, so every metric must agree
    to rounding; on a chaotic float32 model they would drift apart after some steps.
    """
    cfg = dataclasses.replace(EVAL, generation=generation)
    for n in (3, 6):  # binned and GMM D_stsp
        spec = ConvSSMSpec("cshPLRNN", n, 20, "identity", n_obs=n, tr=TR)
        seeds = [3, 4, 5]
        model, subs = _stack(spec, [200, 230, 200], seeds)
        with torch.no_grad():
            model.params["latent.W1"] /= 3.0  # undo _stack's livelier dynamics: a contracting map
        truths = [_data(n - 1, 190, s + 10) for s in seeds]
        want = evaluate(model, subs, cfg, seeds, latent_truths=truths)
        got = evaluate(model.to("cuda"), subs, cfg, seeds, latent_truths=truths)
        for g, w in zip(got, want):
            wj, gj = w[0].to_json(), g[0].to_json()
            assert set(gj) == set(wj)
            for key, v in wj.items():
                _same(v, gj[key], key, tol=1e-8)
            np.testing.assert_allclose(g[1], w[1], rtol=1e-8, atol=1e-9)
            np.testing.assert_allclose(g[2], w[2], rtol=1e-8, atol=1e-9)


def _spectra_by_qr(M: int, qr: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Lyapunov spectra of 8 orbits (2 fits x 4) of a chaotic-ish M-unit model: LAPACK QR's and ``qr``'s."""
    spec = ConvSSMSpec("cshPLRNN", M, 20, "identity", n_obs=M, tr=TR)
    model = ConvSSM.initialise(spec, torch.as_tensor(spm_hrf(TR)), [0, 1]).to(dtype=torch.float64)
    model.params["latent.W1"] *= 3.0
    z0 = torch.randn(2, 4, M, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def step(z):
        return model.step(z.view(2, 4, M)).reshape(8, M)

    def jac(z):
        return model.jacobian(z.view(2, 4, M)).reshape(8, M, M)

    want = lyapunov_spectrum(step, jac, z0.reshape(8, M), n_steps=200, transient=20, qr="lapack")
    return lyapunov_spectrum(step, jac, z0.reshape(8, M), n_steps=200, transient=20, qr=qr), want


def test_gram_schmidt_lyapunov_matches_lapack_qr():
    got, want = _spectra_by_qr(5, "gram_schmidt")
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_cholesky_qr_lyapunov_matches_lapack_qr():
    """The Cholesky QR of the GPU path gives LAPACK's frame and exponents; a frame with a zero column is NaN."""
    from dsr.analysis.lyapunov import qr_cholesky

    got, want = _spectra_by_qr(6, "cholesky")
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    a = torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a[2, :, 3] = 0.0  # a zero column: rank 3, no Cholesky factor
    q, d = qr_cholesky(a)
    q_ref, r_ref = torch.linalg.qr(a[:2])
    sign = torch.sign(torch.diagonal(r_ref, dim1=-2, dim2=-1))  # (2, 4)
    torch.testing.assert_close(q[:2], q_ref * sign[:, None, :], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(d[:2], torch.diagonal(r_ref, dim1=-2, dim2=-1).abs(), rtol=1e-10, atol=1e-12)
    assert not torch.isfinite(d[2]).all()
