"""Plots and tables read tidy rows: Fig. 2 bars, Table 1's layout, roofline (the paper's values: test_claims)."""
import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import perfmamba  # noqa: E402
from perfmamba.plots import profile as plots  # noqa: E402
from perfmamba.profiling.sweep import sweep, to_frame  # noqa: E402


@pytest.fixture(scope="module")
def df():
    rows = sweep(["mamba-tiny", "mamba2-tiny"], [8, 21], [2], methods=("timers", "profiler"), warmup=0, iters=1,
                 progress=False, flush_denormal=False, threads=1)
    return to_frame(rows)


def test_fig2_has_a_panel_per_model_and_phase_with_stacked_components(df):
    fig = plots.plot_fig2_latency(df)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 4  # 2 models × (prefill, decode)
    ax = axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "21"]
    # the bars of one sequence length stack up to the measured total
    tot = df[(df.metric == "time") & (df.method == "timers") & (df.component == "total") & (df.model == "mamba-tiny")
             & (df.phase == "prefill") & (df.seqlen == 8)]["value"].iloc[0]
    tops = max(p.get_y() + p.get_height() for p in ax.patches if abs(p.get_x() + p.get_width() / 2) < 0.5)
    assert tops == pytest.approx(tot, rel=0.05)


def test_share_table_is_component_time_over_total(df):
    t = plots.share_table(df, "ssm", method="timers")
    assert list(t.columns) == [8, 21]
    assert set(t.index) == {(m, p) for m in ("mamba-tiny", "mamba2-tiny") for p in ("prefill", "decode")}
    d = df[(df.metric == "time") & (df.method == "timers") & (df.model == "mamba2-tiny") & (df.phase == "decode")
           & (df.seqlen == 21)]
    want = d[d.component == "ssm"]["value"].iloc[0] / d[d.component == "total"]["value"].iloc[0]
    assert t.loc[("mamba2-tiny", "decode"), 21] == pytest.approx(want)
    assert ((t > 0) & (t < 1)).all().all()
    with pytest.raises(perfmamba.PerfmambaError, match="no time rows for component"):
        plots.share_table(df, "nonexistent")


def test_fig2_bad_selection_is_one_line_error(df):
    with pytest.raises(perfmamba.PerfmambaError, match="no rows with batch=64"):
        plots.plot_fig2_latency(df, batch=64)
    with pytest.raises(perfmamba.PerfmambaError):
        plots.plot_fig2_latency(pd.DataFrame())


def test_table1_components(df):
    t = plots.table1_components(df, seqlen=21)
    assert list(t.columns) == ["model", "arch", "component", "time_ms", "time_share", "activation_peak_MB",
                               "sum_of_allocations_GB"]
    for model, g in t.groupby("model"):
        top = g[g.component.isin(plots.STACK)]
        assert top["time_share"].sum() == pytest.approx(1.0, abs=0.05), model  # components + other = the call
    m2 = t[t.arch == "mamba2"]
    assert "gated_norm" in set(m2.component) and "gated_norm" not in set(t[t.arch == "mamba1"].component)
    assert (t["activation_peak_MB"].dropna() >= 0).all()
    assert t.attrs["seqlen"] == 21 and t.attrs["phase"] == "prefill"


def test_roofline_plot(df):
    fig = plots.plot_roofline(df, peak_flops=1e11, peak_bw=2e10)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(ax.collections) >= 5  # component × phase scatter groups


def test_ssm_memory_table_pairs_models_of_one_shape_and_divides_their_readings(df):
    t = plots.ssm_memory_table(df, seqlen=21)
    assert set(t["metric"]) == {"sum_of_allocations", "activation_peak"}
    assert set(zip(t["mamba1"], t["mamba2"])) == {("mamba-tiny", "mamba2-tiny")}  # same width and depth
    for _, r in t.iterrows():
        sel = (df.metric == r["metric"]) & (df.component == "ssm") & (df.phase == "prefill") & (df.seqlen == 21)
        a = df[sel & (df.model == "mamba-tiny")]["value"].max()
        b = df[sel & (df.model == "mamba2-tiny")]["value"].max()
        assert r["mamba1_GB"] == pytest.approx(a / 2**30) and r["ratio"] == pytest.approx(b / a)
    with pytest.raises(perfmamba.PerfmambaError, match=r"at L = 2048 \(lengths with memory rows: 8, 21\)"):
        plots.ssm_memory_table(df)


def test_ssm_memory_table_needs_a_pair_of_one_shape(df):
    only_m1 = df[df.arch == "mamba1"]
    with pytest.raises(perfmamba.PerfmambaError, match="no Mamba-1/Mamba-2 pair"):
        plots.ssm_memory_table(only_m1, seqlen=21)
    other = df.replace({"model": {"mamba2-tiny": "mamba2-130m"}})  # a different shape: not a pair
    with pytest.raises(perfmamba.PerfmambaError, match="no Mamba-1/Mamba-2 pair"):
        plots.ssm_memory_table(other, seqlen=21)
