"""SCYFI fixed points and k-cycles against brute force over all linear regions."""
import numpy as np
import pytest
import torch

from dsr.analysis.fixed_points import brute_force, pwl_from_params, scyfi
from dsr.models import latent

CASES = [("PLRNN", 3, 3), ("PLRNN", 2, 2), ("mcPLRNN", 3, 3), ("shPLRNN", 2, 4), ("shPLRNN", 3, 4),
         ("cshPLRNN", 2, 3), ("cshPLRNN", 3, 4), ("dendPLRNN", 2, 2)]


def _random_params(kind, M, L, seed):
    gen = torch.Generator().manual_seed(seed)
    p = latent.init_params(kind, 1, M, L, gen, dtype=torch.float64)
    rng = np.random.default_rng(seed)
    p["h1"] = torch.as_tensor(rng.normal(0, 0.5, (1, M)))  # non-zero bias: fixed points off the origin
    for name in ("W", "W1", "W2"):
        if name in p:
            p[name] = p[name] * 2.5  # strong coupling: several fixed points and cycles
    return p


def _step(kind, p, z):
    return latent.step(kind, p, torch.as_tensor(z)[None])[0].numpy()


@pytest.mark.parametrize("kind,M,L", CASES)
def test_pwl_form_matches_model(kind, M, L):
    p = _random_params(kind, M, L, 0)
    f = pwl_from_params(kind, p)
    z = np.random.default_rng(1).normal(0, 2, (50, M))
    assert np.allclose(f(z), _step(kind, p, z), atol=1e-12)
    for zi in z[:5]:
        J, c = f.affine(f.region(zi))
        Jt = latent.jacobian(kind, p, torch.as_tensor(zi)[None, None])[0, 0].numpy()
        assert np.allclose(J, Jt, atol=1e-12) and np.allclose(J @ zi + c, f(zi), atol=1e-12)


def _match(found, truth, kind, p):
    assert len(found) >= len(truth)
    for c in truth:
        assert any(np.abs(c.points - g.points).max() < 1e-6 for g in found), "SCYFI missed a cycle"
    for g in found:
        orbit = g.points
        nxt = _step(kind, p, orbit)  # F applied to each point with the torch model
        assert np.linalg.norm(nxt - np.roll(orbit, -1, axis=0), axis=1).max() < 1e-5


@pytest.mark.parametrize("kind,M,L", CASES)
@pytest.mark.parametrize("seed", range(4))
def test_scyfi_finds_every_fixed_point(kind, M, L, seed):
    p = _random_params(kind, M, L, seed)
    f = pwl_from_params(kind, p)
    truth = brute_force(f, 1)
    found = scyfi(f, 1, n_restarts=300, seed=seed)
    _match(found, truth, kind, p)
    for c in found:
        J = latent.jacobian(kind, p, torch.as_tensor(c.points)[None])[0, 0].numpy()
        assert np.allclose(np.sort_complex(np.linalg.eigvals(J)), np.sort_complex(c.eigenvalues), atol=1e-8)
        assert c.stable == (np.abs(c.eigenvalues).max() < 1)


K_CASES = [(c, 2) for c in CASES if c[0] != "dendPLRNN"] + [(("PLRNN", 2, 2), 3), (("shPLRNN", 2, 4), 3)]


@pytest.mark.parametrize("case,k", K_CASES)
def test_scyfi_finds_every_k_cycle(case, k):
    kind, M, L = case
    total = 0
    for seed in range(8):
        p = _random_params(kind, M, L, 10 + seed)
        rng = np.random.default_rng(100 + seed)
        p["A"] = torch.as_tensor(rng.uniform(-0.9, 0.5, (1, M)))  # negative self-coupling: flips, 2-cycles
        for name in ("W", "W1"):
            if name in p:
                p[name] = p[name] * (1.5 if k == 2 else 3.0)  # stronger coupling: 3-cycles
        f = pwl_from_params(kind, p)
        truth = brute_force(f, k)
        found = scyfi(f, k, n_restarts=400, seed=seed)
        _match(found, truth, kind, p)
        assert all(c.period == k for c in found) and all(c.period == k for c in truth)
        total += len(truth)
    assert total >= 1  # the check is not vacuous


