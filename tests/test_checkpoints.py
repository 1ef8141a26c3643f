"""Checkpoint formats: exact equivalence with transformers' own models, round trips, and bad input."""
import json
from contextlib import nullcontext
import os
import pickle
import subprocess
import sys

import pytest
import torch
import transformers

from perfmamba import CheckpointError, MambaLM, load, preset
from perfmamba.cli import main
from helpers import assert_close

HF_CASES = [
    pytest.param("mamba", {}, 37, id="mamba1-N13-L37"),
    pytest.param("mamba2", {"n_groups": 1}, 37, id="mamba2-g1-N13-L37-chunk16"),
    pytest.param("mamba2", {"n_groups": 2}, 45, id="mamba2-g2-N13-L45-chunk16"),
]


def hf_model(kind, extra, seed=0):
    torch.manual_seed(seed)
    if kind == "mamba":
        cfg = transformers.MambaConfig(vocab_size=256, hidden_size=32, state_size=13, num_hidden_layers=2, **extra)
        m = transformers.MambaForCausalLM(cfg)
    else:
        cfg = transformers.Mamba2Config(vocab_size=256, hidden_size=32, state_size=13, num_hidden_layers=2, num_heads=8,
                                        head_dim=8, chunk_size=16, **extra)
        m = transformers.Mamba2ForCausalLM(cfg)
    with torch.no_grad():  # move away from the structured init so every parameter matters
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m.eval()


@pytest.mark.parametrize("kind,extra,length", HF_CASES)
def test_loaded_transformers_model_gives_transformers_logits(tmp_path, kind, extra, length):
    hf = hf_model(kind, extra)
    hf.save_pretrained(tmp_path)
    ours = load(tmp_path)
    ids = torch.randint(0, 256, (2, length), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert_close(ours(ids), hf(ids).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["mamba-tiny", "mamba2-tiny"])
def test_exported_transformers_checkpoint_loads_in_stock_transformers(tmp_path, name):
    ours = MambaLM.from_config(preset(name)).eval()
    ours.save(tmp_path, format="transformers")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 251, (1, 21))
    with torch.no_grad():
        assert_close(hf(ids).logits, ours(ids), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fmt", ["perfmamba", "transformers", "mamba_ssm"])
@pytest.mark.parametrize("name", ["mamba-tiny", "mamba2-tiny"])
def test_round_trip_is_exact(tmp_path, name, fmt):
    m = MambaLM.from_config(preset(name)).eval()
    m.save(tmp_path / "out", format=fmt)
    back = load(tmp_path / "out")
    for (k, a), (_, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    assert back.config.d_states == m.config.d_states


def test_per_layer_d_state_needs_our_format(tmp_path):
    m = MambaLM.from_config(preset("mamba2-tiny", d_state=[5, 13]))
    m.save(tmp_path / "ours")
    assert load(tmp_path / "ours").config.d_states == [5, 13]
    for fmt in ("transformers", "mamba_ssm"):
        with pytest.raises(CheckpointError, match="one d_state for all layers"):
            m.save(tmp_path / fmt, format=fmt)
        assert not (tmp_path / fmt).exists()


def test_mamba_ssm_directory_with_pytorch_model_bin(tmp_path):
    """The state-spaces layout: config.json with ssm_cfg and a pickled state dict."""
    m = MambaLM.from_config(preset("mamba2-tiny"))
    cfg = {"d_model": 32, "d_intermediate": 0, "n_layer": 2, "vocab_size": 251, "ssm_cfg": {"layer": "Mamba2",
           "d_state": 13, "headdim": 16, "chunk_size": 16}, "rms_norm": True, "residual_in_fp32": True,
           "fused_add_norm": True, "pad_vocab_size_multiple": 8, "tie_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    torch.save(m.state_dict(), tmp_path / "pytorch_model.bin")  # mamba-ssm saves lm_head.weight too
    back = load(tmp_path)
    ids = torch.randint(0, 251, (1, 9))
    with torch.no_grad():
        assert torch.equal(back(ids), m.eval()(ids))


def test_tokenizer_beside_source_is_copied(tmp_path):
    m = MambaLM.from_config(preset("mamba-tiny"))
    m.save(tmp_path / "a")
    (tmp_path / "a" / "tokenizer.json").write_text("{}")
    load(tmp_path / "a").save(tmp_path / "b", format="transformers")
    assert (tmp_path / "b" / "tokenizer.json").read_text() == "{}"


# bad input ------------------------------------------------------------------------------------------------
class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/perfmamba-pwned",))


def _saved(tmp_path, name="mamba-tiny"):
    d = tmp_path / "ckpt"
    MambaLM.from_config(preset(name)).save(d)
    return d


def test_truncated_safetensors(tmp_path):
    d = _saved(tmp_path)
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load(d)


def test_garbage_safetensors(tmp_path):
    d = _saved(tmp_path)
    (d / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load(d)


def test_config_that_does_not_match_weights(tmp_path):
    d = _saved(tmp_path)
    raw = json.loads((d / "config.json").read_text())
    raw["config"]["d_state"] = 7
    (d / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="config does not match the weights"):
        load(d)
    raw["config"]["d_state"] = 13
    raw["config"]["n_layer"] = 3
    (d / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="missing"):
        load(d)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # the hostile pickle is written by hand
def test_pickle_that_runs_code_is_refused(tmp_path):
    d = _saved(tmp_path)
    os.remove(d / "model.safetensors")
    with open(d / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": Exploit()}, f)
    if os.path.exists("/tmp/perfmamba-pwned"):
        os.remove("/tmp/perfmamba-pwned")
    with pytest.raises(CheckpointError, match="refusing to load"):
        load(d)
    assert not os.path.exists("/tmp/perfmamba-pwned")


def test_foreign_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    with pytest.raises(CheckpointError, match="not a perfmamba, transformers Mamba or mamba-ssm config"):
        load(tmp_path)


def test_unknown_format_and_existing_output(tmp_path):
    m = MambaLM.from_config(preset("mamba-tiny"))
    with pytest.raises(CheckpointError, match="unknown format"):
        m.save(tmp_path / "x", format="onnx")
    assert not (tmp_path / "x").exists()
    m.save(tmp_path / "y")
    with pytest.raises(CheckpointError, match="already exists"):
        m.save(tmp_path / "y")


@pytest.mark.parametrize("args,message", [
    (["convert", "no-such-preset", "OUT"], "no such checkpoint directory or preset"),
    (["convert", "mamba-tiny", "OUT", "--format", "onnx"], "invalid choice"),
    (["convert", "CORRUPT", "OUT"], "truncated or corrupt"),
    (["convert", "MISSING_DIR/sub", "OUT"], "no such checkpoint directory or preset"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    corrupt = _saved(tmp_path)
    (corrupt / "model.safetensors").write_bytes(b"junk")
    args = [a.replace("OUT", str(tmp_path / "out")).replace("CORRUPT", str(corrupt))
            .replace("MISSING_DIR", str(tmp_path / "missing")) for a in args]
    with pytest.raises(SystemExit) if "invalid choice" in message else nullcontext():
        rc = main(args)
        assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)
    if "invalid choice" not in message:
        assert len(err) == 1
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_cli_convert_end_to_end_in_a_subprocess(tmp_path):
    r = subprocess.run([sys.executable, "-m", "perfmamba.cli", "convert", "mamba2-tiny", str(tmp_path / "hf"),
                        "--format", "transformers"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "mamba2"
    r = subprocess.run([sys.executable, "-m", "perfmamba.cli", "convert", str(tmp_path / "nothing"), str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "perfmamba.cli", "convert", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--format" in r.stdout
