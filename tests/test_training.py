"""Training: the optimiser, stacked fits equal single fits, the NaN guard, adaptive forcing."""
import numpy as np
import pytest
import torch

from dsr.config import load_config
from dsr.models.convssm import ConvSSM, ConvSSMSpec
from dsr.training.data import prepare_subject
from dsr.training.forcing import estimate_alpha, update_alpha
from dsr.training.loop import learning_rate, train
from dsr.training.radam import SubjectRAdam

SMALL = {"epochs": 3, "batches_per_epoch": 4, "batch_size": 4, "sequence_length": 40, "checkpoint_every": 1}


def test_subject_radam_matches_torch_radam():
    gen = torch.Generator().manual_seed(0)
    p1 = torch.randn(1, 4, 3, generator=gen, dtype=torch.float64).requires_grad_(True)
    p2 = p1.detach().clone().requires_grad_(True)
    mine, ref = SubjectRAdam({"w": p1}), torch.optim.RAdam([p2], lr=1e-3)
    for _ in range(30):
        g = torch.randn(1, 4, 3, generator=gen, dtype=torch.float64)
        p1.grad, p2.grad = g.clone(), g.clone()
        mine.step(torch.tensor([1e-3], dtype=torch.float64), torch.tensor([True]))
        ref.step()
    torch.testing.assert_close(p1, p2, atol=1e-14, rtol=0)


