"""train.select_rescore: keep each fit's k best-scored checkpoints, then choose among them by a second score."""
import numpy as np
import pytest
import torch

from dsr.analysis.checkpoint_score import dstsp_scorer
from dsr.config import ConfigError, apply_overrides, load_config
from dsr.models.convssm import ConvSSM, ConvSSMSpec
from dsr.training.data import prepare_subject
from dsr.training.loop import train
from dsr.training.radam import flat_leaves
from dsr.training.selection import BestKeeper

SMALL = {"epochs": 6, "batches_per_epoch": 3, "batch_size": 4, "sequence_length": 40, "checkpoint_every": 1,
         "lr_start": 1e-2, "lr_end": 1e-3}


def _setup(oscillator, seeds, **train_over):
    x, h = oscillator
    cfg = load_config("quick", train=dict(SMALL, **train_over), model={"latent_dim": 3, "hidden_dim": 8},
                      eval={"n_rollouts": 3})
    sd = prepare_subject(x, h, cfg)
    spec = ConvSSMSpec("cshPLRNN", 3, 8, "identity", n_obs=2, tr=1.0)
    return ConvSSM.initialise(spec, torch.as_tensor(h), seeds, dtype=torch.float64), sd, cfg


class Table:
    """A scorer that returns the next row of a table (S,) per call and keeps the parameters it saw."""

    def __init__(self, rows):
        self.rows, self.seen = np.asarray(rows, dtype=float), []

    def __call__(self, model):
        self.seen.append({k: v.detach().clone() for k, v in model.params.items()})
        return self.rows[len(self.seen) - 1]


@pytest.mark.parametrize("flat", [True, False])
def test_keeper_keeps_the_k_best_and_the_rescore_chooses_among_them(flat):
    base = {"a": torch.zeros(2, 3)}
    params = flat_leaves(base) if flat else {k: v.clone() for k, v in base.items()}
    keep = BestKeeper(params, params["a"]._base if flat else None, k=2)
    for epoch, scores in enumerate([[5.0, 1.0], [3.0, np.nan], [4.0, 2.0], [1.0, 3.0]], start=1):
        with torch.no_grad():
            params["a"].fill_(epoch)  # the parameters of epoch e are all e
        keep.update(np.array(scores), epoch)
    assert sorted(keep.epochs[0].tolist()) == [2, 4] and sorted(keep.epochs[1].tolist()) == [1, 3]
    assert keep.epoch.tolist() == [4, 1]  # before rescoring: the best first score
    seen = []

    def rescorer(model):  # fit 0 prefers its epoch-2 parameters, fit 1 its epoch-3 ones
        a = model.params["a"][:, 0].detach().clone()
        seen.append(a)
        return np.where(a.numpy() == [2.0, 3.0], 0.5, 9.0)

    again = keep.rescore(rescorer, type("M", (), {"params": params})())
    assert len(seen) == 2 and np.isfinite(again).all()
    keep.restore()
    assert keep.epoch.tolist() == [2, 3]
    assert params["a"][0].tolist() == [2.0] * 3 and params["a"][1].tolist() == [3.0] * 3
    state = keep.tensors()
    assert state["select.score"].shape == (2, 2)
    other = BestKeeper(params, params["a"]._base if flat else None, k=2)
    other.load(state)
    assert other.epochs.tolist() == keep.epochs.tolist() and other.score.tolist() == [1.0, 1.0]


def test_training_ends_with_the_rescored_choice_and_records_the_candidates(oscillator):
    """A fit chooses its lowest rescore among its 2 best-scored epochs; a fit whose rescores are all infinite
    keeps its best first score; the training trajectory is that of the run without rescoring."""
    first = [[5, 5], [1, 4], [3, 1], [4, 2], [6, 6], [2, 3]]  # (epochs, S): fit 0 keeps 2 and 6, fit 1 keeps 3, 4
    model, sd, cfg = _setup(oscillator, [0, 1])
    tcfg = cfg.replace(train={"select_every": 1, "select_rescore": 2}).train
    scorer = Table(first)
    rescorer = Table([[0.7, np.inf], [0.2, np.inf]])  # slot order: the kept checkpoints as stored
    out = train(model, [sd, sd], tcfg, [0, 1], scorer=scorer, rescorer=rescorer)
    assert len(rescorer.seen) == 2
    assert [sorted(r[0] for r in rows) for rows in out.rescored] == [[2, 6], [3, 4]]
    slot_epoch0 = [rows[1][0] for rows in out.rescored]  # fit 0's rescore 0.2 is its second slot
    assert out.selected_epoch == [slot_epoch0[0], 3]  # fit 1: all rescores inf, its best first score (epoch 3)
    for k, v in model.params.items():
        assert torch.equal(v[0], scorer.seen[out.selected_epoch[0] - 1][k][0])
        assert torch.equal(v[1], scorer.seen[2][k][1])
    plain, _, _ = _setup(oscillator, [0, 1])
    ref = train(plain, [sd, sd], cfg.replace(train={"select_every": 1}).train, [0, 1], scorer=Table(first))
    assert ref.selected_epoch == [2, 3]
    for k in model.params:
        assert torch.equal(out.last_params[k], ref.last_params[k])


