"""The BIDS-App group level on a small generated dataset fitted by the participant level."""
import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from dsr.config import load_config
from dsr.errors import InputError
from dsr.pipelines.group import GROUP_FIGURES, QC_FIGURES, SUBJECT_FIGURES, run_group
from dsr.pipelines.participant import run_participant
from dsr.simulate.bids_dataset import make_dataset


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("group")
    cfg = load_config("quick").replace(train={"epochs": 2, "batches_per_epoch": 3},
                                       eval={"n_rollouts": 2, "lyap_steps": 100, "lyap_transient": 20,
                                             "lyap_orbits": 1})
    bids_dir = tmp / "ds"
    make_dataset(bids_dir, n_subjects=3, seed=1, n_volumes=80, tr=1.0, n_regions=3, shape=(8, 8, 8), n_runs=2)
    out = tmp / "out"
    rc = run_participant(bids_dir, out, participant_labels=None, task=None, session=None, space=None, atlas=None,
                         config=cfg, device="cpu", confounds=None)
    assert rc == 0
    return bids_dir, out, cfg


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs))


def _images(path):
    p = _Images()
    p.feed(path.read_text())
    p.close()
    return p.imgs


@pytest.fixture(scope="module")
def grouped(fitted):
    bids_dir, out, cfg = fitted
    assert run_group(bids_dir, out, config=cfg, n_perm=200) == 0
    return fitted


def test_group_outputs(grouped):
    bids_dir, out, cfg = grouped
    g = out / "group"
    runs = pd.read_csv(g / "runs.tsv", sep="\t")
    assert len(runs) == 6 and {"participant_id", "session", "run"} <= set(runs.columns)
    feats = pd.read_csv(g / "features.tsv", sep="\t")
    assert list(feats["participant_id"]) == ["sub-01", "sub-02", "sub-03"]
    for col in ("lyapunov_max", "kaplan_yorke_dim", "attractor_kind", "peak_freq_hz", "autocorr_time_s",
                "dstsp", "dh", "fp_count", "fp_stable_count", "n_fits", "lyapunov_max_sd", "age", "sex", "forcing"):
        assert col in feats.columns, col
    assert (feats["n_fits"] == 2).all()
    parts = pd.read_csv(bids_dir / "participants.tsv", sep="\t")
    assert np.allclose(feats["forcing"], parts["forcing"])  # covariates joined on participant_id
    stats = pd.read_csv(g / "stats.tsv", sep="\t")
    assert set(stats["covariate"]) == {"age", "sex", "forcing"}
    assert set(stats.loc[stats.covariate == "sex", "test"]) <= {"anova_f", "chi_square"}  # sex is categorical
    assert not {"dstsp", "dh", "dstsp_test", "pe_test"} & set(stats["feature"])  # fit quality is not a finding
    assert stats["p_permutation"].dropna().between(0, 1).all()
    icc = pd.read_csv(g / "icc.tsv", sep="\t")
    assert "lyapunov_max" in set(icc["feature"])
    D = pd.read_csv(g / "distance-dh.tsv", sep="\t").set_index("participant_id")
    assert D.shape == (3, 3) and np.allclose(D.to_numpy(), D.to_numpy().T) and np.allclose(np.diag(D), 0)
    assert pd.read_csv(g / "embedding.tsv", sep="\t").shape == (3, 3)
    for name in ("fc", "lyapunov"):  # model-based distances over each participant's kept fits (two runs each)
        D = pd.read_csv(g / f"distance-{name}.tsv", sep="\t").set_index("participant_id")
        assert D.shape == (3, 3) and np.allclose(D.to_numpy(), D.to_numpy().T) and np.allclose(np.diag(D), 0)
        assert (D.to_numpy()[~np.eye(3, dtype=bool)] > 0).all()
    for name in ("runs", "features", "stats", "distance-dstsp", "embedding"):
        assert (g / f"{name}.json").is_file()
    imgs = _images(out / "group.html")
    assert [i["alt"] for i in imgs] == list(GROUP_FIGURES)
    assert all(i["src"].startswith("data:image/png;base64,") for i in imgs)
    for s in ("01", "02", "03"):
        imgs = _images(out / f"sub-{s}.html")
        assert [i["alt"] for i in imgs] == (list(QC_FIGURES) + list(SUBJECT_FIGURES)) * 2  # two runs
        assert all(i["src"].startswith("data:image/png;base64,") for i in imgs)


