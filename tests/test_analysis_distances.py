"""Subject distances, split-half identification, ICC(3,1) and held-out scoring on generated data."""
import numpy as np
import pytest

from dsr.analysis.distances import (dmd_operator, eigenvalue_distance, fc_distances, generation_distances,
                                    icc_3_1, identification_accuracy, mean_jacobian, operator_distance,
                                    pairwise, vector_distances)
from dsr.analysis.heldout import score_generator, score_samples
from dsr.models.linear import fit_var1


def test_icc_3_1_matches_shrout_fleiss_example():
    # Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges; ICC(3,1) = 0.71
    Y = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    assert icc_3_1(Y) == pytest.approx(0.7148, abs=1e-3)
    assert np.isnan(icc_3_1([[1.0, np.nan], [2.0, 3.0]]))


def test_identification_accuracy_counts_nearest_other_half():
    subjects = np.array([0, 1, 2, 0, 1, 2])
    halves = np.array([0, 0, 0, 1, 1, 1])
    pos = np.array([0.0, 1.0, 2.0, 0.1, 1.1, 2.1])
    assert identification_accuracy(np.abs(pos[:, None] - pos[None]), subjects, halves) == 1.0
    pos_swapped = np.array([0.0, 1.0, 2.0, 1.05, 0.1, 2.1])  # subject 0 and 1 of half 1 exchanged
    acc = identification_accuracy(np.abs(pos_swapped[:, None] - pos_swapped[None]), subjects, halves)
    assert acc == pytest.approx(2 / 6)


def _subject_var(coupling: float, rotation: float, T: int, seed: int) -> np.ndarray:
    """A 4-channel VAR(1) whose operator depends on the subject's (coupling, rotation)."""
    rng = np.random.default_rng(seed)
    c, s = np.cos(rotation), np.sin(rotation)
    A = np.zeros((4, 4))
    A[:2, :2] = 0.85 * np.array([[c, -s], [s, c]])
    A[2:, 2:] = 0.5 * np.eye(2)
    A[2, 0] = coupling
    x = np.zeros((T, 4))
    for t in range(1, T):
        x[t] = A @ x[t - 1] + rng.standard_normal(4)
    return x


def test_operator_distances_identify_subjects_that_differ_in_a_parameter():
    params = [(-0.6, 0.1), (-0.2, 0.5), (0.2, 0.9), (0.6, 1.3)]
    halves = [[_subject_var(k, r, 2000, seed=10 * i + h) for i, (k, r) in enumerate(params)] for h in (0, 1)]
    fits = fit_var1(halves[0] + halves[1])
    ops = [fits.params["A"][i].numpy() for i in range(8)]
    subjects, half = np.tile(np.arange(4), 2), np.repeat([0, 1], 4)
    assert identification_accuracy(pairwise(ops, operator_distance), subjects, half) == 1.0
    assert identification_accuracy(pairwise(ops, eigenvalue_distance), subjects, half) == 1.0
    # the same operators via DMD of the series, and the reliability of the hidden parameter's estimate
    coupling = np.array([dmd_operator(x)[2, 0] for x in halves[0] + halves[1]])
    assert icc_3_1(coupling.reshape(2, 4).T) > 0.9
    radius = np.array([np.max(np.abs(np.linalg.eigvals(dmd_operator(x)))) for x in halves[0] + halves[1]])
    assert icc_3_1(radius.reshape(2, 4).T) < 0.9  # equal (0.85) in every subject: not a trait
    # all subjects share one FC-free structure apart from the coupling: FC still tells them apart
    assert identification_accuracy(fc_distances(halves[0] + halves[1]), subjects, half) >= 0.75


def test_eigenvalue_distance_is_basis_invariant():
    rng = np.random.default_rng(0)
    A = 0.3 * rng.standard_normal((5, 5))
    P = rng.standard_normal((5, 5)) + 3 * np.eye(5)
    assert eigenvalue_distance(A, np.linalg.solve(P, A @ P)) < 1e-8
    assert operator_distance(A, np.linalg.solve(P, A @ P)) > 0.1


def test_generation_distances_and_jacobian_mean():
    samples = [np.stack([_subject_var(k, r, 400, seed=s) for s in range(2)]) for k, r in [(-0.6, 0.1), (0.6, 1.3)]]
    samples.append(np.stack([_subject_var(-0.6, 0.1, 400, seed=5 + s) for s in range(2)]))
    D = generation_distances(samples)
    assert D["dstsp"].shape == (3, 3) and np.allclose(np.diag(D["dh"]), 0)
    assert D["dh"][0, 2] < D["dh"][0, 1]  # same dynamics closer in spectrum
    A = np.array([[0.5, 0.1], [0.0, 0.3]])
    assert np.allclose(mean_jacobian(lambda z: np.broadcast_to(A, (len(z), 2, 2)), np.zeros((7, 2))), A)
    assert vector_distances([[0.0, 1.0], [3.0, 5.0]])[0, 1] == pytest.approx(5.0)


def test_heldout_scores_rank_the_true_model_first():
    truth = _subject_var(0.2, 0.9, 600, seed=1)
    own = score_generator(truth, lambda n, s: _subject_var(0.2, 0.9, n, seed=100 + s), n_samples=5)
    other = score_generator(truth, lambda n, s: _subject_var(-0.6, 0.1, n, seed=100 + s), n_samples=5)
    white = score_samples(truth, [np.random.default_rng(s).standard_normal((600, 4)) for s in range(5)])
    assert own["n_samples"] == 5 and np.isfinite(own["dstsp"])
    assert own["dh"] < other["dh"] and own["dh"] < white["dh"]
    bad = score_samples(truth, [np.full((600, 4), np.nan)])
    assert bad["dstsp"] == np.inf and bad["dh"] == 1.0
    with pytest.raises(ValueError, match="sample"):
        score_samples(truth, [np.zeros((600, 3))])
