"""Sweeps: tidy rows, resume, out-of-memory rows, bad input; the `perfmamba profile` command."""
import json

import pytest
import torch

import perfmamba
from perfmamba.cli import main
from perfmamba.profiling import attribution
from perfmamba.profiling.sweep import KEY_COLUMNS, PROFILE_COLUMNS, is_oom, sweep, to_frame
from perfmamba.results import ResultsError, append_rows, read_rows

TINY = dict(models=["mamba-tiny", "mamba2-tiny"], seqlens=[19], batches=[1, 3], warmup=0, iters=2,
            progress=False, flush_denormal=False, threads=1)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("res") / "profile_test.csv"
    rows = sweep(**TINY, methods=("timers", "profiler"), out=out)
    return out, rows


def test_rows_are_tidy_and_complete(swept):
    out, rows = swept
    df = read_rows(out)
    assert list(df.columns) == PROFILE_COLUMNS
    assert len(df) == len(rows) > 0
    # every point measured by both methods plus the analytic counts: 2 models × 2 phases × 2 B × 1 L
    points = df.groupby(KEY_COLUMNS, dropna=False).ngroups
    assert points == 2 * 2 * 2 * 3
    t = df[(df.metric == "time") & (df.component == "total")]
    assert len(t) == 2 * 2 * 2 * 2 and (t["value"] > 0).all() and (t["n_iter"] == 2).all()
    assert ((t["p10"] <= t["median"]) & (t["median"] <= t["p90"])).all()
    assert set(df["path"]) == {"ref"} and set(df["fused"]) == {False} and set(df["dtype"]) == {"float32"}
    assert set(df["device"]) == {"cpu"} and set(df["unit"].dropna()) >= {"ms", "flop", "byte", "fraction"}
    m1 = df[(df.arch == "mamba1") & (df.metric == "time")]
    assert {"ssm.x_proj", "ssm.dt_proj", "ssm.scan", "ssm"} <= set(m1.component)
    assert "gated_norm" in set(df[(df.arch == "mamba2") & (df.metric == "time")].component)
    mem = df[df.method == "analytic"]
    assert {"weights", "ssm_state", "conv_state"} <= set(mem[mem.metric == "memory"].component)
    prof = df[df.method == "profiler"]
    assert {"activation_peak", "sum_of_allocations", "peak_memory"} <= set(prof.metric)
    env = json.loads((out.parent / "env.json").read_text())
    assert env["experiment"] == "profile_test" and env["flush_denormal"] == "off"
    assert env["versions"]["torch"] in torch.__version__ and env["torch_threads"] == 1  # threads=1 during the sweep


def test_timer_shares_sum_to_one(swept):
    df = to_frame(swept[1])
    s = df[(df.metric == "share") & (df.method == "timers") & ~df.component.str.contains(r"\.")
           & (df.component != "total")]
    sums = s.groupby(["model", "phase", "batch", "seqlen"])["value"].sum()
    assert ((sums > 0.9) & (sums < 1.1)).all(), sums  # medians of per-repetition shares


def test_rerun_skips_done_points_and_resumes_missing_ones(swept, tmp_path):
    out, rows = swept
    assert sweep(**TINY, methods=("timers", "profiler"), out=out) == []
    # a killed sweep: keep the rows of the first model only, then rerun
    part = tmp_path / "part.csv"
    first = [r for r in rows if r["model"] == "mamba-tiny"]
    append_rows(part, first, PROFILE_COLUMNS)
    new = sweep(**TINY, methods=("timers", "profiler"), out=part)
    assert new and {r["model"] for r in new} == {"mamba2-tiny"}
    assert len(read_rows(part)) == len(rows)


def test_out_of_memory_is_a_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    real = attribution.attribute

    def fake(model, phase, batch, seqlen, **kw):
        if batch == 3:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 1099511627776 bytes")
        return real(model, phase, batch, seqlen, **kw)

    monkeypatch.setattr(attribution, "attribute", fake)
    rows = sweep(["mamba-tiny"], [8], [1, 3], ["prefill"], warmup=0, iters=1, out=tmp_path / "o.csv",
                 progress=False, flush_denormal=False, threads=1)
    oom = [r for r in rows if r["metric"] == "oom"]
    assert len(oom) == 1 and oom[0]["batch"] == 3 and oom[0]["component"] == "total"
    assert any(r["metric"] == "time" and r["batch"] == 1 for r in rows)
    assert any(r["metric"] == "flops" and r["batch"] == 3 for r in rows)  # analytic rows still written


