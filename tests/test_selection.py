"""Checkpoint selection (train.select_every): off changes nothing, on keeps each fit's best-scoring epoch."""
import numpy as np
import pytest
import torch

from dsr.analysis.checkpoint_score import dstsp_scorer, free_run, start_states
from dsr.config import ConfigError, apply_overrides, load_config
from dsr.models.convssm import ConvSSM, ConvSSMSpec
from dsr.training.data import prepare_subject
from dsr.training.loop import train
from dsr.training.selection import BestKeeper

SMALL = {"epochs": 6, "batches_per_epoch": 3, "batch_size": 4, "sequence_length": 40, "checkpoint_every": 1,
         "lr_start": 1e-2, "lr_end": 1e-3}


def _setup(oscillator, seeds, **train_over):
    x, h = oscillator
    cfg = load_config("quick", train=dict(SMALL, **train_over), model={"latent_dim": 3, "hidden_dim": 8})
    sd = prepare_subject(x, h, cfg)
    spec = ConvSSMSpec("cshPLRNN", 3, 8, "identity", n_obs=2, tr=1.0)
    return ConvSSM.initialise(spec, torch.as_tensor(h), seeds, dtype=torch.float64), sd, cfg


class Recording:
    """Wraps a scorer: keeps a CPU copy of the parameters at every scoring, and its scores."""

    def __init__(self, scorer):
        self.scorer, self.snapshots, self.scores = scorer, [], []

    def __call__(self, model):
        self.snapshots.append({k: v.detach().clone() for k, v in model.params.items()})
        self.scores.append(np.asarray(self.scorer(model), dtype=float))
        return self.scores[-1]


def test_selection_off_leaves_training_as_it_was_and_on_does_not_change_the_trajectory(oscillator):
    """Off: no selection record, no score in the curve. On: the last epoch's parameters (which training
    reaches unchanged) equal the run without selection bit for bit; scoring draws no random numbers."""
    off, sd, cfg = _setup(oscillator, [3, 7])
    out_off = train(off, [sd, sd], cfg.train, [3, 7])
    assert cfg.train.select_every == 0 and out_off.selected_epoch is None and out_off.last_params is None
    assert all("select_score" not in r for r in out_off.curve)
    on, _, _ = _setup(oscillator, [3, 7])
    tcfg = cfg.replace(train={"select_every": 2}).train
    out_on = train(on, [sd, sd], tcfg, [3, 7], scorer=dstsp_scorer([sd, sd], [3, 7], cfg.eval))
    for k, v in off.params.items():
        assert torch.equal(out_on.last_params[k], v), k
    assert [r["loss"] for r in out_on.curve] == [r["loss"] for r in out_off.curve]
    assert [r["epoch"] for r in out_on.curve if "select_score" in r] == [2, 2, 4, 4, 6, 6]


def test_selection_keeps_each_fits_lowest_scoring_epoch(oscillator):
    """Scores recomputed from the saved snapshots pick the same epoch, and the fit ends with its parameters."""
    model, sd, cfg = _setup(oscillator, [1, 4])
    tcfg = cfg.replace(train={"select_every": 1}).train
    rec = Recording(dstsp_scorer([sd, sd], [1, 4], cfg.eval))
    out = train(model, [sd, sd], tcfg, [1, 4], scorer=rec)
    assert len(rec.snapshots) == tcfg.epochs
    fresh = dstsp_scorer([sd, sd], [1, 4], cfg.eval)
    recomputed = np.stack([fresh(ConvSSM(model.spec, snap, model.filter)) for snap in rec.snapshots])  # (E, S)
    np.testing.assert_array_equal(recomputed, np.stack(rec.scores))
    assert np.isfinite(recomputed).all()
    for i in range(2):
        best = int(np.argmin(recomputed[:, i]))
        assert out.selected_epoch[i] == best + 1
        for k, v in model.params.items():
            assert torch.equal(v[i], rec.snapshots[best][k][i]), (i, k)


def test_stacked_fits_select_independently(oscillator):
    """A scorer with a known best epoch per fit (fit 0: epoch 2, fit 1: epoch 5, fit 2: never finite)."""
    table = np.full((6, 3), 5.0)
    table[1, 0], table[4, 1], table[:, 2] = 1.0, 0.5, np.inf
    table[3, 0] = 1.0  # a tie later on: the earlier epoch stays
    calls = Recording(lambda model: table[len(calls.scores)])
    model, sd, cfg = _setup(oscillator, [0, 1, 2])
    out = train(model, [sd] * 3, cfg.replace(train={"select_every": 1}).train, [0, 1, 2], scorer=calls)
    assert out.selected_epoch == [2, 5, 0]
    for k, v in model.params.items():
        assert torch.equal(v[0], calls.snapshots[1][k][0]) and torch.equal(v[1], calls.snapshots[4][k][1])
        assert torch.equal(v[2], out.last_params[k][2])  # no finite score: the last epoch's parameters


