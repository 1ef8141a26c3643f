"""`perfmamba activity` / `perfmamba prune`, and bad input: one line on stderr, exit 2, nothing written."""
import csv

import pytest
import torch

import perfmamba
from perfmamba import MambaLM, preset, prune
from perfmamba.cli import main
from perfmamba.pruning import PruningError, collect_activity

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny Mamba-2 checkpoint with a byte-level BPE tokenizer (vocab 300) beside it, and a text file."""
    from perfmamba.data import train_tokenizer

    root = tmp_path_factory.mktemp("ckpt")
    model = MambaLM.from_config(preset("mamba2-tiny", vocab_size=300))
    model.save(root / "model")
    train_tokenizer(TEXT, vocab_size=300).save_pretrained(str(root / "model"))
    (root / "calib.txt").write_text(TEXT)
    return root


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_activity_writes_rows_and_heatmap(checkpoint, tmp_path, capsys):
    rc, out, err = run(capsys, "activity", checkpoint / "model", "--calibration", checkpoint / "calib.txt",
                       "--seq-len", 64, "--out", tmp_path / "act.csv", "--plot", tmp_path / "fig3.png")
    assert rc == 0, err
    rows = list(csv.DictReader(open(tmp_path / "act.csv")))
    assert len(rows) == 2 * 13 and rows[0]["model"] == "model" and rows[0]["arch"] == "mamba2"
    # same numbers as the library on the same tokens
    tok = perfmamba.data.model_tokenizer(perfmamba.load(checkpoint / "model"))
    act = collect_activity(perfmamba.load(checkpoint / "model"), TEXT, tokenizer=tok, seq_len=64)
    assert float(rows[14]["activity"]) == pytest.approx(float(act.activity[1][1]), rel=1e-12)
    assert (tmp_path / "fig3.png").read_bytes()[:4] == b"\x89PNG"
    assert "layer   1" in out


def test_activity_on_preset_with_random_tokens(tmp_path, capsys):
    rc, out, err = run(capsys, "activity", "mamba-tiny", "--calibration-tokens", 100, "--out", tmp_path / "a.csv")
    assert rc == 0, err
    assert len(list(csv.DictReader(open(tmp_path / "a.csv")))) == 2 * 13


def test_prune_writes_transformers_checkpoint(checkpoint, tmp_path, capsys):
    dst = tmp_path / "pruned"
    rc, out, err = run(capsys, "prune", checkpoint / "model", "--ratio", "0.5", "--criterion", "delta",
                       "--calibration", checkpoint / "calib.txt", "--seq-len", 64, "--mode", "removed",
                       "--out", dst, "--format", "transformers")
    assert rc == 0, err
    assert "d_state 13 -> 6" in out
    assert (dst / "tokenizer.json").is_file()  # tokenizer travels with the checkpoint
    back = perfmamba.load(dst)
    src = perfmamba.load(checkpoint / "model")
    want = prune(src, 0.5, calibration=TEXT, seq_len=64)
    x = torch.randint(0, 300, (2, 17), generator=torch.Generator().manual_seed(0))
    assert back.config.d_states == [6, 6]
    torch.testing.assert_close(back(x), want(x), rtol=0, atol=1e-5)


def test_prune_preset_global_in_our_format(tmp_path, capsys):
    rc, out, err = run(capsys, "prune", "mamba2-tiny", "--ratio", "0.5", "--criterion", "decay",
                       "--calibration-tokens", 38, "--selection", "global", "--out", tmp_path / "p")
    assert rc == 0, err
    info = perfmamba.load(tmp_path / "p").config.extra["pruning"]
    assert info["selection"] == "global" and sum(len(k) for k in info["kept"]) == 12


def test_prune_aligned_counts(tmp_path, capsys):
    """--align 8 rounds N' = floor(13 · 0.3) = 3 up to 8; --align-rounding down to 8 as well (never 0 states)."""
    for how in ("up", "down"):
        rc, out, err = run(capsys, "prune", "mamba2-tiny", "--ratio", "0.7", "--criterion", "decay",
                           "--calibration-tokens", 38, "--align", 8, "--align-rounding", how, "--out", tmp_path / how)
        assert rc == 0, err
        assert "d_state 13 -> 8" in out and "multiples of 8" in out
        info = perfmamba.load(tmp_path / how).config.extra["pruning"]
        assert info["align"] == 8 and info["align_rounding"] == how and [len(k) for k in info["kept"]] == [8, 8]
    rc, out, err = run(capsys, "prune", "mamba2-tiny", "--ratio", "0.3", "--criterion", "random", "--align", 4,
                       "--pad", "--out", tmp_path / "pad")
    assert rc == 0, err
    assert "d_state 13 -> 12" in out and "padded with zero states" in out
    assert perfmamba.load(tmp_path / "pad").config.extra["pruning"]["pad"] is True


# bad input ------------------------------------------------------------------------------------------------
BAD_CLI = [
    pytest.param(["--ratio", "abc"], "ratio must be a number", id="ratio-not-a-number"),
    pytest.param(["--ratio", "1"], "[0, 1)", id="ratio-one"),
    pytest.param(["--ratio", "-0.2"], "[0, 1)", id="ratio-negative"),
    pytest.param(["--ratio", "0.5", "--criterion", "wanda"], "unknown criterion 'wanda'", id="unknown-criterion"),
    pytest.param(["--ratio", "0.5", "--mode", "half"], "unknown mode 'half'", id="unknown-mode"),
    pytest.param(["--ratio", "0.5", "--selection", "best"], "unknown selection", id="unknown-selection"),
    pytest.param(["--ratio", "0.5", "--format", "onnx"], "unknown format", id="unknown-format"),
    pytest.param(["--ratio", "0.5", "--align", "0"], "align must be a positive integer", id="align-zero"),
    pytest.param(["--ratio", "0.5", "--align", "8", "--align-rounding", "sideways"], "unknown align rounding",
                 id="align-rounding"),
    pytest.param(["--ratio", "0.5", "--pad"], "--pad needs --align", id="pad-without-align"),
    pytest.param(["--ratio", "0.5", "--calibration-tokens", "0"], "must be a positive number", id="zero-tokens"),
    pytest.param(["--ratio", "0.5"], "calibration data needed", id="no-calibration"),
]


