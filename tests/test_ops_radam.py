"""The fused guarded-RAdam kernel against its plain-PyTorch twin, and the twin against the per-tensor
optimiser and NaN guard it replaces (SubjectRAdam.step + rollback + bookkeeping).

Without CUDA the kernel runs on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``, set by
conftest.py before Triton is imported). Tolerance: float32 parameters and moments to 1e-6 relative (the kernel
computes the per-fit factors with exp/log instead of pow); the guard's integer and boolean state exactly.
"""
import pytest
import torch

triton = pytest.importorskip("triton")

from dsr.ops.radam import guarded_radam_ref  # noqa: E402
from dsr.ops.radam_triton import guarded_radam_triton  # noqa: E402
from dsr.training.radam import SubjectRAdam, flat_leaves  # noqa: E402
from dsr.training.step import StepState, rollback, finite_params  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPES = {"A": (3,), "W1": (3, 5), "W2": (5, 3), "h2": (5,), "noGrad": (2,)}


def _problem(S, seed, nan_fit=None, inf_loss_fit=None, inactive_fit=None, steps=0):
    gen = torch.Generator().manual_seed(seed)
    params = flat_leaves({k: torch.randn((S,) + s, generator=gen).to(DEVICE) for k, s in SHAPES.items()})
    opt = SubjectRAdam(params)
    opt.state["step"].fill_(steps)
    for k in SHAPES:
        opt.state[f"m.{k}"].copy_(0.1 * torch.randn((S,) + SHAPES[k], generator=gen))
        opt.state[f"v.{k}"].copy_(0.01 * torch.rand((S,) + SHAPES[k], generator=gen))
    st = StepState.create(params, opt, torch.full((S,), 0.1, device=DEVICE))
    st.start_epoch(1e-2)
    st.losses.fill_(1.5)
    st.n_ok.fill_(2.0)
    grads = {k: torch.randn((S,) + s, generator=gen).to(DEVICE) for k, s in SHAPES.items() if k != "noGrad"}
    if nan_fit is not None:
        grads["W1"][nan_fit, 0, 0] = float("nan")
    loss = torch.rand(S, generator=gen).to(DEVICE)
    if inf_loss_fit is not None:
        loss[inf_loss_fit] = float("inf")
    if inactive_fit is not None:
        st.active[inactive_fit] = False
    with torch.no_grad():  # a different roll-back point than the current parameters
        for k, p in params.items():
            st.good[k].copy_(p + 1.0)
        for k, v in opt.state.items():
            st.good_opt[k].copy_(v * 0.5)
    return params, opt, st, grads, loss


def _run(fn, params, opt, st, grads, loss):
    g = opt.gather_grads(grads)
    fn(opt.flat_p, g, opt.flat_m, opt.flat_v, st.good_flat["p"], st.good_flat["m"], st.good_flat["v"],
       opt.segment_table(tuple(k in grads for k in params)), opt.state["step"], st.good_opt["step"], loss,
       st.lr_epoch, st.lr_factor, st.retries, st.active, st.losses, st.n_ok, nan_lr_factor=0.5, nan_retries=1)


def _state(params, opt, st):
    out = {f"p.{k}": v.detach().clone() for k, v in params.items()}
    out.update({f"o.{k}": v.clone() for k, v in opt.state.items()})
    out.update(retries=st.retries.clone(), active=st.active.clone(), lr_factor=st.lr_factor.clone(),
               losses=st.losses.clone(), n_ok=st.n_ok.clone())
    return out


@pytest.mark.parametrize("S,case", [(1, {}), (3, {"nan_fit": 1}), (4, {"inf_loss_fit": 2, "inactive_fit": 0}),
                                    (3, {"steps": 10}), (2, {"steps": 49999}),
                                    (2, {"nan_fit": 0, "inactive_fit": 0})])
def test_kernel_equals_twin(S, case):
    ref = _problem(S, 0, **case)
    ker = _problem(S, 0, **case)
    _run(guarded_radam_ref, *ref)
    _run(guarded_radam_triton, *ker)
    a, b = _state(*ref[:3]), _state(*ker[:3])
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7, msg=k)
        else:
            assert torch.equal(b[k], a[k]), k


@pytest.mark.parametrize("case", [{}, {"nan_fit": 1}, {"inf_loss_fit": 2, "inactive_fit": 0}, {"steps": 10}])
def test_twin_equals_per_tensor_optimiser_and_guard(case):
    """What the training step did before the fused update: SubjectRAdam.step, then the NaN guard."""
    S = 3
    new = _problem(S, 1, **case)
    _run(guarded_radam_ref, *new)
    params, opt, st, grads, loss = _problem(S, 1, **case)
    for k, p in params.items():
        p.grad = grads.get(k)
    finite = torch.isfinite(loss)
    use = finite & st.active
    opt.step(st.lr_epoch * st.lr_factor, use)
    with torch.no_grad():
        bad = st.active & ~(finite & finite_params(params))
        rollback(params, opt, st.good, st.good_opt, bad)
        st.retries.add_(bad.to(torch.int64))
        st.lr_factor.copy_(torch.where(bad, st.lr_factor * 0.5, st.lr_factor))
        st.active.copy_(st.active & (st.retries <= 1))
        st.losses.add_(torch.where(use, loss.double(), torch.zeros_like(st.losses)))
        st.n_ok.add_(use.double())
    a, b = _state(params, opt, st), _state(*new[:3])
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7, msg=k)
        else:
            assert torch.equal(b[k], a[k]), k
    if case.get("nan_fit") is not None:
        i = case["nan_fit"]
        assert int(b["retries"][i]) == 1 and float(b["lr_factor"][i]) == 0.5 and bool(b["active"][i])
        torch.testing.assert_close(b["p.W1"][i], new[2].good["W1"][i])  # rolled back
