"""The references beside every fit's held-out scores: VAR(1) and the data's own floor."""
import numpy as np

from dsr.analysis.heldout import score_samples
from dsr.analysis.linear_reference import data_floor, var1_reference


def _ar1(T, N, seed, phi=0.8):
    rng = np.random.default_rng(seed)
    x = np.zeros((T, N))
    for t in range(1, T):
        x[t] = phi * x[t - 1] + rng.standard_normal(N)
    return (x - x.mean(0)) / x.std(0)


def test_data_floor_scores_the_training_part_stretches_against_the_test_part():
    """The floor is the mean score of non-overlapping stretches of the test part's length, taken from the end
    of the training part backwards (here 3), with the fit's metric settings."""
    x = _ar1(400, 3, seed=0)
    n_train = 300
    got = data_floor(x, n_train, n_samples=10, smoothing=1.0)
    stretches = [x[200:300], x[100:200], x[0:100]]
    want = score_samples(x[300:], stretches, scale=(np.zeros(3), np.ones(3)), smoothing=1.0, bins_max_dims=5)
    assert got == {"dstsp_test": want["dstsp"], "dh_test": want["dh"]}
    assert data_floor(x, n_train, n_samples=1, smoothing=1.0)["dh_test"] == score_samples(
        x[300:], [x[200:300]], scale=(np.zeros(3), np.ones(3)), smoothing=1.0, bins_max_dims=5)["dh"]


def test_data_floor_is_nan_without_room_and_near_var1_on_a_linear_process():
    x = _ar1(400, 3, seed=1)
    assert np.isnan(data_floor(x, 150)["dstsp_test"])  # test part longer than the training part
    assert np.isnan(data_floor(x, 399)["dh_test"])  # a 1-volume test part
    # on a true VAR(1) process the fitted VAR(1) is as good as the data themselves: neither is far below
    x = _ar1(2400, 3, seed=2)
    floor = data_floor(x, 1800, smoothing=1.0)
    ref, _ = var1_reference(x, 1800, smoothing=1.0)
    assert abs(floor["dh_test"] - ref["dh_test"]) < 0.5 * ref["dh_test"]
    assert abs(floor["dstsp_test"] - ref["dstsp_test"]) < 0.1 * ref["dstsp_test"]
