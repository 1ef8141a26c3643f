"""Activity statistics from hooks against SSM inputs recomputed by hand, and the reference scans."""
import pytest
import torch
import torch.nn.functional as F

from perfmamba import MambaLM, preset
from perfmamba.ops import selective_scan_ref, ssd_ref
from perfmamba.pruning import PruningError, activity_rows, collect_activity, spread_heads
from perfmamba.pruning.activity import calibration_tokens
from helpers import assert_close

CASES = [
    pytest.param("mamba2-tiny", {}, id="mamba2-G1-N13-fp64"),
    pytest.param("mamba2-tiny", {"ngroups": 2}, id="mamba2-G2-N13-fp64"),
    pytest.param("mamba2-tiny", {"d_state": 3, "headdim": 8}, id="mamba2-H8-N3-fp64"),  # more heads than states
    pytest.param("mamba-tiny", {}, id="mamba1-N13-fp64"),
    pytest.param("mamba-tiny", {"d_state": 5}, id="mamba1-N5-fp64"),
]


def tiny(name, **kw):
    return MambaLM.from_config(preset(name, **kw)).double().eval()


@torch.no_grad()
def manual_inputs(model, ids):
    """Per layer: the SSM inputs recomputed from the parameters with F.conv1d (no hooks, no perfmamba ops)."""
    x = model.backbone.embedding(ids)
    out = []
    for layer in model.backbone.layers:
        m = layer.mixer
        hn = layer.norm(x)
        proj = hn @ m.in_proj.weight.t()
        b, l, _ = proj.shape
        w = m.conv1d.weight  # (ch, 1, w)
        conv = lambda t: F.silu(F.conv1d(F.pad(t.transpose(1, 2), (w.shape[-1] - 1, 0)), w, m.conv1d.bias,
                                         groups=w.shape[0])).transpose(1, 2)
        if model.config.arch == "mamba2":
            d, n, h, p, g = m.d_inner, m.d_state, m.nheads, m.headdim, m.ngroups
            z, xBC, dt = proj.split([d, d + 2 * g * n, h], -1)
            xx, B, C = conv(xBC).split([d, g * n, g * n], -1)
            out.append(dict(x=xx.reshape(b, l, h, p), delta=F.softplus(dt + m.dt_bias), A=-m.A_log.exp(),
                            A_log=m.A_log, B=B.reshape(b, l, g, n), C=C.reshape(b, l, g, n), z=z.reshape(b, l, h, p)))
        else:
            xx, z = proj.chunk(2, -1)
            u = conv(xx)
            dtl, B, C = (u @ m.x_proj.weight.t()).split([m.dt_rank, m.d_state, m.d_state], -1)
            delta = F.softplus(dtl @ m.dt_proj.weight.t() + m.dt_proj.bias)
            out.append(dict(x=u, delta=delta, A=-m.A_log.exp(), A_log=m.A_log, B=B, C=C, z=z))
        x = layer(x)
    return out


def test_spread_heads_hand_values():
    v = torch.tensor([10.0, 20.0, 30.0, 40.0])
    assert spread_heads(v, 13).tolist() == [10] * 3 + [20] * 3 + [30] * 3 + [40] * 4  # last head takes the remainder
    assert spread_heads(v, 4).tolist() == [10, 20, 30, 40]
    # more heads than states: contiguous groups ⌊sH/N⌋ … ⌊(s+1)H/N⌋ − 1 averaged
    assert spread_heads(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), 2).tolist() == [1.5, 4.0]
    # Mamba2-130m: 24 heads, 128 states -> 5 per head, the last head 13
    idx = spread_heads(torch.arange(24.0), 128)
    assert torch.bincount(idx.long()).tolist() == [5] * 23 + [13]