def test_known_fixed_point_and_two_cycle():
    """1-D PLRNN-like map z' = -2 relu(z) + 1... written directly: fixed point 1/3 and a 2-cycle."""
    from dsr.analysis.fixed_points import PWLMap

    f = PWLMap(a=np.array([0.0]), h=np.array([1.0]), V=np.array([[-2.0]]), P=np.eye(1), q=np.zeros(1))
    fps = scyfi(f, 1, n_restarts=50)
    assert len(fps) == 1 and np.isclose(fps[0].points[0, 0], 1 / 3) and not fps[0].stable
    cyc = scyfi(f, 2, n_restarts=50)  # 0 → 1 → -1 → 1: the 2-cycle {-1, 1}... z=1 → -1, z=-1 → 1
    assert len(cyc) == 1 and np.allclose(sorted(cyc[0].points[:, 0]), [-1.0, 1.0])


def _scyfi_one_by_one(f, k, n_restarts, seed, max_iter=50, tol=1e-10):
    """SCYFI as it was written before the restarts were batched: one restart after another."""
    from dsr.analysis.fixed_points import _Collector, _initial_regions, _solve_sequence

    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        base = np.nan_to_num(np.abs(f.h / np.where(np.abs(1 - f.a) > 1e-3, 1 - f.a, 1e-3)))
    scale = float(np.linalg.norm(base) + 1.0)
    found = _Collector(f, tol)
    since_new, total = 0, 0
    while since_new < n_restarts and total < 10 * n_restarts:
        total += 1
        since_new += 1
        n_before = len(found.items)
        regions = _initial_regions(f, k, scale, rng, independent=total % 2 == 0)
        seen = set()
        for _ in range(max_iter):
            key = np.stack(regions).tobytes()
            if key in seen:
                break
            seen.add(key)
            orbit, Jc = _solve_sequence(f, regions)
            if orbit is None:
                break
            u = orbit @ f.P.T + f.q
            if np.all(np.where(np.stack(regions), u > -tol, u < tol)):
                found.add(orbit, Jc)
                break
            regions = [r for r in f.region(orbit)]
        if len(found.items) > n_before:
            since_new = 0
    return sorted(found.items, key=lambda c: c.spectral_radius)


@pytest.mark.parametrize("kind,M,L,k", [("cshPLRNN", 6, 20, 1), ("cshPLRNN", 6, 20, 2), ("shPLRNN", 4, 12, 1),
                                        ("PLRNN", 5, 5, 2), ("cshPLRNN", 16, 50, 1)])
def test_batched_restarts_find_what_one_by_one_restarts_find(kind, M, L, k):
    """The restarts searched in batches, then taken in order, give the same cycles as one after another
    (the same random starts, the same stopping rule), also with few restarts (the rule stops mid-batch)."""
    total = 0
    for seed in range(3):
        p = _random_params(kind, M, L, 30 + seed)
        if seed == 2 or k == 2:  # negative self-coupling: flips, 2-cycles
            p["A"] = torch.as_tensor(np.random.default_rng(seed).uniform(-0.9, 0.5, (1, M)))
        f = pwl_from_params(kind, p)
        for n_restarts in (7, 60):
            want = _scyfi_one_by_one(f, k, n_restarts, seed)
            got = scyfi(f, k, n_restarts=n_restarts, seed=seed)
            assert len(got) == len(want)
            for g, w in zip(got, want):
                np.testing.assert_allclose(g.points, w.points, rtol=1e-9, atol=1e-9)
                assert g.stable == w.stable and g.residual == pytest.approx(w.residual, abs=1e-9)
            total += len(want)
    assert total >= 1  # the comparison is not vacuous