def test_group_skips_a_bad_subject_folder(fitted, tmp_path, capsys):
    bids_dir, out, cfg = fitted
    out2 = tmp_path / "out"
    shutil.copytree(out, out2)
    bad = next((out2 / "sub-02" / "func").glob("*run-1*_desc-convssm_model.safetensors"))
    bad.write_bytes(b"garbage")
    assert run_group(bids_dir, out2, config=cfg, n_perm=50, reports=False) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "skipped:" in line]
    assert len(err) == 1 and "sub-02" in err[0]
    feats = pd.read_csv(out2 / "group" / "features.tsv", sep="\t")
    assert list(feats["participant_id"]) == ["sub-01", "sub-03"]


def test_group_without_fits(tmp_path):
    with pytest.raises(InputError, match="participant level"):
        run_group(tmp_path, tmp_path / "empty")


def test_group_uses_each_fits_own_settings(fitted):
    """Without a config, every fit is analysed with the eval settings it was fitted with (read from its
    files), its lambda_max is the one in its metrics.json, and its config hash is reported."""
    import json

    from dsr.pipelines.group import analyse_subject, find_fits

    _, out, cfg = fitted
    paths = find_fits(out)["sub-01"]
    items = analyse_subject("sub-01", paths)
    for path, (row, res) in zip(paths, items):
        metrics = json.loads(path.with_name(path.name.replace("_model.safetensors", "_metrics.json")).read_text())
        assert res.orbit.shape[0] == cfg.eval.lyap_steps  # the fit's own eval settings (100), not a preset's
        assert row["lyapunov_max"] == metrics["lyapunov_max_per_second"]
        assert row["config_hash"] == metrics["config_hash"]
    other = cfg.replace(eval={"lyap_steps": 50})
    assert analyse_subject("sub-01", paths, other)[0][1].orbit.shape[0] == 50  # an explicit config wins


def test_subject_report_page(grouped):
    """Summary, errors, input QC with region names, held-out quality beside VAR(1), methods, links."""
    from report_support import parse

    bids_dir, out, cfg = grouped
    page = parse(out / "sub-01.html")
    assert {"software", "command (this report)", "preset", "overrides", "runs in status.tsv"} <= set(page.summary)
    assert page.summary["preset"] == "quick" and "train.epochs=2" in page.summary["overrides"]
    assert page.summary["runs in status.tsv"] == "2 ok"
    prov = json.loads(next(out.rglob("*_provenance.json")).read_text())
    assert page.summary["command (participant level)"] == prov["CommandLine"] != "not recorded"
    assert {"summary", "errors", "methods"} <= page.ids
    assert "No run of this participant failed." in page.paragraphs
    runs = next(t for t in page.tables if t[0] == ["run", "status", "reason", "config_hash"])
    assert [row[1] for row in runs[1:]] == ["ok", "ok"]
    assert page.headings.count("Input quality") == 2
    qc = {row[0]: row[1] for t in page.tables for row in t if len(row) == 2}
    labels = pd.read_csv(next((bids_dir / "derivatives").rglob("*_dseg.tsv")), sep="\t")["name"]
    assert qc["regions"] == ", ".join(labels)  # the atlas' region names, not channel numbers
    assert float(qc["mean FD (mm)"]) >= 0 and float(qc["median tSNR"]) > 0
    quality = next(t for t in page.tables if t[0] == ["metric (lower is better)", "convSSM", "VAR(1)",
                                                      "training part itself (data floor)"])
    assert len(quality) == 4 and all(row[2] != "n/a" for row in quality[1:3])  # VAR(1) scored beside
    assert all(row[3] != "n/a" for row in quality[1:3])  # and the data's own floor
    assert "group.html" in page.links and (out / "group.html").is_file()
    assert "Volkmann E, Brändle A" in (out / "sub-01.html").read_text()  # the reference list
    assert any(p.startswith("Regional time series were modelled") for p in page.paragraphs)