@pytest.mark.parametrize("args,msg", BAD_CLI)
def test_prune_bad_input(args, msg, tmp_path, capsys):
    dst = tmp_path / "out"
    rc, out, err = run(capsys, "prune", "mamba2-tiny", "--out", dst, *args)
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and msg in err, err
    assert not dst.exists()


def test_prune_empty_calibration_file(checkpoint, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("  \n")
    rc, _, err = run(capsys, "prune", checkpoint / "model", "--ratio", "0.5", "--calibration",
                     tmp_path / "empty.txt", "--out", tmp_path / "out")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "empty" in err, err
    assert not (tmp_path / "out").exists()


def test_prune_calibration_outside_vocabulary(checkpoint, shared_data, tmp_path, capsys):
    """GPT-NeoX ids (vocab 50277) do not fit a 251-token model."""
    rc, _, err = run(capsys, "prune", "mamba2-tiny", "--ratio", "0.5", "--calibration", checkpoint / "calib.txt",
                     "--tokenizer", shared_data / "gpt_neox_20b_tokenizer.json", "--out", tmp_path / "out")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "[0, 251)" in err, err
    assert not (tmp_path / "out").exists()


def test_prune_preset_without_tokenizer(checkpoint, tmp_path, capsys):
    rc, _, err = run(capsys, "prune", "mamba2-tiny", "--ratio", "0.5", "--calibration", checkpoint / "calib.txt",
                     "--out", tmp_path / "out")
    assert rc == 2 and err.strip() == "perfmamba: error: mamba2-tiny has no tokenizer; pass --tokenizer PATH"


def test_prune_output_exists(tmp_path, capsys):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    rc, _, err = run(capsys, "prune", "mamba2-tiny", "--ratio", "0.5", "--calibration-tokens", 50, "--out", dst)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "already exists" in err
    assert sorted(p.name for p in dst.iterdir()) == ["keep.txt"]
    rc, _, err = run(capsys, "prune", "mamba2-tiny", "--ratio", "0.5", "--calibration-tokens", 50, "--out", dst,
                     "--force")
    assert rc == 0, err
    assert (dst / "config.json").is_file()


def test_prune_global_in_transformers_format_is_refused(tmp_path, capsys):
    rc, _, err = run(capsys, "prune", "mamba2-tiny", "--ratio", "0.5", "--criterion", "decay", "--calibration-tokens",
                     38, "--selection", "global", "--format", "transformers", "--out", tmp_path / "out")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "one d_state for all layers" in err, err
    assert not (tmp_path / "out").exists()


def test_activity_output_exists(tmp_path, capsys):
    (tmp_path / "a.csv").write_text("old")
    rc, _, err = run(capsys, "activity", "mamba-tiny", "--calibration-tokens", 50, "--out", tmp_path / "a.csv")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "already exists" in err
    assert (tmp_path / "a.csv").read_text() == "old"


def test_help_texts(capsys):
    for cmd in ("activity", "prune"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        assert "--calibration" in capsys.readouterr().out


@pytest.fixture(scope="module")
def model():
    return MambaLM.from_config(preset("mamba2-tiny")).double().eval()


BAD_LIBRARY = [
    pytest.param(dict(ratio=1.0), "[0, 1)", id="ratio-one"),
    pytest.param(dict(ratio=1.5), "[0, 1)", id="ratio-above-one"),
    pytest.param(dict(ratio="x"), "must be a number", id="ratio-string"),
    pytest.param(dict(ratio=float("nan")), "[0, 1)", id="ratio-nan"),
    pytest.param(dict(ratio=0.5, criterion="wanda"), "unknown criterion", id="unknown-criterion"),
    pytest.param(dict(ratio=0.5, mode="half"), "unknown mode", id="unknown-mode"),
    pytest.param(dict(ratio=0.5, selection="best"), "unknown selection", id="unknown-selection"),
    pytest.param(dict(ratio=0.5), "needs calibration data", id="no-calibration"),
    pytest.param(dict(ratio=0.5, calibration=torch.zeros(0, dtype=torch.long)), "empty", id="empty-ids"),
    pytest.param(dict(ratio=0.5, calibration=""), "tokenizer", id="text-without-tokenizer"),
    pytest.param(dict(ratio=0.5, calibration=torch.tensor([[1, 2, 300]])), "[0, 251)", id="ids-outside-vocab"),
    pytest.param(dict(ratio=0.5, calibration=torch.tensor([[-1, 2]])), "[0, 251)", id="negative-ids"),
]


@pytest.mark.parametrize("kw,msg", BAD_LIBRARY)
def test_library_bad_input(model, kw, msg):
    kw = dict(kw)
    ratio = kw.pop("ratio")
    with pytest.raises(PruningError) as e:
        prune(model, ratio, **kw)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_library_empty_text_with_tokenizer(checkpoint):
    src = perfmamba.load(checkpoint / "model")
    with pytest.raises(PruningError, match="empty"):
        prune(src, 0.5, calibration="   ")