def test_best_keeper_on_a_flat_buffer_and_on_separate_tensors():
    from dsr.training.radam import flat_leaves

    base = {"a": torch.arange(6.0).view(3, 2), "b": torch.arange(9.0).view(3, 3)}
    for flat in (True, False):
        params = flat_leaves(base) if flat else {k: v.clone() for k, v in base.items()}
        buf = params["a"]._base if flat else None
        keep = BestKeeper(params, buf)
        keep.update(np.array([1.0, np.nan, 2.0]), epoch=1)
        with torch.no_grad():
            for v in params.values():
                v.add_(100)
        keep.update(np.array([3.0, 1.0, 0.5]), epoch=2)
        assert keep.epoch.tolist() == [1, 2, 2]
        keep.restore()
        assert torch.equal(params["a"][0], base["a"][0]) and torch.equal(params["b"][1], base["b"][1] + 100)
        state = keep.tensors()
        again = BestKeeper(params, buf)
        again.load(state)
        assert again.epoch.tolist() == [1, 2, 2] and again.score.tolist() == [1.0, 1.0, 0.5]


def test_interrupted_training_with_selection_resumes_to_the_same_choice(oscillator, tmp_path):
    class Killed(Exception):
        pass

    full, sd, cfg = _setup(oscillator, [2, 5])
    tcfg = cfg.replace(train={"select_every": 1}).train
    out_full = train(full, [sd, sd], tcfg, [2, 5], scorer=dstsp_scorer([sd, sd], [2, 5], cfg.eval))

    def kill_at_4(epoch, total, info):
        if epoch == 4:
            raise Killed

    cut, _, _ = _setup(oscillator, [2, 5])
    with pytest.raises(Killed):
        train(cut, [sd, sd], tcfg, [2, 5], checkpoint_dir=tmp_path, progress=kill_at_4,
              scorer=dstsp_scorer([sd, sd], [2, 5], cfg.eval))
    resumed, _, _ = _setup(oscillator, [2, 5])
    out = train(resumed, [sd, sd], tcfg, [2, 5], checkpoint_dir=tmp_path, resume=True,
                scorer=dstsp_scorer([sd, sd], [2, 5], cfg.eval))
    assert out.selected_epoch == out_full.selected_epoch
    for k, v in full.params.items():
        assert torch.equal(resumed.params[k], v), k


def test_free_run_equals_generate_and_scorer_needs_a_config(oscillator):
    model, sd, cfg = _setup(oscillator, [0, 1])
    z0 = start_states(model, [sd, sd])  # (S, 1, M)
    torch.testing.assert_close(free_run(model, z0, 50), model.generate(z0, 50))
    assert torch.equal(z0[:, 0, :2], torch.as_tensor(sd.d[np.isfinite(sd.d[:, 0])][0]).expand(2, -1))
    with pytest.raises(ConfigError, match="select_every"):
        train(model, [sd, sd], cfg.replace(train={"select_every": 2}).train, [0, 1])


@pytest.mark.parametrize("item, word", [("train.select_every=-1", "train.select_every must be >= 0"),
                                        ("train.select_every=often", "train.select_every"),
                                        ("train.select_steps=1", "train.select_steps must be 0")])
def test_bad_selection_keys_are_one_clear_error(item, word):
    with pytest.raises(ConfigError, match=word) as err:
        apply_overrides(load_config("quick"), [item])
    assert "\n" not in str(err.value)


def test_fit_records_the_selected_epoch_and_its_trace(oscillator, tmp_path):
    from dsr.pipelines.fit_array import fit_many
    from dsr.pipelines.writer import write_outputs

    x, h = oscillator
    cfg = load_config("quick", train=dict(SMALL, select_every=2), eval={"n_rollouts": 2, "lyap_steps": 50,
                                                                       "lyap_transient": 10, "lyap_orbits": 2})
    res = fit_many([x, x], 1.0, [cfg.replace(seed=0), cfg.replace(seed=1)])
    for r in res:
        m = r.metrics
        trace = np.array(m["select_trace"])  # (3, 2): epoch, score
        assert trace[:, 0].tolist() == [2, 4, 6]
        assert m["selected_epoch"] == int(trace[np.argmin(trace[:, 1]), 0]) and m["select_score"] == trace[:, 1].min()
    write_outputs(res[0], tmp_path, prefix="sub-01")
    curve = (tmp_path / "sub-01_curve.tsv").read_text().splitlines()
    assert curve[0].split("\t")[-1] == "select_score" and len(curve) == 1 + SMALL["epochs"]