def test_learning_rate_decays_exponentially():
    cfg = load_config("paper").train
    assert learning_rate(cfg, 0) == pytest.approx(1e-3)
    assert learning_rate(cfg, cfg.epochs - 1) == pytest.approx(1e-6)
    assert learning_rate(cfg, (cfg.epochs - 1) // 2) == pytest.approx(np.sqrt(1e-9), rel=1e-2)


def _setup(oscillator, seeds, forcing="weak", M=3, L=8):
    x, h = oscillator
    cfg = load_config("quick", train=dict(SMALL, forcing=forcing), model={"latent_dim": M, "hidden_dim": L})
    sd = prepare_subject(x, h, cfg)
    spec = ConvSSMSpec("cshPLRNN", M, L, "identity", n_obs=2, tr=1.0)
    return ConvSSM.initialise(spec, torch.as_tensor(h), seeds, dtype=torch.float64), sd, cfg


@pytest.mark.parametrize("sampler", ["host", "device"])
def test_stacked_fits_equal_single_fits(oscillator, sampler):
    stacked, sd, cfg = _setup(oscillator, [3, 7])
    tcfg = cfg.replace(train={"sampler": sampler}).train
    train(stacked, [sd, sd], tcfg, [3, 7])
    for i, seed in enumerate([3, 7]):
        alone, _, _ = _setup(oscillator, [seed])
        train(alone, [sd], tcfg, [seed])
        for k, v in alone.params.items():
            torch.testing.assert_close(stacked.params[k][i:i + 1], v, atol=1e-10, rtol=1e-8)


def test_training_lowers_the_loss(oscillator):
    model, sd, cfg = _setup(oscillator, [0], M=2, L=16)
    out = train(model, [sd], cfg.replace(train={"epochs": 20, "batches_per_epoch": 10, "batch_size": 8,
                                                "lr_start": 1e-2, "lr_end": 1e-3}).train, [0])
    losses = [r["loss"] for r in out.curve]
    assert out.status == ["ok"] and losses[-1] < 0.75 * losses[0], losses


def test_nan_guard_rolls_back_then_gives_up(oscillator):
    model, sd, cfg = _setup(oscillator, [0, 1])
    with torch.no_grad():
        model.params["latent.W1"][1] = float("nan")  # fit 1 is broken from the start; fit 0 is fine
    out = train(model, [sd, sd], cfg.train, [0, 1])
    assert out.status == ["ok", "diverged"]
    assert torch.isfinite(model.params["latent.W2"][0]).all()
    assert out.curve[-1]["fit"] == 1 and out.curve[-1]["status"] == "diverged"


def test_adaptive_alpha_in_unit_interval_and_monotone_rules(oscillator):
    model, sd, cfg = _setup(oscillator, [0, 1])
    d = torch.as_tensor(sd.d[None, None, 30:80].repeat(2, 0), dtype=torch.float64)  # (2, 1, 50, 2)
    est = estimate_alpha(model, d)
    assert est.shape == (2,) and torch.all((est >= 0) & (est < 1))
    cur = torch.tensor([0.5, 0.1], dtype=torch.float64)
    new = update_alpha(cur, torch.tensor([0.2, 0.3], dtype=torch.float64), 0.9)
    torch.testing.assert_close(new, torch.tensor([0.45, 0.3], dtype=torch.float64))


def test_adaptive_training_runs(oscillator):
    model, sd, cfg = _setup(oscillator, [0], forcing="adaptive")
    out = train(model, [sd], cfg.train, [0])
    assert out.status == ["ok"] and 0 <= out.curve[-1]["alpha"] < 1


class _Killed(Exception):
    pass


@pytest.mark.parametrize("sampler", ["host", "device"])
def test_interrupted_training_resumes_to_the_same_parameters(oscillator, tmp_path, sampler):
    full, sd, cfg = _setup(oscillator, [2, 5])
    tcfg = cfg.replace(train={"sampler": sampler}).train
    train(full, [sd, sd], tcfg, [2, 5])

    def kill_at_2(epoch, total, info):
        if epoch == 2:
            raise _Killed  # after epoch 2's update, before its checkpoint: epoch 1's is on disk

    cut, _, _ = _setup(oscillator, [2, 5])
    with pytest.raises(_Killed):
        train(cut, [sd, sd], tcfg, [2, 5], checkpoint_dir=tmp_path, progress=kill_at_2)
    resumed, _, _ = _setup(oscillator, [2, 5])
    out = train(resumed, [sd, sd], tcfg, [2, 5], checkpoint_dir=tmp_path, resume=True)
    assert out.epochs_done == 3
    for k, v in full.params.items():
        torch.testing.assert_close(resumed.params[k], v, atol=0, rtol=0)


def test_loss_states_per_fit_in_a_stack_equal_single_fits(oscillator):
    """train.loss_states: a stack mixing "forced", "free" and "reference" fits equals each fit trained
    alone with its config's loss_states, and each variant trains other parameters than the others."""
    kinds = ("forced", "free", "reference")
    stacked, sd, cfg = _setup(oscillator, [3, 3, 3])
    train(stacked, [sd, sd, sd], cfg.train, [3, 3, 3], loss_states=list(kinds))
    got = {}
    for states in kinds:
        alone, _, _ = _setup(oscillator, [3])
        train(alone, [sd], cfg.replace(train={"loss_states": states}).train, [3])
        got[states] = alone.params
    for i, states in enumerate(kinds):
        for k, v in got[states].items():
            torch.testing.assert_close(stacked.params[k][i:i + 1], v, atol=1e-10, rtol=1e-8)
    assert not torch.allclose(got["forced"]["latent.W1"], got["free"]["latent.W1"])
    assert not torch.allclose(got["reference"]["latent.W1"], got["free"]["latent.W1"])
    assert not torch.allclose(got["reference"]["latent.W1"], got["forced"]["latent.W1"])
    with pytest.raises(Exception, match="loss_states"):
        load_config("quick", train={"loss_states": "both"})


def test_test_part_targets_do_not_see_far_future_data(oscillator):
    """SubjectData.d_full: the training part's targets, then each later target deconvolved from a
    window ending ⌊cut_r K⌋ samples after it, so data far in the future never change it; no gaps."""
    x, h = oscillator  # (387, 2), K = 33
    cfg = load_config("quick")
    sd = prepare_subject(x, h, cfg, standardise=False)
    K, n, T = len(h), sd.n_train, len(x)
    cl, cr = int(0.25 * K), int(0.5 * K)
    fin = np.isfinite(sd.d_full[:, 0])
    assert not fin[:cl].any() and fin[cl:T - cr].all() and not fin[T - cr:].any()
    np.testing.assert_array_equal(sd.d_full[:n - cr], sd.d[:n - cr])
    j = T - 40
    x2 = x.copy()
    x2[j:] = -x2[j:]  # the far future changes
    sd2 = prepare_subject(x2, h, cfg, standardise=False)
    np.testing.assert_allclose(sd2.d_full[:j - cr], sd.d_full[:j - cr], rtol=1e-12, atol=1e-12)
    assert not np.allclose(sd2.d_full[j - cr:T - cr], sd.d_full[j - cr:T - cr])


def test_host_batches_are_each_fits_own_and_noisy():
    """The CPU sampler: a fit's batch depends on its own generator alone (the same batch alone or stacked),
    its noise is Gaussian with the configured σ on x and on d (two different draws), and NaN targets stay NaN."""
    from dsr.signal.filters import spm_hrf
    from dsr.training.data import sample_batch

    cfg = load_config("quick")
    rng = np.random.default_rng(0)
    subjects = [prepare_subject(rng.standard_normal((300, 3)).cumsum(0), spm_hrf(1.0), cfg) for _ in range(3)]

    def draw(idx, sigma):
        rngs = [np.random.default_rng(100 + i) for i in idx]
        return sample_batch([subjects[i] for i in idx], rngs, 40, 64, sigma, "cpu", torch.float64)

    both, alone = draw([0, 1, 2], 0.5), draw([1], 0.5)
    torch.testing.assert_close(both.x[1], alone.x[0], atol=0, rtol=0)
    torch.testing.assert_close(both.d[1], alone.d[0], atol=0, rtol=0, equal_nan=True)
    clean = draw([0, 1, 2], 0.0)
    ex, ed = both.x - clean.x, both.d - clean.d  # (S, B, T̃+1, N)
    assert torch.isnan(ed).sum() == torch.isnan(clean.d).sum() > 0  # the masked edge of the targets
    for e in (ex, ed[torch.isfinite(ed)]):
        assert abs(float(e.std()) - 0.5) < 0.02 and abs(float(e.mean())) < 0.02
    assert abs(float(np.corrcoef(ex[torch.isfinite(ed)].numpy(), ed[torch.isfinite(ed)].numpy())[0, 1])) < 0.05
