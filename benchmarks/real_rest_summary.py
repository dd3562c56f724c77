"""Summaries of ``real_rest.py`` (issue 14): medians and wins against VAR(1), ICC of features across halves,
split-half identification of every distance (also from all seeds of a half together), and the markdown table."""
from __future__ import annotations

import numpy as np

from dsr.analysis import distances as dist

N_DIST_SAMPLES = 5  # samples per model in the generation distances


def seed_pooled(idx, jac, samples, Q, metrics, S) -> dict:
    """Per half, in the order (h, s), what all its seeds give together (as the group level's ``combine = mean``
    does with features): the mean Jacobian, the mean Lyapunov spectrum, the mean process-noise covariance, and
    the samples of every seed concatenated."""
    keys = [(s, h) for h in (0, 1) for s in range(S)]
    spectra = [np.nanmean([np.asarray(metrics[i]["lyapunov_spectrum"], dtype=float) for i in idx[k]], 0) for k in keys]
    return {"jacobian": [jac[idx[k]].mean(0) for k in keys], "lyapunov_spectrum": spectra,
            "samples": [np.concatenate([samples[i] for i in idx[k]]) for k in keys],
            "noise_covariance": None if Q is None else [Q[idx[k]].mean(0) for k in keys]}


def _correlations(Q) -> np.ndarray:
    """1 − correlation between the off-diagonal correlation patterns of covariance matrices Q (F, M, M)."""
    iu = np.triu_indices(Q.shape[-1], 1)
    sd = np.sqrt(np.clip(np.diagonal(Q, axis1=1, axis2=2), 1e-12, None))  # (F, M)
    v = np.stack([(q / np.outer(d, d))[iu] for q, d in zip(Q, sd)])
    return np.clip(1.0 - np.corrcoef(v), 0.0, 2.0)


def summarise(records, chosen, jac, lin, samples, lin_samples, halves, S, args, noise_cov, pooled) -> dict:
    models = ([f"convssm_{m}{v}" for v in ("", "_seed0", "_seedmedian") for m in args.generators]
              + ["convssm_ensemble", "var1", "lgssm", "gaussian", "other_half_floor"])
    out = {"median": {f"{m}_{q}": float(np.median([r[f"{m}_{q}"] for r in records])) for m in models
                      for q in ("dstsp", "dh", "sd_ratio", "lag1", "fc_err_train", "fc_err_other",
                                "gaussian_surrogate_dstsp")
                      if f"{m}_{q}" in records[0]}}
    out["median"]["data_lag1"] = float(np.median([r["data_lag1"] for r in records]))
    out["convssm_beats_var1"] = {f"{m}_{q}": int(sum(r[f"{m}_{q}"] < r[f"var1_{q}"] for r in records))
                                 for m in models[:-4] for q in ("dstsp", "dh") if f"{m}_{q}" in records[0]}
    out["n_fits"] = len(records)
    # records are ordered (s, h); features and distances use the order (h, s)
    order = [2 * s + h for h in (0, 1) for s in range(S)]
    subjects, half = np.tile(np.arange(S), 2), np.repeat([0, 1], S)
    feats = ["lambda_max", "lambda_max_seedmedian", "jacobian_radius", "var1_radius", "lgssm_radius", "fc_mean"]
    out["icc_3_1"] = {f: dist.icc_3_1(np.array([[records[2 * s + h][f] for h in (0, 1)] for s in range(S)]))
                      for f in feats}
    sel = {m: [chosen[m][(s, h)] for h in (0, 1) for s in range(S)] for m in args.generators}
    ops = {"var1": [lin["var1"].params["A"][j].numpy() for j in order],
           "lgssm": [lin["lgssm"].params["A"][j].numpy() for j in order],
           "convssm_jacobian": [jac[i] for i in sel[args.main]]}
    D = {"fc_fingerprint": dist.fc_distances([halves[s][h] for h in (0, 1) for s in range(S)])}
    for name, A in ops.items():
        D[f"{name}_frobenius"] = dist.pairwise(A, dist.operator_distance)
        D[f"{name}_eigenvalues"] = dist.pairwise(A, dist.eigenvalue_distance)
    D["convssm_lyapunov_spectrum"] = dist.vector_distances([records[j]["lyapunov_spectrum"] for j in order])
    for name, smp in (("convssm", [samples[args.main][i][:N_DIST_SAMPLES] for i in sel[args.main]]),
                      ("var1", [lin_samples["var1"][j][:N_DIST_SAMPLES] for j in order])):
        g = dist.generation_distances(smp)
        D[f"{name}_generation_dstsp"], D[f"{name}_generation_dh"] = g["dstsp"], g["dh"]
    gen_sets = [(f"convssm_{m}", [samples[m][i] for i in sel[m]]) for m in args.generators if m != "deterministic"]
    for name, smp in gen_sets + [("var1", [lin_samples["var1"][j] for j in order])]:  # FC of the model's own samples
        D[f"{name}_generated_fc"] = dist.fc_distances([np.concatenate(list(x)) for x in smp])
    for m, Q in noise_cov.items():  # the process-noise covariance as a fingerprint (1 − corr of its correlations)
        D[f"convssm_{m}_noise_covariance"] = _correlations(Q[sel[m]])
    # all seeds of a half together (the product's combine = "mean")
    D["convssm_seedmean_jacobian_frobenius"] = dist.pairwise(pooled["jacobian"], dist.operator_distance)
    D["convssm_seedmean_lyapunov_spectrum"] = dist.vector_distances(pooled["lyapunov_spectrum"])
    D["convssm_seedpooled_generated_fc"] = dist.fc_distances([np.concatenate(list(x)) for x in pooled["samples"]])
    if pooled["noise_covariance"] is not None:
        D["convssm_seedmean_noise_covariance"] = _correlations(np.stack(pooled["noise_covariance"]))
    out["identification"] = {name: dist.identification_accuracy(d, subjects, half) for name, d in D.items()}
    out["identification_n"] = 2 * S
    return out