@pytest.mark.parametrize("channels", [2, 6])
def test_score_is_the_dstsp_of_a_free_generation_against_the_training_part(oscillator, channels):
    """Bins below 6 dimensions, the GMM estimator (seeded per fit) from 6 on; generation from the first valid target."""
    from dsr.analysis.dstsp import dstsp

    x, h = oscillator
    x = np.concatenate([x, x[:, ::-1] * 0.5, x * 2.0][:channels // 2], axis=1)  # (T, channels)
    cfg = load_config("quick", train=SMALL, model={"latent_dim": channels, "hidden_dim": 8})
    sd = prepare_subject(x, h, cfg)
    spec = ConvSSMSpec("cshPLRNN", channels, 8, "identity", n_obs=channels, tr=1.0)
    model = ConvSSM.initialise(spec, torch.as_tensor(h), [5, 6], dtype=torch.float64)
    got = dstsp_scorer([sd, sd], [5, 6], cfg.eval, n_steps=120)(model)
    K = len(h)
    for i, seed in enumerate([5, 6]):
        z0 = start_states(model.subject(i), [sd])
        gen = model.subject(i).observe(model.subject(i).generate(z0, 120 + K - 1))[0, 0]  # (120, N)
        assert gen.shape == (120, channels)
        assert got[i] == pytest.approx(dstsp(sd.x[:sd.n_train], gen, seed=seed), rel=1e-9)


def test_holdout_keeps_the_stretch_out_of_training_and_scores_against_it(oscillator):
    """train.select_holdout: no training window reaches the held-back stretch, the score compares with it."""
    from dsr.analysis.dstsp import dstsp
    from dsr.training.selection import held_back, training_view

    model, sd, cfg = _setup(oscillator, [0])
    view = training_view(sd, 0.25)
    n = held_back(sd.n_train, 0.25)
    assert n == round(0.25 * sd.n_train) and view.n_train == sd.n_train - n
    assert (view.valid_starts(40) + 40 < view.n_train).all() and np.isnan(view.d[view.n_train:]).all()
    assert training_view(sd, 0.0) is sd
    z0 = start_states(model, [sd])
    gen = model.observe(model.generate(z0, n + len(oscillator[1]) - 1))[0, 0]  # (n, N)
    got = dstsp_scorer([sd], [0], cfg.eval, holdout=0.25)(model)
    assert got[0] == pytest.approx(dstsp(sd.x[view.n_train:sd.n_train], gen), rel=1e-9)
    plain, _, _ = _setup(oscillator, [0])
    held, _, _ = _setup(oscillator, [0])
    train(plain, [sd], cfg.train, [0])
    tcfg = cfg.replace(train={"select_every": 3, "select_holdout": 0.25}).train
    out = train(held, [sd], tcfg, [0], scorer=dstsp_scorer([sd], [0], cfg.eval, holdout=0.25))
    assert not torch.equal(out.last_params["latent.W1"], plain.params["latent.W1"])  # other windows were drawn
    with pytest.raises(ConfigError, match="select_holdout needs"):
        load_config("quick", train={"select_holdout": 0.2})
    with pytest.raises(ConfigError, match="select_holdout must lie"):
        load_config("quick", train={"select_every": 5, "select_holdout": 1.0})


@pytest.mark.parametrize("channels", [2, 6])
def test_several_rollouts_score_their_mean_dstsp_from_perturbed_starts(oscillator, channels):
    """train.select_rollouts = R: rollout 0 from the unperturbed start, the others from starts perturbed by
    N(0, eval.perturbation²) drawn once per fit from its seed; the score is the mean of the R D_stsp values, the
    same in any stack, and R = 1 is the single-rollout score."""
    from dsr.analysis.checkpoint_score import start_perturbations
    from dsr.analysis.dstsp import dstsp

    x, h = oscillator
    x = np.concatenate([x, x[:, ::-1] * 0.5, x * 2.0][:channels // 2], axis=1)  # (T, channels)
    cfg = load_config("quick", train=SMALL, model={"latent_dim": channels, "hidden_dim": 8},
                      eval={"perturbation": 0.3})
    sd = prepare_subject(x, h, cfg)
    spec = ConvSSMSpec("cshPLRNN", channels, 8, "identity", n_obs=channels, tr=1.0)
    model = ConvSSM.initialise(spec, torch.as_tensor(h), [5, 6], dtype=torch.float64)
    got = dstsp_scorer([sd, sd], [5, 6], cfg.eval, n_steps=120, rollouts=3)(model)
    shifts = start_perturbations([5, 6], 3, channels, 0.3)  # (S, R, M)
    assert torch.equal(shifts[:, 0], torch.zeros(2, channels)) and shifts[:, 1:].abs().min() > 0
    K = len(h)
    for i, seed in enumerate([5, 6]):
        one = model.subject(i)
        z0 = start_states(one, [sd]) + shifts[i][None]  # (1, 3, M)
        gens = one.observe(one.generate(z0, 120 + K - 1))[0]  # (3, 120, N)
        each = [dstsp(sd.x[:sd.n_train], g, seed=seed) for g in gens]
        assert got[i] == pytest.approx(np.mean(each), rel=1e-9)
        single = dstsp_scorer([sd], [seed], cfg.eval, n_steps=120)(one)
        assert single[0] == pytest.approx(each[0], rel=1e-9)  # R = 1: the unperturbed rollout alone
    alone = dstsp_scorer([sd], [6], cfg.eval, n_steps=120, rollouts=3)(model.subject(1))
    assert alone[0] == pytest.approx(got[1], rel=1e-12)
    with pytest.raises(ConfigError, match="select_rollouts must lie"):
        load_config("quick", train={"select_rollouts": 0})
