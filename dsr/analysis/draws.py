"""Standard-normal draws of a CPU ``torch.Generator``, made on any device, equal to ``torch.randn``'s.

The evaluation's noise comes from CPU generators seeded per fit, so that a fit's metrics depend on its
seed alone. ``torch.randn(n, dtype=float64, generator=g)`` on the CPU (n ≥ 16, contiguous) draws n
uniforms u = (64 random bits mod 2⁵³)·2⁻⁵³, one after the other, then applies the Box–Muller transform
to each block of 16: for j < 8, r = √(−2 log(1 − u_j)), θ = 2π u_{j+8}, out_j = r cos θ, out_{j+8} = r sin θ;
when 16 does not divide n it draws 16 more uniforms and recomputes the last 16 values from them.
``torch.rand(…, dtype=float64, generator=g)`` draws the same uniforms in the same order, so the costly
part (the transform, ~2/3 of the CPU time of ``randn``) can run on the device, batched over fits:
:func:`randn_from_uniforms`. The values equal ``randn``'s to rounding (the device's log / cos / sin).
:func:`uniform_count` is how many uniforms a ``randn`` call consumes.
"""
from __future__ import annotations

import math

import torch

_BLOCK = 16


def uniform_count(n: int) -> int:
    """Uniforms that ``torch.randn`` of n float64 values draws from a CPU generator (n ≥ 16)."""
    return n + (_BLOCK if n % _BLOCK else 0)


def _box_muller(u: torch.Tensor) -> torch.Tensor:
    """Blocks of 16 uniforms (..., B, 16) → their 16 normals, as ATen's ``normal_fill_16``."""
    r = torch.sqrt(-2.0 * torch.log(1.0 - u[..., :8]))  # (..., B, 8)
    theta = 2.0 * math.pi * u[..., 8:]  # (..., B, 8)
    return torch.cat([r * torch.cos(theta), r * torch.sin(theta)], dim=-1)  # (..., B, 16)


def randn_from_uniforms(u: torch.Tensor, n: int) -> torch.Tensor:
    """The n normals ``torch.randn`` makes from the uniforms u (F, uniform_count(n)) of F generators: (F, n).

    Raises ValueError for n < 16 (``randn`` uses another algorithm there) or a wrong number of uniforms.
    """
    if n < _BLOCK:
        raise ValueError(f"randn_from_uniforms needs n >= {_BLOCK}, got {n}")
    if u.shape[-1] != uniform_count(n):
        raise ValueError(f"{u.shape[-1]} uniforms for {n} normals; expected {uniform_count(n)}")
    F, full = u.shape[0], n // _BLOCK * _BLOCK
    out = torch.empty(F, n, dtype=u.dtype, device=u.device)  # (F, n)
    out[:, :full] = _box_muller(u[:, :full].reshape(F, -1, _BLOCK)).reshape(F, full)
    if full != n:  # the last 16 values again, from 16 fresh uniforms
        out[:, n - _BLOCK:] = _box_muller(u[:, n:n + _BLOCK])
    return out


def draw_uniforms(gens: list[torch.Generator], n: int, pin: bool = False) -> torch.Tensor:
    """n float64 uniforms of each CPU generator, (F, n) on the CPU (page-locked with ``pin``), advancing them."""
    u = torch.empty(len(gens), n, dtype=torch.float64, pin_memory=pin)  # (F, n)
    for f, g in enumerate(gens):
        torch.rand(n, generator=g, dtype=torch.float64, out=u[f])
    return u


def randn_like_cpu(gen: torch.Generator, shape: tuple, device=None) -> torch.Tensor:
    """``torch.randn(shape, generator=gen, dtype=float64).to(device)`` with the transform on the device."""
    n = math.prod(shape)
    if n < _BLOCK:
        return torch.randn(shape, generator=gen, dtype=torch.float64).to(device)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    u = draw_uniforms([gen], uniform_count(n), pin=dev.type == "cuda")  # (1, n')
    return randn_from_uniforms(u.to(dev, non_blocking=True), n).view(shape)


def stacked_randn(gens: list[torch.Generator], shapes: list[tuple], device=None,
                  via_uniforms: bool | None = None) -> list[torch.Tensor]:
    """For each shape in turn, ``torch.randn(shape, generator=g, dtype=float64)`` of every generator g, stacked:
    a list of (F, *shape) tensors on ``device``, equal to the per-generator draws. ``via_uniforms`` (default:
    on a GPU) draws only the uniforms on the CPU and transforms them on ``device`` (equal to rounding)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    sizes = [math.prod(s) for s in shapes]
    if not (dev.type == "cuda" if via_uniforms is None else via_uniforms) or min(sizes) < _BLOCK:
        out = [torch.empty(len(gens), *s, dtype=torch.float64) for s in shapes]
        for f, g in enumerate(gens):
            for o in out:
                torch.randn(o.shape[1:], generator=g, dtype=torch.float64, out=o[f])
        return [o.to(dev) for o in out]
    counts = [uniform_count(n) for n in sizes]
    u = draw_uniforms(gens, sum(counts), pin=dev.type == "cuda").to(dev, non_blocking=True)  # (F, Σ counts)
    out, at = [], 0
    for s, n, c in zip(shapes, sizes, counts):
        out.append(randn_from_uniforms(u[:, at:at + c], n).view(len(gens), *s))
        at += c
    return out