@pytest.mark.parametrize("name,kw", CASES)
def test_activity_matches_hand_computed_delta(name, kw):
    model = tiny(name, **kw)
    ids = torch.randint(0, 251, (3, 11), generator=torch.Generator().manual_seed(1))
    act = collect_activity(model, ids, batch_size=2)  # two batches of unequal size
    ref = manual_inputs(model, ids)
    assert act.n_tokens == 33 and act.n_sequences == 3
    for i, r in enumerate(ref):
        n = model.config.d_states[i]
        dm = r["delta"].mean((0, 1))
        assert_close(act.delta_mean[i], dm, atol=1e-12, rtol=0)
        if model.config.arch == "mamba2":
            h = dm.numel()
            if h <= n:
                want = torch.cat([dm[: h - 1].repeat_interleave(n // h), dm[-1:].expand(n - (h - 1) * (n // h))])
            else:
                want = torch.stack([dm[s * h // n:(s + 1) * h // n].mean() for s in range(n)])
            assert_close(act.activity[i], want, atol=1e-12, rtol=0)
            dec_h = (1 - torch.exp(r["delta"] * r["A"])).mean((0, 1))
            assert_close(act.decay[i], spread_heads(dec_h, n), atol=1e-12, rtol=0)
        else:
            want = (r["delta"][..., None] * r["A"].abs()).mean((0, 1, 2))  # E_{t,d}[Δ |A_s|]
            assert_close(act.activity[i], want, atol=1e-12, rtol=0)
            dec = (1 - torch.exp(r["delta"][..., None] * r["A"])).mean((0, 1, 2))  # E_{t,d}|1 − exp(Δ A_s)|
            assert_close(act.decay[i], dec, atol=1e-12, rtol=0)


def test_mamba1_mean_reading_is_constant_across_states():
    model = tiny("mamba-tiny")
    ids = torch.randint(0, 251, (2, 9), generator=torch.Generator().manual_seed(2))
    act = collect_activity(model, ids, mamba1_reading="mean")
    for a, dm in zip(act.activity, act.delta_mean):
        assert_close(a, dm.mean().expand(13), atol=1e-15, rtol=0)


@pytest.mark.parametrize("name,kw", CASES)
def test_scan_statistics_match_reference_scans(name, kw):
    """energy(s) = E|y_s ⊙ silu(z)| with y_s the reference scan restricted to state s; saliency from prefix scans."""
    model = tiny(name, **kw)
    ids = torch.randint(0, 251, (2, 9), generator=torch.Generator().manual_seed(3))
    act = collect_activity(model, ids, scan=True)
    for i, r in enumerate(manual_inputs(model, ids)):
        n = model.config.d_states[i]
        l = ids.shape[1]
        energy, sal = [], torch.zeros(l, n, dtype=torch.float64)
        for s in range(n):
            if model.config.arch == "mamba2":
                args = (r["x"], r["delta"], r["A"], r["B"][..., s:s + 1], r["C"][..., s:s + 1])
                y = ssd_ref(*args)
                energy.append((y * F.silu(r["z"])).abs().mean())
                for t in range(1, l):
                    _, h = ssd_ref(r["x"][:, :t], r["delta"][:, :t], r["A"], r["B"][:, :t, :, s:s + 1],
                                   r["C"][:, :t, :, s:s + 1], return_final_states=True)  # (b, h, p, 1)
                    sal[t, s] = (r["A_log"][None, :, None, None] ** 2 * h ** 2).sum() / ids.shape[0]
            else:
                T = lambda t: t.transpose(1, 2)
                Bs, Cs = T(r["B"][..., s:s + 1]), T(r["C"][..., s:s + 1])  # (b, 1, l)
                y = selective_scan_ref(T(r["x"]), T(r["delta"]), r["A"][:, s:s + 1], Bs, Cs, z=T(r["z"]))
                energy.append(y.abs().mean())
                for t in range(1, l):
                    _, h = selective_scan_ref(T(r["x"])[..., :t], T(r["delta"])[..., :t], r["A"][:, s:s + 1],
                                              Bs[..., :t], Cs[..., :t], return_last_state=True)  # (b, d, 1)
                    sal[t, s] = (r["A_log"][:, s:s + 1] ** 2 * h ** 2).sum() / ids.shape[0]
        assert_close(act.energy[i], torch.stack(energy), atol=1e-12, rtol=0)
        assert_close(act.saliency[i], sal, atol=1e-12, rtol=0)


def test_calibration_tokens_shapes_and_errors():
    model = tiny("mamba2-tiny")
    ids = torch.arange(250)
    assert calibration_tokens(model, ids, seq_len=100).shape == (2, 100)  # the 50-token tail is dropped
    assert calibration_tokens(model, ids[:30], seq_len=100).shape == (1, 30)
    assert calibration_tokens(model, ids[None, :7]).shape == (1, 7)
    with pytest.raises(PruningError, match="empty"):
        calibration_tokens(model, torch.zeros(0, dtype=torch.long))
    with pytest.raises(PruningError, match=r"\[0, 251\)"):
        calibration_tokens(model, torch.tensor([1, 251]))
    with pytest.raises(PruningError, match="integers"):
        calibration_tokens(model, torch.rand(5))
    with pytest.raises(PruningError, match="tokenizer"):
        calibration_tokens(model, "some text")  # a preset has no tokenizer beside it


def test_calibration_tokens_sources(tmp_path):
    """Seeded random ids (asked for, or for a model without a tokenizer), and a text file as eos-led documents."""
    from perfmamba.data import DOC_SEP, encode_documents, train_tokenizer

    model = tiny("mamba2-tiny")
    want = torch.randint(0, 251, (300,), generator=torch.Generator().manual_seed(7))[:256].view(4, 64)
    assert torch.equal(calibration_tokens(model, 300, seq_len=64, seed=7), want)
    assert torch.equal(calibration_tokens(model, None, n_tokens=300, seq_len=64, seed=7), want)
    docs = ["the cat sat on the mat " * 20, "a dog ran in the park " * 20]
    tok = train_tokenizer(" ".join(docs), vocab_size=300)
    (tmp_path / "calib.txt").write_text(DOC_SEP.join(docs))
    ids = calibration_tokens(tiny("mamba2-tiny", vocab_size=300), tmp_path / "calib.txt", tokenizer=tok,
                             seq_len=1000, n_tokens=50)
    assert torch.equal(ids, encode_documents(docs, tok)[None, :50])


def test_activity_rows_and_fig3_plot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from perfmamba.plots import plot_fig3_activity

    model = tiny("mamba2-tiny")
    act = collect_activity(model, torch.randint(0, 251, (2, 8), generator=torch.Generator().manual_seed(4)))
    rows = activity_rows(act, "mamba2-tiny")
    assert len(rows) == 2 * 13
    assert {(r["layer"], r["state"]) for r in rows} == {(i, s) for i in range(2) for s in range(13)}
    assert rows[14]["activity"] == pytest.approx(float(act.activity[1][1]))
    for source in (act, rows):
        fig = plot_fig3_activity(source)
        mesh = fig.axes[0].collections[0]
        assert_close(torch.as_tensor(mesh.get_array()).reshape(2, 13), act.matrix(), atol=1e-12, rtol=0)
        plt.close(fig)
