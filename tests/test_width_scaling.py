"""Spectral width scaling of the SSM baselines (issue 19); the full learning-rate transfer check is
``benchmarks/width_scaling.py`` (results in benchmarks/results/width_scaling/)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dsr.errors import ConfigError
from dsr.models.baselines import make_baseline
from dsr.models.baselines.width_scaling import lr_multipliers, param_groups, parameter_role
from dsr.training.sequence import SequenceTrainConfig, train_sequence_model

X = torch.randn(4, 33, 3, generator=torch.Generator().manual_seed(0))


def test_roles_of_state_space_parameters():
    assert parameter_role("s4d", "l0.c_re") == "vector"  # S4D's B, C are per channel
    assert parameter_role("s4d", "l0.out.w") == "hidden"
    assert parameter_role("selective", "l1.xproj.w") == "hidden"  # input-dependent Δ, B_t, C_t
    assert parameter_role("selective", "l0.a_log") == "vector"
    assert parameter_role("lru", "l0.b_re") == "hidden" and parameter_role("lru", "l0.c_re") == "vector"
    assert parameter_role("lru", "dec.w") == "readout" and parameter_role("lru", "enc.w") == "input"


def test_standard_is_unchanged_and_spectral_equals_it_at_the_base_width():
    std = make_baseline("selective", hidden=32)
    spec = make_baseline("selective", hidden=32, width_scaling="spectral", base_width=32)
    p, q = std.init_params(3, 0), spec.init_params(3, 0)
    assert all(torch.equal(p[k], q[k]) for k in p)
    assert set(lr_multipliers(spec, q).values()) == {1.0} and len(param_groups(std, p, 1e-3)) == 1
    wide = make_baseline("lru", hidden=128, width_scaling="spectral", base_width=32)
    groups = param_groups(wide, wide.init_params(3, 0), 1e-2)
    assert sorted(g["lr"] for g in groups) == pytest.approx([2.5e-3, 1e-2])
    with pytest.raises(ConfigError):
        lr_multipliers(make_baseline("s4d", width_scaling="mup"), {})


def _update_size(name: str, mode: str, hidden: int) -> float:
    """RMS change of the model's prediction after three Adam steps at lr 1e-2 on one batch."""
    m = make_baseline(name, hidden=hidden, state=16 if name == "s4d" else 4, layers=1, width_scaling=mode,
                      base_width=32)
    p = {k: v.requires_grad_(True) for k, v in m.init_params(3, 0).items()}
    with torch.no_grad():
        y0 = m.forward(p, X[:, :-1])
    opt = torch.optim.Adam(param_groups(m, p, 1e-2))
    for _ in range(3):
        loss = (m.forward(p, X[:, :-1]) - X[:, 1:]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((m.forward(p, X[:, :-1]) - y0).pow(2).mean().sqrt())


@pytest.mark.parametrize("name", ["s4d", "selective", "lru"])
def test_spectral_update_size_does_not_grow_with_width(name):
    """Measured when written (widths 32 → 512): standard ×2.3 (s4d), ×19 (selective), ×14 (lru);
    spectral ×0.98, ×0.92, ×0.98."""
    spec = _update_size(name, "spectral", 512) / _update_size(name, "spectral", 32)
    std = _update_size(name, "standard", 512) / _update_size(name, "standard", 32)
    assert 0.5 < spec < 1.5, spec
    assert std > 1.8 and std / spec > 2.0, (std, spec)


def test_sequence_trainer_accepts_spectral_scaling():
    x = np.sin(np.linspace(0, 30, 200))[:, None] * np.ones((1, 2))
    m = make_baseline("s4d", hidden=64, state=4, layers=1, width_scaling="spectral", base_width=16)
    p = train_sequence_model(m, x, SequenceTrainConfig(steps=5, seq_len=16, batch_size=4), seed=0)
    assert all(torch.isfinite(v).all() for v in p.values())