def test_group_report_page(grouped):
    """Summary, links to every subject report, quality apart from features, statistics naming test, p and q."""
    import sys

    from report_support import parse

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "scripts"))
    from check_reports import link_problems

    _, out, _ = grouped
    text = (out / "group.html").read_text()
    page = parse(out / "group.html")
    assert page.summary["participants analysed"] == "3" and page.summary["fits"] == "6"
    assert page.summary["participants skipped"] == "0" and page.summary["runs in status.tsv"] == "6 (0 not ok)"
    assert [h for h in page.links if h.startswith("sub-")] == ["sub-01.html", "sub-02.html", "sub-03.html"]
    assert link_problems(out / "group.html", text) == []
    assert link_problems(out / "sub-02.html", (out / "sub-02.html").read_text()) == []
    assert {"quality", "features", "statistics"} <= page.ids
    wins = [p for p in page.paragraphs if p.startswith("The convSSM's held-out D_stsp is below the VAR(1)")]
    assert len(wins) == 1 and "held-out D_H is below" in wins[0] and "(the data floor) is below it in" in wins[0]
    features = next(t for t in page.tables if t[0][0] == "participant_id" and "lyapunov_max" in t[0])
    assert not {"dstsp", "dh", "dstsp_test", "pe_test"} & set(features[0])  # quality kept apart
    stats = next(t for t in page.tables if "q (BH-FDR)" in t[0])
    assert {"test", "p (permutation)"} <= set(stats[0])
    tests = {row[stats[0].index("test")] for row in stats[1:]}
    assert tests <= {"spearman", "anova_f", "kruskal_wallis", "chi_square"}
    assert any(p.startswith("Tests: ") and "permutation" in p for p in page.paragraphs)
    q = pd.read_csv(out / "group" / "stats.tsv", sep="\t")["q_fdr"]
    none_survive = [p for p in page.paragraphs if p.startswith("No test survives FDR correction")]
    assert bool(none_survive) == bool((q.dropna() >= 0.05).all())
    assert '<div class="scroll"><table' in text  # wide tables scroll inside the page


def test_subject_report_without_nifti_inputs(grouped, tmp_path):
    """Inputs that cannot be found (arrays, moved files): the QC says "not available", the report goes on."""
    import json

    from report_support import parse

    from dsr.pipelines.group import analyse_subject, find_fits
    from dsr.report.subject import SubjectContext, subject_report

    _, out, cfg = grouped
    out2 = tmp_path / "out"
    shutil.copytree(out / "sub-01", out2 / "sub-01")
    desc = json.loads((out / "dataset_description.json").read_text())
    desc["DatasetLinks"] = {"raw": (tmp_path / "moved").as_uri()}
    (out2 / "dataset_description.json").write_text(json.dumps(desc))
    items = analyse_subject("sub-01", find_fits(out2)["sub-01"], cfg)
    rep = subject_report("sub-01", items, out2 / "sub-01.html", SubjectContext(out2))
    page = parse(out2 / "sub-01.html")
    na = [p for p in page.paragraphs if "not available" in p and not p.startswith("run status")]
    assert len(na) == 4 and any(p.startswith("framewise displacement: not available") for p in na)
    assert [i["alt"] for i in page.imgs] == list(SUBJECT_FIGURES) * 2 and rep.failed == []
    assert page.summary["runs in status.tsv"] == "no status.tsv rows"
    assert "run status: not available (no status.tsv rows for this participant)." in page.paragraphs


def test_model_distances_pool_the_kept_fits(tmp_path):
    """distance-fc: FC of each participant's generated series, every kept fit z-scored and pooled;
    distance-lyapunov: Euclidean distance of the mean spectra; fits of another width give NaN, not an error."""
    from types import SimpleNamespace

    from dsr.analysis.distances import fc_distances
    from dsr.pipelines.group import model_distances

    rng = np.random.default_rng(0)

    def fit(name, x, lyap):
        path = tmp_path / f"{name}.tsv"
        pd.DataFrame(x, columns=[f"r{i}" for i in range(x.shape[1])]).to_csv(path, sep="\t", index=False)
        return SimpleNamespace(paths={"generated_obs": path}, lyapunov=np.asarray(lyap, dtype=float))

    xs = [rng.standard_normal((50, 4)) @ rng.standard_normal((4, 4)) + 5.0 for _ in range(4)]
    kept = [[fit("a1", xs[0], [0.1, -1.0]), fit("a2", xs[1], [0.3, -1.2])], [fit("b1", xs[2], [0.0, -2.0])],
            [fit("c1", xs[3] * 3.0, [-0.1, -0.5])]]
    out = {name: D for name, D, _ in model_distances(kept)}

    def z(x):
        return (x - x.mean(0)) / x.std(0)

    want = fc_distances([np.concatenate([z(xs[0]), z(xs[1])]), z(xs[2]), z(xs[3])])
    assert np.allclose(out["fc"], want)
    means = np.array([[0.2, -1.1], [0.0, -2.0], [-0.1, -0.5]])
    assert np.allclose(out["lyapunov"], np.linalg.norm(means[:, None] - means[None], axis=-1))
    one = {name: D for name, D, _ in model_distances(kept[:1])}  # a single participant: a 1 x 1 table of 0
    assert all(D.shape == (1, 1) and D[0, 0] == 0 for D in one.values())
    odd = kept + [[fit("d1", rng.standard_normal((50, 3)), [0.1, -1.0, -2.0])]]
    assert all(np.isnan(D).all() for _, D, _ in model_distances(odd))