def test_noisy_score_adds_the_residual_noise_fixed_per_fit_and_stack_independent(oscillator):
    """The noisy score is the D_stsp of the generation plus N(0, σ²) draws of the fit's own seed, σ the
    training residuals' RMS (estimate_noise): the same at every call, and alone as in a stack."""
    from dsr.analysis.checkpoint_score import observation_noise, start_states
    from dsr.analysis.dstsp import dstsp
    from dsr.analysis.noise import estimate_noise

    model, sd, cfg = _setup(oscillator, [3, 4])
    noisy = dstsp_scorer([sd, sd], [3, 4], cfg.eval, n_steps=150, noisy=True)
    a, b = noisy(model), noisy(model)
    assert np.isfinite(a).all() and np.array_equal(a, b)
    one = model.subject(1)
    alone = dstsp_scorer([sd], [4], cfg.eval, n_steps=150, noisy=True)(one)
    assert alone[0] == pytest.approx(a[1], rel=1e-12)
    est = model.subject(1)
    estimate_noise(est, [sd])
    sigma = est.params["noise.obs"]  # (1, N)
    assert (sigma > 0).all()
    gen = one.observe(one.generate(start_states(one, [sd]), 150 + one.kernel_size - 1))  # (1, 1, 150, N)
    eps = observation_noise([4], [0], (1, 150, 2), sigma)  # (1, 1, 150, N)
    want = dstsp(sd.x[:sd.n_train], (gen.double() + eps)[0, 0], seed=4)
    assert a[1] == pytest.approx(want, rel=1e-9)
    assert a[1] != pytest.approx(dstsp(sd.x[:sd.n_train], gen[0, 0], seed=4), rel=1e-9)


def test_rescore_needs_a_rescorer_and_valid_keys(oscillator):
    model, sd, cfg = _setup(oscillator, [0])
    with pytest.raises(ConfigError, match="rescorer"):
        train(model, [sd], cfg.replace(train={"select_every": 1, "select_rescore": 2}).train, [0],
              scorer=Table([[1.0]] * 6))
    for item, word in (("train.select_rescore=1", "must be 0 \\(off\\) or lie in \\[2, 100\\]"),
                       ("train.select_rescore_rollouts=0", "select_rescore_rollouts must lie in \\[1, 1000\\]")):
        with pytest.raises(ConfigError, match=word) as err:
            apply_overrides(load_config("quick"), [item])
        assert "\n" not in str(err.value)
    # without selection the key does nothing (a preset with rescoring and select_every = 0 still trains)
    off = train(model, [sd], cfg.replace(train={"select_every": 0, "select_rescore": 3}).train, [0])
    assert off.selected_epoch is None and off.rescored is None
    assert apply_overrides(load_config("lorenz63"), ["train.select_every=0"]).train.select_rescore == 6


def test_fit_with_rescoring_records_the_kept_checkpoints(oscillator):
    from dsr.pipelines.fit_array import fit_many

    x, h = oscillator
    cfg = load_config("quick", train=dict(SMALL, select_every=1, select_rescore=3, select_rescore_rollouts=2),
                      eval={"n_rollouts": 2, "generation": "stochastic", "lyap_steps": 50, "lyap_transient": 10,
                            "lyap_orbits": 2})
    res = fit_many([x, x], 1.0, [cfg.replace(seed=0), cfg.replace(seed=1)])
    for r in res:
        rows = np.array(r.metrics["select_rescored"])  # (3, 3): epoch, score, rescore
        assert rows.shape == (3, 3) and np.isfinite(rows).all()
        trace = dict((int(e), s) for e, s in r.metrics["select_trace"])
        assert sorted(rows[:, 1].tolist()) == sorted(trace.values())[:3]  # the 3 best first scores
        assert r.metrics["selected_epoch"] == int(rows[np.argmin(rows[:, 2]), 0])


def test_interrupted_training_with_rescoring_resumes_to_the_same_choice(oscillator, tmp_path):
    """The k kept checkpoints travel in the training checkpoint: a run killed at epoch 4 and resumed ends with
    the same kept epochs, rescores and parameters as the run that was not interrupted."""
    class Killed(Exception):
        pass

    def scorers(sd):
        return (dstsp_scorer([sd, sd], [2, 5], cfg.eval),
                dstsp_scorer([sd, sd], [2, 5], cfg.eval, rollouts=3, noisy=True))

    full, sd, cfg = _setup(oscillator, [2, 5])
    tcfg = cfg.replace(train={"select_every": 1, "select_rescore": 3}).train
    s, r = scorers(sd)
    out_full = train(full, [sd, sd], tcfg, [2, 5], scorer=s, rescorer=r)

    def kill_at_4(epoch, total, info):
        if epoch == 4:
            raise Killed

    cut, _, _ = _setup(oscillator, [2, 5])
    s, r = scorers(sd)
    with pytest.raises(Killed):
        train(cut, [sd, sd], tcfg, [2, 5], checkpoint_dir=tmp_path, progress=kill_at_4, scorer=s, rescorer=r)
    resumed, _, _ = _setup(oscillator, [2, 5])
    s, r = scorers(sd)
    out = train(resumed, [sd, sd], tcfg, [2, 5], checkpoint_dir=tmp_path, resume=True, scorer=s, rescorer=r)
    assert out.selected_epoch == out_full.selected_epoch and out.rescored == out_full.rescored
    for k, v in full.params.items():
        assert torch.equal(resumed.params[k], v), k
