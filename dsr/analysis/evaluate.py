"""The metric engine: every fit of a stacked convSSM evaluated the paper's way, at once, on any device.

For each fit, as in Volkmann et al. (NeurIPS 2024; 100 rollouts from initial states perturbed by N(0, 0.01²)):

* initial states from the fit's own ``torch.Generator().manual_seed(seed)`` (rollout perturbations
  first, then the Lyapunov orbit starts);
* rollouts of the configured generator (``eval.generation``): "deterministic" runs the latent map
  freely, filters and decodes; "stochastic" adds latent process noise N(0, σ_z²) to every step (when
  the model has ``noise.latent``; N(0, Q) with ``noise.latent_chol``) and observation noise N(0, σ_obs²)
  per region (N(0, R) with ``noise.obs_chol``) to the decoded series, then the moment calibration
  (``eval.output_calibration``, :mod:`dsr.analysis.calibration`),
  drawn from a generator seeded per fit (:func:`noise_generator`). σ_obs is estimated from the training
  residuals if the model has none (:mod:`dsr.analysis.noise`; stored in ``model.params``). With the
  stochastic generator the deterministic rollouts are scored too (``*_det`` in the record);
* D_stsp (:mod:`dsr.analysis.dstsp`) and D_H (:mod:`dsr.analysis.spectrum`) of the rollouts against
  the observed series, its training part and its test part (nuisance part J r removed), and, given a
  latent truth, in latent space (z-scored: ``dstsp_latent``, ``dh_latent``; and with the identity
  read-out, whose latents are in data units because the filter sums to 1, in data units standardised
  by the truth: ``dstsp_latent_units``);
* PE_n (:mod:`dsr.analysis.prediction`), deterministic predictions;
* Lyapunov spectra along deterministic orbits of all fits in one float64 batch
  (:func:`dsr.analysis.lyapunov.lyapunov_spectrum`).

Fits may differ in length (grouped by T, n_train and truth length). All metric estimators are
batched float64 torch code with NumPy ``*_ref`` twins that the tests compare them with. On a GPU
float32 rollouts of chaotic models drift from the CPU ones, so metrics agree only statistically.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

from dsr.analysis.calibration import calibrate_output
from dsr.analysis.draws import draw_uniforms, randn_from_uniforms, uniform_count
from dsr.analysis.dstsp import dstsp_batch, gmm_references
from dsr.analysis.lyapunov import lyapunov_spectrum
from dsr.analysis.metrics_record import FitMetrics, RolloutMetrics
from dsr.analysis.noise import estimate_noise
from dsr.analysis.prediction import clean_observations_batch, prediction_errors
from dsr.analysis.spectrum import dh_batch
from dsr.config import EvalConfig
from dsr.models.convssm import LATENT_NOISE, OBS_NOISE, ConvSSM
from dsr.timing import stage
from dsr.training.data import SubjectData

_ROLLOUT_BYTES = {"cpu": 2**28, "cuda": 2**32}  # float64 rollouts held per chunk of fits


def column_scale(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SD per column of a (T, n) series; a constant column gets SD 1."""
    a = np.asarray(a)
    sd = a.std(0)
    return a.mean(0), np.where(sd > 0, sd, 1.0)


def zscore(a: np.ndarray) -> np.ndarray:
    """Each column to mean 0 and standard deviation 1 (constant columns only centred)."""
    mu, sd = column_scale(a)
    return (a - mu) / sd


def _zscore_t(a: torch.Tensor) -> torch.Tensor:
    """:func:`zscore` along dim -2 of a float64 tensor (..., T, n)."""
    sd = a.std(dim=-2, correction=0, keepdim=True)  # (..., 1, n)
    return (a - a.mean(dim=-2, keepdim=True)) / torch.where(sd > 0, sd, torch.ones_like(sd))


def latent_identified(model: ConvSSM, n_lat: int) -> bool:
    """Whether the first n_lat latents are in data units (identity read-out of observed channels)."""
    return model.spec.observation == "identity" and n_lat <= model.spec.n_obs