def markdown(res: dict) -> str:
    s = res["summary"]
    m, n = s["median"], s["n_fits"]
    labels = {"process": "process noise `targets` + obs. noise", "matched": "process noise `matched` + obs. noise",
              "obs": "obs. noise only (`latent_noise = none`)", "deterministic": "deterministic",
              "matched_fullobs": "`matched` + full obs. covariance",
              "full_targets": "full process + full obs. covariance (`targets`)",
              "full_matched": "full process covariance `matched` + full obs. covariance",
              "full_matched_diagobs": "full process covariance `matched` + diagonal obs. noise",
              "full_targets_moments": "full process + full obs. covariance (`targets`), moment-calibrated output",
              "full_matched_moments": "full process covariance `matched` + full obs., moment-calibrated output"}
    gens = s.get("generators", list(labels))
    rows = [(f"convSSM, {labels[g]} (selected seed)", f"convssm_{g}") for g in gens]
    rows += [(f"convSSM, ensemble of all seeds ({labels[s.get('main', 'process')]})", "convssm_ensemble")]
    rows += [(f"convSSM, {labels[g]}, {v}", f"convssm_{g}_{key}") for key, v in
             (("seed0", "first seed only"), ("seedmedian", "median over single seeds"))
             for g in s.get("seed_stats", gens) if g != "deterministic"]
    rows += [("VAR(1), least squares", "var1"), ("linear-Gaussian SSM with HRF", "lgssm"),
             ("static Gaussian", "gaussian"), ("the other half itself (floor)", "other_half_floor")]
    lines = [f"{s['n_subjects']} subjects, halves of {s['half_length']} volumes (TR {s['tr']} s), {s['seeds']} seeds, "
             f"{s['epochs']} epochs, preset `{s['preset']}`, band-pass {s['band_pass']}, device {s['device']}, "
             f"{s['seconds_total']:.0f} s.", "",
             "| model | held-out D_stsp (median) | held-out D_H (median) | beats VAR(1) on D_stsp | on D_H "
             "| SD gen / data | lag-1 autocorr. | FC error vs own training part / other half |"
             + (" D_stsp of a Gaussian with the samples' covariance |" if s.get("surrogates") else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if s.get("surrogates") else "")]
    for label, key in rows:
        wins = s["convssm_beats_var1"]
        w = (f"{wins[key + '_dstsp']} / {n}", f"{wins[key + '_dh']} / {n}") if key + "_dstsp" in wins else ("", "")
        extra = (f"{m[key + '_sd_ratio']:.2f} | {m[key + '_lag1']:.2f}" if key + "_sd_ratio" in m
                 else f" | (data {m['data_lag1']:.2f})" if key == "other_half_floor" else " | ")
        fc = (f"{m[key + '_fc_err_train']:.2f} / {m[key + '_fc_err_other']:.2f}" if key + "_fc_err_train" in m else "")
        if key + "_gaussian_surrogate_dstsp" in m:
            fc += f" | {m[key + '_gaussian_surrogate_dstsp']:.3f}"
        lines.append(f"| {label} | {m[key + '_dstsp']:.3f} | {m[key + '_dh']:.3f} | {w[0]} | {w[1]} | {extra} | {fc} |")
    lines += ["", f"| distance | identification ({s['identification_n']} halves) |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in s["identification"].items()]
    lines += ["", "| feature | ICC(3,1) across halves |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in s["icc_3_1"].items()]
    return "\n".join(lines) + "\n"
