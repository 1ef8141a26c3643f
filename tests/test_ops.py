"""Fast paths against the sequential float64 references, and references against hand-written recurrences."""
import pytest
import torch
import torch.nn.functional as F

from perfmamba.ops import (causal_conv1d_ref, causal_conv1d_shift, causal_conv1d_update_ref, selective_scan_chunked,
                           selective_scan_ref, selective_state_update_ref, ssd_chunked, ssd_ref, ssd_state_update_ref)
from helpers import assert_close

SCAN_CASES = [
    pytest.param(2, 6, 13, 37, 1, 7, 16, id="B2-D6-N13-L37-g1-T7"),
    pytest.param(1, 4, 115, 9, 1, 4, 8, id="B1-D4-N115-L9-g1-T4"),
    pytest.param(2, 8, 3, 300, 2, 8, 64, id="B2-D8-N3-L300-g2-T8"),
    pytest.param(1, 5, 16, 1, 1, 8, 64, id="B1-D5-N16-L1"),
]


def _scan_inputs(b, d, n, l, g, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    B = r(b, g, n, l) if g > 1 else r(b, n, l)
    C = r(b, g, n, l) if g > 1 else r(b, n, l)
    A = -torch.rand(d, n, generator=gen, dtype=dtype) * 4
    return dict(u=r(b, d, l), delta=r(b, d, l), A=A, B=B, C=C, D=r(d), z=r(b, d, l), delta_bias=r(d))


@pytest.mark.parametrize("b,d,n,l,g,T,Lb", SCAN_CASES)
def test_selective_scan_chunked_matches_sequential(b, d, n, l, g, T, Lb):
    x = _scan_inputs(b, d, n, l, g)
    h0 = torch.randn(b, d, n, dtype=torch.float64)
    y1, s1 = selective_scan_ref(**x, delta_softplus=True, return_last_state=True, initial_state=h0)
    y2, s2 = selective_scan_chunked(**x, delta_softplus=True, return_last_state=True, initial_state=h0,
                                    chunk_size=T, block_size=Lb)
    assert_close(y2, y1, atol=1e-12, rtol=1e-10, what="y")
    assert_close(s2, s1, atol=1e-12, rtol=1e-10, what="state")


def test_selective_scan_ref_matches_hand_recurrence():
    """One channel, one state, no softplus: h_t = e^{Δa} h + Δ b u, y = c h."""
    u, dl = torch.tensor([[[1.0, 2.0, -1.0]]]), torch.tensor([[[0.5, 1.0, 2.0]]])
    A, B, C = torch.tensor([[-1.0]]), torch.tensor([[[1.0, 0.5, 2.0]]]), torch.tensor([[[2.0, 1.0, 1.0]]])
    h, ys = 0.0, []
    for t in range(3):
        h = torch.exp(dl[0, 0, t] * A[0, 0]) * h + dl[0, 0, t] * B[0, 0, t] * u[0, 0, t]
        ys.append(C[0, 0, t] * h)
    assert_close(selective_scan_ref(u.double(), dl.double(), A.double(), B.double(), C.double())[0, 0],
                 torch.stack(ys).double(), atol=1e-12)


def test_selective_scan_float32_close_to_float64():
    x64 = _scan_inputs(2, 16, 16, 200, 1)
    x32 = {k: v.float() for k, v in x64.items()}
    assert_close(selective_scan_chunked(**x32, delta_softplus=True), selective_scan_ref(**x64, delta_softplus=True),
                 atol=1e-4, rtol=1e-4)


def test_selective_state_update_is_one_scan_step():
    b, d, n, l = 2, 6, 13, 5
    x = _scan_inputs(b, d, n, l, 1)
    y_ref, s_ref = selective_scan_ref(**x, delta_softplus=True, return_last_state=True)
    state = torch.zeros(b, d, n, dtype=torch.float64)
    ys = [selective_state_update_ref(state, x["u"][..., t], x["delta"][..., t], x["A"], x["B"][..., t], x["C"][..., t],
                                     x["D"], x["z"][..., t], x["delta_bias"], dt_softplus=True) for t in range(l)]
    assert_close(torch.stack(ys, -1), y_ref, atol=1e-12)
    assert_close(state, s_ref, atol=1e-12)


SSD_CASES = [
    pytest.param(2, 37, 4, 3, 2, 13, 8, id="B2-L37-H4-P3-G2-N13-T8"),
    pytest.param(1, 1, 2, 2, 1, 5, 4, id="B1-L1-H2-P2-G1-N5"),
    pytest.param(2, 64, 6, 4, 3, 7, 16, id="B2-L64-H6-G3-N7-T16"),
    pytest.param(1, 70, 2, 4, 1, 115, 32, id="B1-L70-N115-T32"),
]


def _ssd_inputs(b, l, h, p, g, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    return dict(x=r(b, l, h, p), dt=r(b, l, h), A=-torch.rand(h, generator=gen, dtype=torch.float64) * 3,
                B=r(b, l, g, n), C=r(b, l, g, n), D=r(h), dt_bias=r(h))


@pytest.mark.parametrize("b,l,h,p,g,n,T", SSD_CASES)
def test_ssd_chunked_matches_sequential(b, l, h, p, g, n, T):
    x = _ssd_inputs(b, l, h, p, g, n)
    h0 = torch.randn(b, h, p, n, dtype=torch.float64)
    y1, s1 = ssd_ref(**x, dt_softplus=True, initial_states=h0, return_final_states=True)
    y2, s2 = ssd_chunked(**x, dt_softplus=True, initial_states=h0, return_final_states=True, chunk_size=T)
    assert_close(y2, y1, atol=1e-11, rtol=1e-10, what="y")
    assert_close(s2, s1, atol=1e-11, rtol=1e-10, what="state")


def test_ssd_equals_mamba1_scan_with_scalar_decay():
    """SSD is the selective scan with A shared by all channels of a head: check on one head."""
    b, l, p, n = 1, 11, 3, 4
    x = _ssd_inputs(b, l, 1, p, 1, n)
    y = ssd_ref(**x, dt_softplus=True)  # (b, l, 1, p)
    dt = F.softplus(x["dt"] + x["dt_bias"])[..., 0]  # (b, l)
    y1 = selective_scan_ref(x["x"][:, :, 0].transpose(1, 2), dt[:, None].expand(b, p, l), x["A"].expand(p, n),
                            x["B"][:, :, 0].transpose(1, 2), x["C"][:, :, 0].transpose(1, 2), D=x["D"].expand(p))
    assert_close(y[:, :, 0].transpose(1, 2), y1, atol=1e-12)


def test_ssd_state_update_is_one_step():
    b, l, h, p, g, n = 2, 6, 4, 3, 2, 5
    x = _ssd_inputs(b, l, h, p, g, n)
    y_ref, s_ref = ssd_ref(**x, dt_softplus=True, return_final_states=True)
    state = torch.zeros(b, h, p, n, dtype=torch.float64)
    ys = [ssd_state_update_ref(state, x["x"][:, t], x["dt"][:, t], x["A"], x["B"][:, t], x["C"][:, t], x["D"],
                               x["dt_bias"], dt_softplus=True) for t in range(l)]
    assert_close(torch.stack(ys, 1), y_ref, atol=1e-12)
    assert_close(state, s_ref, atol=1e-12)


@pytest.mark.parametrize("l", [1, 2, 9])
@pytest.mark.parametrize("w", [1, 4])
@pytest.mark.parametrize("token_major", [False, True])
def test_causal_conv_shift_matches_torch_conv(l, w, token_major):
    b, d = 2, 5
    gen = torch.Generator().manual_seed(l * 10 + w)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    # the models pass transposed views of (b, l, d) activations; both layouts must give the same numbers
    x = r(b, l, d).transpose(1, 2) if token_major else r(b, d, l)
    weight, bias, init = r(d, w), r(d), r(b, d, w - 1)
    for kw in (dict(), dict(bias=bias, activation="silu"), dict(initial_states=init, bias=bias)):
        ref, ref_state = causal_conv1d_ref(x, weight, return_final_states=True, **kw)
        out, state = causal_conv1d_shift(x, weight, return_final_states=True, **kw)
        assert out.shape == (b, d, l) and state.shape == (b, d, w - 1)
        assert_close(out, ref, atol=1e-12)
        assert_close(state, ref_state, atol=1e-12)


def test_causal_conv_prefill_then_updates_match_full():
    b, d, l, w = 2, 5, 9, 4
    x, weight, bias = torch.randn(b, d, l, dtype=torch.float64), torch.randn(d, w, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    full = causal_conv1d_ref(x, weight, bias, activation="silu")
    # hand-computed causal conv for one position
    t = 5
    hand = F.silu((x[:, :, t - w + 1: t + 1] * weight).sum(-1) + bias)
    assert_close(full[:, :, t], hand, atol=1e-12)
    out, fs = causal_conv1d_ref(x[..., :6], weight, bias, activation="silu", return_final_states=True)
    state = torch.cat([torch.zeros(b, d, 1, dtype=torch.float64), fs], -1)  # (b, d, w)
    steps = [causal_conv1d_update_ref(x[..., t], state, weight, bias, activation="silu") for t in range(6, l)]
    assert_close(torch.cat([out, torch.stack(steps, -1)], -1), full, atol=1e-12)
    # continuing a prefill from initial states
    out2 = causal_conv1d_ref(x[..., 6:], weight, bias, initial_states=fs, activation="silu")
    assert_close(out2, full[..., 6:], atol=1e-12)


def test_ssd_chunked_gradients_match_the_sequential_reference():
    """Without autograd the chunked SSD works in place; with it, the same numbers and differentiable."""
    gen = torch.Generator().manual_seed(5)
    b, l, h, p, g, n = 2, 37, 4, 3, 2, 5
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    x, dt, B, C, D, h0 = r(b, l, h, p), r(b, l, h), r(b, l, g, n), r(b, l, g, n), r(h), r(b, h, p, n)
    A = -torch.rand(h, generator=gen, dtype=torch.float64)
    kw = dict(D=D, dt_softplus=True, return_final_states=True)
    with torch.no_grad():
        y0, s0 = ssd_chunked(x, dt, A, B, C, initial_states=h0, chunk_size=8, **kw)
    grads = []
    for fn, extra in ((ssd_chunked, dict(chunk_size=8)), (ssd_ref, {})):
        leaves = [t.clone().requires_grad_() for t in (x, dt, A, B, C, h0)]
        y, s = fn(*leaves[:5], initial_states=leaves[5], **kw, **extra)
        (y.square().sum() + s.sum()).backward()
        grads.append([t.grad for t in leaves])
        if fn is ssd_chunked:
            assert_close(y.detach(), y0, atol=1e-12)
            assert_close(s.detach(), s0, atol=1e-12)
    for a, e in zip(*grads):
        assert_close(a, e, atol=1e-9, rtol=1e-7)
