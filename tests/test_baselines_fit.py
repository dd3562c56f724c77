"""Fitted baselines behind the model protocol (issue 14, item 2): S fits in one call, a subject axis,
save/load, stochastic generation in data units, and held-out scoring as for the linear references."""
import numpy as np
import pytest
import torch

from dsr.analysis.baseline_metrics import evaluate_baselines, prediction_error
from dsr.analysis.dstsp import dstsp
from dsr.analysis.heldout import score_model, score_samples
from dsr.analysis.spectrum import dh
from dsr.errors import InputError
from dsr.models.baselines import make_baseline, save_baseline
from dsr.models.baselines.fitted import FittedBaseline
from dsr.models.linear import fit_var1
from dsr.training.baselines_fit import fit_baselines
from dsr.training.sequence import SequenceTrainConfig, closed_loop, train_sequence_model

SMALL = {"s4d": dict(hidden=8, state=4), "selective": dict(hidden=8, state=4, layers=1),
         "lru": dict(hidden=8, state=8), "ssm2d": dict(hidden=8, state=4, layers=1), "mindy": dict(rank=1)}
QUICK = SequenceTrainConfig(steps=4, seq_len=16, batch_size=4)


def ar_process(T=400, seed=0, a=0.8, mean=(10.0, -3.0), scale=(3.0, 0.5)):
    """Two independent AR(1) channels x_t = a x_{t-1} + e_t (unit stationary SD), then scaled and shifted: (T, 2)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((T + 100, 2))
    e = rng.standard_normal(x.shape) * np.sqrt(1 - a ** 2)
    for t in range(1, len(x)):
        x[t] = a * x[t - 1] + e[t]
    return x[100:] * np.asarray(scale) + np.asarray(mean)


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_fit_stacked_subject_axis_and_save_load(tmp_path, kind):
    xs = [ar_process(200, seed=0), ar_process(150, seed=1)]
    fit = fit_baselines(kind, xs, [0, 1], options=SMALL[kind], cfg=QUICK, tr=2.0, warmup=20)
    assert fit.n_subjects == 2 and all(v.shape[0] == 2 for v in fit.params.values())
    assert fit.spec.space == ("deconvolved" if kind == "mindy" else "observed")
    # each fit is what the single-fit trainer gives on its standardised (MINDy: deconvolved) training series
    if kind != "mindy":
        xz = (xs[1] - xs[1].mean(0)) / xs[1].std(0)
        one = train_sequence_model(make_baseline(kind, **SMALL[kind]), xz, QUICK, seed=1)
        assert all(torch.equal(one[k], fit.net_params(1)[k]) for k in one)
    g = fit.generate(30, seed=5, n_samples=3)
    assert g.shape == (2, 3, 30, 2) and np.isfinite(g).all()
    assert not np.allclose(g[:, 0], g[:, 1])  # samples differ by their noise
    loaded = FittedBaseline.load(fit.save(tmp_path / f"{kind}.safetensors"))
    assert loaded.spec == fit.spec and set(loaded.params) == set(fit.params)
    np.testing.assert_array_equal(loaded.generate(30, seed=5, n_samples=3), g)
    np.testing.assert_array_equal(loaded.subject(1).generate(30, noise=False)[0], fit.generate(30, noise=False)[1])
    y, _ = fit.step(fit.init_state(3), torch.zeros(2, 3, 2))  # the recurrent form of every fit at once
    assert y.shape == (2, 3, 2)


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_stacked_training_matches_one_at_a_time(kind):
    xs = [ar_process(200, seed=2), ar_process(260, seed=3)]
    cfg = SequenceTrainConfig(steps=6, seq_len=16, batch_size=4)
    a = fit_baselines(kind, xs, [4, 5], options=SMALL[kind], cfg=cfg, stack=True)
    b = fit_baselines(kind, xs, [4, 5], options=SMALL[kind], cfg=cfg)
    for k in a.params:
        torch.testing.assert_close(a.params[k], b.params[k], atol=2e-5, rtol=1e-4)


def test_generation_is_in_data_units_and_stochastic():
    """An LRU trained on two AR(1) channels (mean 10 / −3, SD 3 / 0.5) generates with their mean and SD;
    without its innovations the closed loop decays towards the mean (SD well below the data's)."""
    x = ar_process(1500, seed=0)
    fit = fit_baselines("lru", [x], 0, options=dict(hidden=16, state=16, layers=1),
                        cfg=SequenceTrainConfig(steps=150, seq_len=32, batch_size=16, lr=1e-2, lr_end=1e-3))
    g = fit.generate(2000, seed=1, n_samples=4)[0]  # (4, 2000, 2)
    mean, sd = g.reshape(-1, 2).mean(0), g.reshape(-1, 2).std(0)
    print("generated mean", mean, "sd", sd, "data", x.mean(0), x.std(0))
    assert np.all(np.abs(mean - x.mean(0)) < 0.25 * x.std(0))
    assert np.all(np.abs(sd / x.std(0) - 1) < 0.25)
    lag1 = np.mean([np.corrcoef(s[:-1, 0], s[1:, 0])[0, 1] for s in g])
    assert abs(lag1 - 0.8) < 0.15
    det = fit.generate(2000, noise=False)[0, 0]
    assert np.all(det[500:].std(0) < 0.5 * x.std(0))
    z = fit.generate(50, seed=1, units="standardised")[0, 0]
    np.testing.assert_allclose(z * fit.params["x_std"][0].numpy() + fit.params["x_mean"][0].numpy(),
                               fit.generate(50, seed=1)[0, 0], rtol=1e-12, atol=1e-12)
    # a context in data units: the end of the training part gives the default warm-up
    np.testing.assert_array_equal(fit.generate(40, noise=False, context=x[-50:]), fit.generate(40, noise=False))


def test_evaluation_and_scores_match_the_hand_computed_path():
    """The benchmark's numbers, recomputed from the single-fit primitives (standardise with the training
    part, train, 50-step warm-up at the end of the training part, closed loop over the whole series)."""
    x = ar_process(320, seed=7)
    n_train, seed, cfg = 240, 3, SequenceTrainConfig(steps=6, seq_len=16, batch_size=4)
    opts = dict(complex=False, init="inv", hidden=8, state=4)
    fit = fit_baselines("s4d", [x[:n_train]], [seed], options=opts, cfg=cfg)
    ev = evaluate_baselines(fit, [x], n_train, pe_steps=5, lyap_steps=20, lyap_transient=5)[0]
    mean, sd = x[:n_train].mean(0), x[:n_train].std(0)
    xs = (x - mean) / sd
    model = make_baseline("s4d", **opts)
    params = train_sequence_model(model, xs[:n_train], cfg, seed=seed)
    gen = closed_loop(model, params, xs[n_train - 50:n_train], len(x))  # (T, N)
    np.testing.assert_array_equal(ev.x_gen, gen)
    np.testing.assert_array_equal(ev.x, xs)
    t = np.arange(n_train - 5, len(xs) - 5)
    pred = np.stack([closed_loop(model, params, xs[i - 49:i + 1], 5)[-1] for i in t])  # (I, N)
    assert ev.pe == pytest.approx(np.mean((pred - xs[t + 5]) ** 2), rel=1e-6)
    assert ev.status == "ok" and np.isfinite(ev.lyapunov_max)
    assert dstsp(ev.x, ev.x_gen, seed=seed) == dstsp(xs, gen, seed=seed) and np.isfinite(dh(xs, gen))
    # held-out scoring of stochastic samples, exactly as for the linear references
    held = x[n_train:]
    sc = score_model(fit, [held], n_samples=4, seed=2)[0]
    assert sc == score_samples(held, fit.generate(len(held), seed=2, n_samples=4)[0], seed=2)
    assert np.isfinite(sc["dstsp"]) and np.isfinite(sc["dh"]) and sc["n_samples"] == 4
    var = fit_var1([x[:n_train]])
    assert score_model(var, [held], n_samples=4, seed=2)[0] == score_samples(
        held, var.generate(len(held), seed=2, n_samples=4)[0], seed=2)
    assert prediction_error(fit, 0, x, n_train, 5) == ev.pe


def test_bad_inputs_are_one_line_errors(tmp_path):
    x = ar_process(120)
    with pytest.raises(InputError, match="usable steps"):
        fit_baselines("lru", [x[:30]], 0, options=SMALL["lru"], cfg=QUICK)
    with pytest.raises(InputError, match="finite"):
        fit_baselines("lru", [np.where(np.arange(120)[:, None] == 5, np.nan, x)], 0, cfg=QUICK)
    fit = fit_baselines("lru", [x], 0, options=SMALL["lru"], cfg=QUICK, warmup=10)
    with pytest.raises(InputError, match="context"):
        fit.generate(5, context=np.zeros((10, 3)))
    net = make_baseline("lru", **SMALL["lru"])
    path = save_baseline(tmp_path / "one.safetensors", net, net.init_params(2, 0))
    with pytest.raises(InputError, match="not a fitted baseline"):
        FittedBaseline.load(path)
    mindy = fit_baselines("mindy", [x], 0, options=SMALL["mindy"], cfg=QUICK, tr=2.0, warmup=10)
    with pytest.raises(InputError, match="shorter than the filter|too short to deconvolve"):
        mindy.generate(5, context=x[:3])


def test_heldout_benchmark_smoke(tmp_path):
    """benchmarks/baselines_heldout.py on two simulated subjects: every model scored on all four halves."""
    from bench_support import benchmark_module

    mod = benchmark_module("baselines_heldout")
    df = mod.main(["--smoke", "--steps", "5", "--samples", "2", "--kinds", "lru", "--out", str(tmp_path)])
    models = ["var1", "gaussian", "lgssm", "other_half_floor", "lru", "lru_det"]
    assert sorted(df.model.unique()) == sorted(models)
    assert (df.groupby("model").size() == 4).all()
    assert np.isfinite(df[df.model != "lru"].dstsp).all()
    table = (tmp_path / "table.md").read_text()
    assert all(f"| {m} | 4 |" in table for m in models)


def test_damaged_fitted_baseline_files(tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    fit = fit_baselines("lru", [ar_process(120)], 0, options=SMALL["lru"], cfg=QUICK, warmup=10)
    path = fit.save(tmp_path / "fit.safetensors")
    side = json.loads(path.with_suffix(".json").read_text())
    side["spec"]["colour"] = "red"
    path.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(InputError, match="bad fitted-baseline sidecar"):
        FittedBaseline.load(path)
    fit.save(path)
    tensors = load_file(path)
    del tensors["context"]
    save_file(tensors, path)
    with pytest.raises(InputError, match="lacks tensors"):
        FittedBaseline.load(path)