def initial_states(model: ConvSSM, sd: SubjectData, n: int, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """n perturbed copies of the state at the first valid target: (1, n, M); row 0 unperturbed (model S = 1)."""
    t = lambda a: torch.as_tensor(a, dtype=model.filter.dtype, device=model.filter.device)  # noqa: E731
    t0 = int(np.flatnonzero(np.isfinite(sd.d[:, 0]))[0])
    rd0 = None if sd.rd is None else t(sd.rd[t0])[None, None, None]
    d0 = model.targets(t(sd.d[t0])[None, None, None], rd0)[:, :, 0]  # (1, 1, Mf)
    z0 = model.init_state(d0).expand(1, n, -1).clone()  # (1, n, M)
    noise = torch.randn(z0.shape, generator=gen, dtype=z0.dtype).to(z0.device) * sigma
    noise[:, 0] = 0
    return z0 + noise


def initial_states_batch(model: ConvSSM, subjects: list[SubjectData], n: int, sigma: float,
                         gens: list[torch.Generator]) -> torch.Tensor:
    """:func:`initial_states` of every fit of a stack at once: (S, n, M), fit i's perturbations from gens[i]."""
    has_rd = [sd.rd is not None for sd in subjects]
    if any(has_rd) and not all(has_rd):  # mixed nuisance: one fit at a time
        return torch.cat([initial_states(model.subject(i), sd, n, sigma, g)
                          for i, (sd, g) in enumerate(zip(subjects, gens))])
    t = lambda a: torch.as_tensor(a, dtype=model.filter.dtype, device=model.filter.device)  # noqa: E731
    t0 = [int(np.flatnonzero(np.isfinite(sd.d[:, 0]))[0]) for sd in subjects]
    rd0 = t(np.stack([sd.rd[i] for sd, i in zip(subjects, t0)]))[:, None, None] if all(has_rd) else None
    d0 = model.targets(t(np.stack([sd.d[i] for sd, i in zip(subjects, t0)]))[:, None, None], rd0)[:, :, 0]  # (S, 1, Mf)
    z0 = model.init_state(d0).expand(-1, n, -1)  # (S, n, M)
    noise = torch.cat([torch.randn((1, n, z0.shape[-1]), generator=g, dtype=z0.dtype) for g in gens])  # (S, n, M)
    noise[:, 0] = 0
    return z0 + noise.to(z0.device) * sigma


def noise_generator(seed: int) -> torch.Generator:
    """The CPU generator of a fit's generation noise: seeded from (seed, 1), apart from the initial states'."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), 1]).generate_state(1)[0]))


def generation_noise(seed: int, n_rollouts: int, n_latent: int, n_obs: int, M: int, N: int,
                     latent: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Standard-normal draws of one fit: latent (R, n_latent−1, M) or None, then observation (R, n_obs, N), float64."""
    gen = noise_generator(seed)
    eps_z = torch.randn(n_rollouts, max(n_latent - 1, 0), M, generator=gen, dtype=torch.float64) if latent else None
    eps_x = torch.randn(n_rollouts, n_obs, N, generator=gen, dtype=torch.float64)
    return eps_z, eps_x


def _noise_sizes(n_rollouts: int, n_latent: int, n_obs: int, M: int, N: int, latent: bool) -> tuple[int, int]:
    """Values of a fit's latent and observation draws (:func:`generation_noise`)."""
    return (n_rollouts * max(n_latent - 1, 0) * M if latent else 0), n_rollouts * n_obs * N


def draw_noise_uniforms(seeds: list[int], n_rollouts: int, n_latent: int, n_obs: int, M: int, N: int,
                        latent: bool, pin: bool = False) -> torch.Tensor | None:
    """The uniforms behind :func:`generation_noise` of each fit, (F, n) float64 on the CPU; None where a draw
    is too small for :func:`dsr.analysis.draws.randn_from_uniforms` (then :func:`generation_noise_batch`
    draws as :func:`generation_noise` does)."""
    nz, nx = _noise_sizes(n_rollouts, n_latent, n_obs, M, N, latent)
    if 0 < nz < 16 or nx < 16:
        return None
    return draw_uniforms([noise_generator(s) for s in seeds], (uniform_count(nz) if nz else 0) + uniform_count(nx),
                         pin)


def generation_noise_batch(seeds: list[int], n_rollouts: int, n_latent: int, n_obs: int, M: int, N: int,
                           latent: bool, device=None, uniforms: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """:func:`generation_noise` of F fits at once: latent (F, R, n_latent−1, M) or None, observation
    (F, R, n_obs, N), float64 on ``device``; equal to the per-fit draws to rounding.

    On a GPU the CPU draws only the uniforms (:func:`draw_noise_uniforms`, passed as ``uniforms`` or drawn
    here) and the Box–Muller transform runs on the GPU; on the CPU each generator's own normals are drawn
    straight into the stacked tensors (the transform is no cheaper there)."""
    R, F = n_rollouts, len(seeds)
    nz, nx = _noise_sizes(R, n_latent, n_obs, M, N, latent)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if uniforms is None and dev.type == "cuda":
        uniforms = draw_noise_uniforms(seeds, R, n_latent, n_obs, M, N, latent)
    if uniforms is None:  # the generators' own normals
        eps_z = torch.empty(F, R, max(n_latent - 1, 0), M, dtype=torch.float64) if latent else None
        eps_x = torch.empty(F, R, n_obs, N, dtype=torch.float64)
        for f, s in enumerate(seeds):
            gen = noise_generator(s)  # the order of generation_noise: latent, then observation
            if latent:
                torch.randn(eps_z.shape[1:], generator=gen, dtype=torch.float64, out=eps_z[f])
            torch.randn(eps_x.shape[1:], generator=gen, dtype=torch.float64, out=eps_x[f])
        return (None if eps_z is None else eps_z.to(dev)), eps_x.to(dev)
    u = uniforms.to(dev, non_blocking=True)  # (F, n)
    uz = uniform_count(nz) if nz else 0
    eps_z = None
    if latent:
        eps_z = (randn_from_uniforms(u[:, :uz], nz) if nz else u[:, :0]).view(F, R, max(n_latent - 1, 0), M)
    eps_x = randn_from_uniforms(u[:, uz:], nx).view(F, R, n_obs, N)  # (F, R, n_obs, N)
    return eps_z, eps_x


def lyapunov_spectra(model: ConvSSM, subjects: list[SubjectData], cfg: EvalConfig,
                     gens: list[torch.Generator]) -> np.ndarray:
    """Lyapunov spectrum per step of every fit, median over ``cfg.lyap_orbits`` orbits (float64): (S, M)."""
    m64 = ConvSSM(model.spec, {k: v.detach().double() for k, v in model.params.items()}, model.filter.double())
    S, O, M = model.n_subjects, cfg.lyap_orbits, model.spec.latent_dim
    z0 = initial_states_batch(m64, subjects, O, 0.1, gens).reshape(S * O, M)  # (S*O, M)
    spec = lyapunov_spectrum(lambda z: m64.step(z.view(S, O, M)).reshape(S * O, M),
                             lambda z: m64.jacobian(z.view(S, O, M)).reshape(S * O, M, M), z0,
                             n_steps=cfg.lyap_steps, transient=cfg.lyap_transient)  # (S*O, M)
    spec = spec.view(S, O, M).cpu().numpy()  # (S, O, M)
    return np.stack([np.nanmedian(s, axis=0) if np.isfinite(s).any() else np.full(M, np.nan) for s in spec])


@contextmanager
def part(name: str, device: torch.device):
    """Time a part of the evaluation as the stage ``evaluation/<name>`` (:mod:`dsr.timing`; exclusive, so
    ``evaluation`` keeps the rest); on CUDA the part waits for its kernels, so their time is its own."""
    with stage(f"evaluation/{name}"):
        yield
        if device.type == "cuda":
            torch.cuda.synchronize(device)


def _summaries(values: torch.Tensor, name: str, out: list[dict]) -> None:
    """Per fit: ``name`` = mean over finite rollout values (inf if none), ``name_median`` = median; values (F, R)."""
    for f, v in enumerate(values.cpu().numpy()):
        fin = v[np.isfinite(v)]
        out[f][name] = float(fin.mean()) if fin.size else float("inf")
        out[f][f"{name}_median"] = float(np.median(v)) if v.size else float("nan")


@torch.no_grad()
def evaluate(model: ConvSSM, subjects: list[SubjectData], cfg: EvalConfig, seeds: list[int],
             latent_truths: list[np.ndarray | None] | None = None,
             chunk: int | None = None) -> list[tuple[FitMetrics, np.ndarray, np.ndarray]]:
    """All metrics of every fit of a stacked model, batched on the model's device.

    Parameters
    ----------
    model : ConvSSM
        S stacked fits (parameters (S, ...)), on any device. With ``cfg.generation == "stochastic"``
        and no ``noise.obs`` parameter, the noise is estimated and added to ``model.params``.
    subjects : list of SubjectData
        The data of each fit (length S); N and the TR are shared, T may differ.
    cfg : EvalConfig
    seeds : list of int
        Seed of each fit's evaluation (perturbations, Monte-Carlo samples, orbit starts, noise).
    latent_truths : list of (ndarray (T_i, n_lat) or None), optional
        Ground-truth latents per fit for the latent-space metrics.
    chunk : int, optional
        Fits generated and scored together (default: from the rollout size and the device).

    Returns
    -------
    list of (FitMetrics, x_gen, z_gen)
        Per fit: the record, the unperturbed rollout of the configured generator (T, N, standardised
        units) and its latents (T+K−1, M).
    """
    S = model.n_subjects
    if len(subjects) != S or len(seeds) != S:
        raise ValueError(f"{S} fits but {len(subjects)} subjects and {len(seeds)} seeds")
    stochastic = cfg.generation == "stochastic"
    if stochastic and OBS_NOISE not in model.params:
        with part("noise", model.filter.device):
            estimate_noise(model, subjects, latent=cfg.latent_noise, obs_covariance=cfg.obs_noise_covariance,
                           latent_covariance=cfg.latent_noise_covariance)
        if cfg.output_calibration == "moments":
            with part("calibration", model.filter.device):
                calibrate_output(model, subjects, seeds)
    truths = list(latent_truths) if latent_truths is not None else [None] * S
    kind = "cuda" if model.filter.device.type == "cuda" else "cpu"
    R, K = cfg.n_rollouts, model.kernel_size
    groups: dict = {}
    for i, (sd, t) in enumerate(zip(subjects, truths)):
        groups.setdefault((len(sd.x), sd.n_train, None if t is None else len(t)), []).append(i)
    chunks = []  # (fits, T, n_train, truth length): generated and scored together
    for (T, n_train, t_len), members in groups.items():
        per_fit = R * max(T + K - 1, t_len or 0) * model.spec.latent_dim * 8 * (6 if stochastic else 3)
        step = chunk or max(1, min(len(members), _ROLLOUT_BYTES[kind] // per_fit))
        chunks += [(members[c:c + step], T, n_train, t_len) for c in range(0, len(members), step)]
    lat_noise = stochastic and LATENT_NOISE in model.params
    M, N = model.spec.latent_dim, model.spec.n_obs

    def uniforms(c: int):  # the CPU part of chunk c's noise draws, made in a thread while the device works
        idx, T, _, t_len = chunks[c]
        args = ([int(seeds[i]) for i in idx], R, max(T + K - 1, t_len or 0), T, M, N, lat_noise)
        if kind != "cuda":  # on the CPU: the draws themselves
            return generation_noise_batch(*args)
        with torch.cuda.device(model.filter.device):  # the model's GPU
            u = draw_noise_uniforms(*args, pin=True)
            return u if u is not None else generation_noise_batch(*args)  # (too small to transform: normals)

    with ThreadPoolExecutor(max_workers=1) as pool:  # on a GPU the CPU draws a chunk ahead, in a thread;
        # on the CPU they are drawn when needed (the process keeps the threads it was given)
        ahead = (lambda c: pool.submit(uniforms, c)) if kind == "cuda" else (lambda c: c)
        pending = ahead(0) if stochastic and chunks else None
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        z0s = initial_states_batch(model, subjects, R, cfg.perturbation, gens)  # (S, R, M)
        x_obs = clean_observations_batch(model, subjects)  # S × (T, N)
        with part("lyapunov", model.filter.device):
            spectra = lyapunov_spectra(model, subjects, cfg, gens)  # (S, M), after the rollout draws
        with part("prediction", model.filter.device):
            pes = prediction_errors(model, subjects, cfg.pe_steps)
        scored: list = [None] * S
        for c, (idx, T, n_train, t_len) in enumerate(chunks):
            noise = None
            if stochastic:
                with part("draws", model.filter.device):
                    u = pending.result() if kind == "cuda" else uniforms(pending)
                    pending = ahead(c + 1) if c + 1 < len(chunks) else None
                    noise = u if isinstance(u, tuple) else generation_noise_batch(
                        [int(seeds[i]) for i in idx], R, max(T + K - 1, t_len or 0), T, M, N, lat_noise,
                        model.filter.device, u)
                    noise = tuple(None if e is None else e.to(model.filter.device) for e in noise)
            _score_chunk(model, idx, subjects, x_obs, z0s, truths, seeds, cfg, T, n_train, t_len, stochastic, noise,
                         scored)
    sd_obs, sd_lat = model.noise_sd(OBS_NOISE), model.noise_sd(LATENT_NOISE)
    out = []
    for i in range(S):
        main, det, xg, zg = scored[i]
        rec = FitMetrics(**main, generation=cfg.generation, pe_train=pes[i][0], pe_test=pes[i][1],
                         pe_steps=cfg.pe_steps, lyapunov_max=float(spectra[i, 0]),
                         lyapunov_max_per_second=float(spectra[i, 0] / model.spec.tr),
                         lyapunov_spectrum=[float(v) for v in spectra[i]],
                         obs_noise_sd=None if sd_obs is None or not stochastic else sd_obs[i].tolist(),
                         latent_noise_sd=None if sd_lat is None or not stochastic else sd_lat[i].tolist(),
                         deterministic=None if det is None else RolloutMetrics(**det))
        out.append((rec, xg, zg))
    return out


def _rollout_metrics(X: torch.Tensor, Zl: torch.Tensor | None, xs: list[np.ndarray], truths: list, scales,
                     seeds: list[int], cfg: EvalConfig, T: int, n_train: int, gmm: dict) -> list[dict]:
    """RolloutMetrics fields of F fits: observations X (F, R, T, N), latents Zl (F, R, t_len, n_lat) or None;
    ``gmm`` keeps the GMM references of each part of the data (drawn once for all rollouts of these fits)."""
    metrics: list[dict] = [dict() for _ in xs]
    kw = dict(n_bins=cfg.dstsp_bins, scaling=cfg.dstsp_scaling, bins_max_dims=cfg.bins_max_dims)
    for suffix, lo, hi in (("", 0, T), ("_train", 0, n_train), ("_test", n_train, T)):
        if hi - lo < 2:
            continue
        refs = [x[lo:hi] for x in xs]
        if suffix not in gmm and refs[0].shape[1] > cfg.bins_max_dims:
            gmm[suffix] = gmm_references(refs, seeds, cfg.dstsp_scaling, device=X.device)
        with part("dstsp", X.device):
            _summaries(dstsp_batch(refs, X, seeds, reference=gmm.get(suffix), **kw), f"dstsp{suffix}", metrics)
        ref_t = torch.as_tensor(np.stack(refs), device=X.device)  # (F, T_part, N)
        with part("dh", X.device):
            _summaries(dh_batch(ref_t, X, cfg.spectrum_smoothing), f"dh{suffix}", metrics)
    div = (~torch.isfinite(X).all(-1).all(-1)).double().mean(1).cpu().numpy()  # (F,)
    for f in range(len(xs)):
        metrics[f]["diverged_rollouts"] = float(div[f])
    if Zl is None:
        return metrics
    truth = [zscore(np.asarray(t, dtype=np.float64)) for t in truths]
    fin = torch.isfinite(Zl).all(-1).all(-1)  # (F, R)
    Zl0 = torch.where(fin[:, :, None, None], Zl, torch.zeros((), dtype=Zl.dtype, device=Zl.device))
    nan = torch.full((), float("nan"), dtype=Zl.dtype, device=Zl.device)
    Zz = torch.where(fin[:, :, None, None], _zscore_t(Zl0), nan)  # (F, R, t_len, n_lat) diverged: NaN
    if "latent" not in gmm and truth[0].shape[1] > cfg.bins_max_dims:
        gmm["latent"] = gmm_references(truth, seeds, cfg.dstsp_scaling, device=Zl.device)
    _summaries(dstsp_batch(truth, Zz, seeds, reference=gmm.get("latent"), **kw), "dstsp_latent", metrics)
    truth_t = torch.as_tensor(np.stack(truth), device=Zl.device)  # (F, t_len, n_lat)
    _summaries(dh_batch(truth_t, Zz, cfg.spectrum_smoothing), "dh_latent", metrics)
    if scales is not None:  # in data units, standardised by the truth
        a, b = scales  # (F, n_lat) each
        Zu = Zl * a[:, None, None] + b[:, None, None]  # (F, R, t_len, n_lat)
        _summaries(dstsp_batch(truth, Zu, seeds, reference=gmm.get("latent"), **kw), "dstsp_latent_units", metrics)
    return metrics


def _score_chunk(model, idx, subjects, x_obs, z0s, truths, seeds, cfg, T, n_train, t_len, stochastic, draws, scored):
    """Generate and score the fits idx (same T, n_train and truth length) into scored[i]; ``noise`` their
    :func:`generation_noise_batch` draws (``draws``, stochastic generation)."""
    sel = torch.as_tensor(idx, device=model.filter.device)
    sub = ConvSSM(model.spec, {k: v[sel] for k, v in model.params.items()}, model.filter[sel])
    subs = [subjects[i] for i in idx]
    sds = [int(seeds[i]) for i in idx]
    F, K, dev = len(idx), model.kernel_size, model.filter.device
    M, N = model.spec.latent_dim, model.spec.n_obs
    n_gen = T + K - 1
    z0 = z0s[sel]  # (F, R, M)
    R, dt = z0.shape[1], z0.dtype
    inputs = None
    if any(sd.s is not None for sd in subs):
        q = next(sd.s for sd in subs if sd.s is not None).shape[1]
        s = np.zeros((F, n_gen, q))  # (F, n_gen, Q); a fit without inputs gets zeros
        for f, sd in enumerate(subs):
            if sd.s is not None:
                m = min(n_gen, len(sd.s))
                s[f, :m] = sd.s[:m]
        inputs = torch.as_tensor(s, dtype=dt, device=dev)[:, None].expand(-1, R, -1, -1)  # (F, R, n_gen, Q)
    n_lat = max(n_gen, t_len or 0)
    lat_noise = stochastic and LATENT_NOISE in sub.params
    eps_z = draws[0].to(dt) if lat_noise else None  # (F, R, n_lat-1, M)

    def rollouts(noise):
        Z = sub.generate(z0, n_gen if inputs is not None else n_lat, inputs, noise)  # (F, R, n, M)
        X = sub.observe(Z[:, :, :n_gen]).double()  # (F, R, T, N)
        Zl = None
        if t_len is not None:  # latent rollouts without inputs, as long as the truth
            Zl = sub.generate(z0, t_len, None, noise) if inputs is not None else Z
            Zl = Zl[:, :, :t_len, :np.shape(truths[idx[0]])[1]].double()  # (F, R, t_len, n_lat)
        return Z, X, Zl

    scales = None
    if t_len is not None and latent_identified(model, np.shape(truths[idx[0]])[1]):
        n_l = np.shape(truths[idx[0]])[1]
        sc = [(sd.std[:n_l], sd.mean[:n_l]) + column_scale(np.asarray(truths[i], dtype=np.float64))
              for sd, i in zip(subs, idx)]
        scales = (torch.as_tensor(np.stack([s_ / t_ for s_, _, _, t_ in sc]), device=dev),  # (F, n_lat)
                  torch.as_tensor(np.stack([(m_ - mu) / t_ for _, m_, mu, t_ in sc]), device=dev))
    xs, tr_ = [x_obs[i] for i in idx], [truths[i] for i in idx]
    with part("rollouts", dev):
        Z, X, Zl = rollouts(None)
    gmm: dict = {}  # the data's GMM references, shared by the deterministic and the stochastic rollouts
    det = _rollout_metrics(X, Zl, xs, tr_, scales, sds, cfg, T, n_train, gmm)
    main = det
    if stochastic:
        Zl_s = None  # without process noise the latents are the deterministic ones: copy their metrics
        if lat_noise:
            with part("rollouts", dev):
                Z, X, Zl_s = rollouts(eps_z)
        X = sub.calibrate_output(sub.add_observation_noise(X, draws[1]))  # (F, R, T, N) float64
        main = _rollout_metrics(X, Zl_s, xs, tr_, scales, sds, cfg, T, n_train, gmm)
        if Zl is not None and Zl_s is None:
            for m_, d_ in zip(main, det):
                m_.update({k: v for k, v in d_.items() if "_latent" in k})
    X0 = X[:, 0].cpu().numpy()  # (F, T, N)
    Z0 = Z[:, 0, :n_gen].cpu().double().numpy()  # (F, T+K-1, M)
    for f, i in enumerate(idx):
        scored[i] = (main[f], det[f] if stochastic else None, X0[f], Z0[f])
