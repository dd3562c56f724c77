"""Normal draws of CPU generators made on any device (dsr.analysis.draws) equal torch.randn's, and the
evaluation's batched noise equals its per-fit draws."""
import pytest
import torch

from dsr.analysis.draws import draw_uniforms, randn_from_uniforms, randn_like_cpu, stacked_randn, uniform_count
from dsr.analysis.evaluate import draw_noise_uniforms, generation_noise, generation_noise_batch


@pytest.mark.parametrize("shape", [(16,), (3, 7, 5), (2, 17), (100, 33, 4)])
def test_randn_like_cpu_equals_randn(shape):
    want = torch.randn(shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    got = randn_like_cpu(torch.Generator().manual_seed(7), shape)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


def test_uniforms_continue_the_stream_like_randn():
    """Two randn calls on one generator = one run of uniforms cut at uniform_count(n) of the first."""
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(37, generator=g, dtype=torch.float64), torch.randn(48, generator=g, dtype=torch.float64)
    u = draw_uniforms([torch.Generator().manual_seed(3)], uniform_count(37) + uniform_count(48))
    torch.testing.assert_close(randn_from_uniforms(u[:, :uniform_count(37)], 37)[0], a, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(randn_from_uniforms(u[:, uniform_count(37):], 48)[0], b, rtol=1e-13, atol=1e-13)


def test_small_draws_are_refused():
    with pytest.raises(ValueError):
        randn_from_uniforms(torch.rand(1, 16, dtype=torch.float64), 8)


@pytest.mark.parametrize("latent", [True, False])
@pytest.mark.parametrize("sizes", [(5, 41, 40, 3, 4), (1, 2, 2, 1, 1)])  # the second too small: randn's own path
def test_generation_noise_batch_equals_per_fit_draws(latent, sizes):
    """On the CPU the generators' own normals; with uniforms (the GPU path) the transform of them."""
    R, n_lat, n_obs, M, N = sizes
    seeds = [0, 11, 12345]
    uniforms = draw_noise_uniforms(seeds, R, n_lat, n_obs, M, N, latent)
    assert (uniforms is None) == (sizes[0] == 1)  # too few values: no transform
    for eps_z, eps_x in (generation_noise_batch(seeds, R, n_lat, n_obs, M, N, latent),
                         generation_noise_batch(seeds, R, n_lat, n_obs, M, N, latent, uniforms=uniforms)):
        _equal_per_fit(eps_z, eps_x, seeds, sizes, latent)


def _equal_per_fit(eps_z, eps_x, seeds, sizes, latent):
    R, n_lat, n_obs, M, N = sizes
    for f, s in enumerate(seeds):
        wz, wx = generation_noise(s, R, n_lat, n_obs, M, N, latent)
        torch.testing.assert_close(eps_x[f], wx, rtol=1e-13, atol=1e-13)
        if latent:
            torch.testing.assert_close(eps_z[f], wz, rtol=1e-13, atol=1e-13)
        else:
            assert eps_z is None and wz is None


@pytest.mark.parametrize("via_uniforms", [False, True])
def test_stacked_randn_equals_each_generators_draws(via_uniforms):
    shapes = [(3, 11, 2), (4, 5)]
    got = stacked_randn([torch.Generator().manual_seed(s) for s in (1, 2)], shapes, via_uniforms=via_uniforms)
    for f, s in enumerate((1, 2)):
        g = torch.Generator().manual_seed(s)
        for out, shape in zip(got, shapes):
            torch.testing.assert_close(out[f], torch.randn(shape, generator=g, dtype=torch.float64),
                                       rtol=1e-13, atol=1e-13)
