"""tools/compare_results.py: two result trees are equal apart from timing, or the differences are listed."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("compare_results", ROOT / "tools" / "compare_results.py")
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)

HEADER = "model,metric,value,unit,median,p10,p90\n"


def tree(root: Path, body: str) -> Path:
    (root / "cpu-x").mkdir(parents=True)
    (root / "cpu-x" / "latency.csv").write_text(HEADER + body)
    return root


def test_timing_differs_only(tmp_path, capsys):
    a = tree(tmp_path / "a", "m,flops,10,flop,,,\nm,time,1.5,ms,1.5,1.4,1.6\n")
    b = tree(tmp_path / "b", "m,time,9.0,ms,9.0,8.0,9.5\nm,flops,10,flop,,,\n")  # other times, other order
    assert compare.main([str(a), str(b)]) == 0
    assert "1 untimed rows equal" in capsys.readouterr().out


def test_a_changed_count_or_column_is_reported(tmp_path, capsys):
    a = tree(tmp_path / "a", "m,flops,10,flop,,,\n")
    b = tree(tmp_path / "b", "m,flops,11,flop,,,\n")
    assert compare.main([str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "- m,flops,10,flop" in out and "+ m,flops,11,flop" in out
    (b / "cpu-x" / "latency.csv").write_text("model,metric,value\nm,flops,10\n")
    assert compare.main([str(a), str(b)]) == 1
    assert "header" in capsys.readouterr().out
    assert compare.main([str(a), str(tmp_path / "nothing")]) == 2


def test_claims_compared_record_by_record(tmp_path, capsys):
    rec = {"id": "t1", "status": "confirmed", "ours": [1.0]}
    (tmp_path / "a.json").write_text(json.dumps([rec]))
    (tmp_path / "b.json").write_text(json.dumps([rec | {"status": "refuted"}]))
    a = tree(tmp_path / "a", "")
    assert compare.main([str(a), str(a), "--claims", str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0
    assert compare.main([str(a), str(a), "--claims", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    assert "claim t1: status 'confirmed' became 'refuted'" in capsys.readouterr().out