def test_other_errors_propagate(monkeypatch):
    monkeypatch.setattr(attribution, "attribute", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("shape bug")))
    with pytest.raises(RuntimeError, match="shape bug"):
        sweep(["mamba-tiny"], [8], [1], ["prefill"], warmup=0, iters=1, progress=False, flush_denormal=False)


def test_is_oom():
    assert is_oom(MemoryError()) and is_oom(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not is_oom(RuntimeError("size mismatch")) and not is_oom(ValueError("out of memory"))


@pytest.mark.parametrize("bad, match", [
    (dict(models=["mamba-9000"]), "unknown preset"),
    (dict(seqlens=[0]), "seqlens must be positive"),
    (dict(batches=[-1]), "batches must be positive"),
    (dict(phases=["train"]), "unknown phase"),
    (dict(paths=["cuda_magic"]), "unknown path"),
    (dict(methods=["stopwatch"]), "unknown method"),
    (dict(iters=0), "iters >= 1"),
], ids=["preset", "seqlen0", "batch-1", "phase", "path", "method", "iters0"])
def test_bad_input_is_one_line_error(bad, match):
    kw = dict(models=["mamba-tiny"], seqlens=[8], batches=[1], progress=False, flush_denormal=False) | bad
    with pytest.raises(perfmamba.PerfmambaError, match=match) as e:
        sweep(**kw)
    assert "\n" not in str(e.value)


def test_results_file_of_another_schema_is_refused(tmp_path):
    out = tmp_path / "other.csv"
    out.write_text("model,accuracy\nx,0.5\n")
    with pytest.raises(ResultsError, match="has schema model,accuracy, expected model,arch"):
        sweep(["mamba-tiny"], [8], [1], out=out, progress=False, flush_denormal=False)
    assert out.read_text() == "model,accuracy\nx,0.5\n"


# CLI ---------------------------------------------------------------------------------------------------
def test_cli_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["profile", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--model", "--phases", "--seqlens", "--batches", "--backend", "--warmup", "--iters", "--out",
                "--method", "timers", "profiler", "both", "mamba2-130m"):
        assert opt in text, opt


def test_cli_writes_rows_and_resumes(tmp_path, capsys):
    out = tmp_path / "cli.csv"
    args = ["profile", "-m", "mamba2-tiny", "--seqlens", "9", "--batches", "2", "--warmup", "0", "--iters", "1",
            "--method", "both", "--out", str(out), "--no-progress", "--no-flush-denormal"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "mamba2-tiny" in text and str(out) in text
    df = read_rows(out)
    assert set(df["method"]) == {"analytic", "timers", "profiler"} and set(df["phase"]) == {"prefill", "decode"}
    assert main(args) == 0
    assert "0 new rows" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["-m", "no-such-model"], "unknown preset or checkpoint directory 'no-such-model'"),
    (["-m", "mamba-tiny", "--seqlens", "0"], "seqlens must be positive integers"),
    (["-m", "mamba-tiny", "--batches", "two"], "not an integer"),
], ids=["preset", "seqlen", "batch"])
def test_cli_bad_input_exits_2_with_one_line(argv, match, tmp_path, capsys):
    assert main(["profile", *argv, "--out", str(tmp_path / "x.csv"), "--no-progress", "--no-flush-denormal"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("perfmamba: error:") and match in err and "\n" not in err
    assert not (tmp_path / "x.csv").exists()


def test_call_totals_time_the_call_whole_beside_the_timers(tmp_path):
    """Method "call": each call timed with nothing instrumented, a total only; off by default on CPU."""
    kw = dict(TINY, models=["mamba2-tiny"], batches=[1])
    assert not [r for r in sweep(**kw) if r["method"] == "call"]
    rows = to_frame(sweep(**kw, call_totals=True, out=tmp_path / "p.csv"))
    call = rows[rows["method"] == "call"]
    assert set(call["phase"]) == {"prefill", "decode"} and set(call["component"]) == {"total"}
    assert (call["metric"] == "time").all() and (call["value"] > 0).all() and (call["n_iter"] == 2).all()
    assert sweep(**kw, call_totals=True, out=tmp_path / "p.csv") == []  # resumable like every other method
