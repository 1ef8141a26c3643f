"""perfmamba.results: tidy rows on disk, schema check, resume keys, provenance."""
import json
import math
import re
from pathlib import Path

import pytest

from perfmamba import results
from perfmamba.errors import PerfmambaError
from perfmamba.results import (ResultsError, append_rows, device_slug, existing_keys, format_value, read_header,
                               read_rows, results_path, row_key, write_env)

COLS = ["model", "batch", "seqlen", "metric", "value"]


def rows(*specs):
    return [dict(model=m, batch=b, seqlen=l, metric="time", value=v) for m, b, l, v in specs]


def test_append_creates_then_appends_and_reads_back(tmp_path):
    path = tmp_path / "deep" / "dir" / "exp.csv"
    assert append_rows(path, rows(("a", 1, 64, 1.5), ("a", 8, 64, 2.25)), COLS) == 2
    assert append_rows(path, rows(("b", 1, 37, 0.1)), COLS) == 1
    df = read_rows(path)
    assert list(df.columns) == COLS
    assert df["model"].tolist() == ["a", "a", "b"]
    assert df["value"].tolist() == [1.5, 2.25, 0.1]  # repr round-trips floats exactly
    assert df["seqlen"].tolist() == [64, 64, 37]
    assert not list(tmp_path.glob("deep/dir/.*tmp"))  # no temporary file left behind


def test_columns_default_to_union_of_row_keys_and_missing_cells_are_empty(tmp_path):
    path = tmp_path / "x.csv"
    append_rows(path, [{"a": 1}, {"b": 2, "a": 3}])
    assert read_header(path) == ["a", "b"]
    assert path.read_text().splitlines() == ["a,b", "1,", "3,2"]


def test_other_schema_is_one_line_error_and_file_untouched(tmp_path):
    path = tmp_path / "exp.csv"
    append_rows(path, rows(("a", 1, 64, 1.0)), COLS)
    before = path.read_text()
    with pytest.raises(PerfmambaError) as e:
        append_rows(path, [{"model": "a", "ratio": 0.5}], ["model", "ratio"])
    msg = str(e.value)
    assert "\n" not in msg and f"results file {path} has schema model,batch,seqlen,metric,value" in msg
    assert "expected model,ratio" in msg
    assert path.read_text() == before


def test_row_with_unknown_column_is_refused(tmp_path):
    with pytest.raises(ResultsError, match="not in the schema"):
        append_rows(tmp_path / "x.csv", [{"model": "a", "surprise": 1}], ["model"])


def test_existing_keys_match_row_key_of_new_rows(tmp_path):
    path = tmp_path / "exp.csv"
    append_rows(path, rows(("a", 1, 64, 1.0), ("a", 8, 64, 2.0)), COLS)
    keys = existing_keys(path, ["model", "batch", "seqlen"])
    assert keys == {("a", "1", "64"), ("a", "8", "64")}
    assert row_key({"model": "a", "batch": 8, "seqlen": 64}, ["model", "batch", "seqlen"]) in keys
    assert row_key({"model": "a", "batch": 8, "seqlen": 65}, ["model", "batch", "seqlen"]) not in keys
    assert existing_keys(tmp_path / "missing.csv", ["model"]) == set()
    with pytest.raises(ResultsError, match="lacks key column"):
        existing_keys(path, ["model", "ratio"])


def test_torn_last_line_from_a_killed_writer_is_dropped(tmp_path):
    path = tmp_path / "exp.csv"
    append_rows(path, rows(("a", 1, 64, 1.0)), COLS)
    with open(path, "a") as f:
        f.write("a,8,64,ti")  # killed mid-line
    assert len(read_rows(path)) == 1
    assert existing_keys(path, ["model", "batch"]) == {("a", "1")}
    append_rows(path, rows(("c", 2, 5, 3.0)), COLS)
    assert path.read_text().splitlines()[1:] == ["a,1,64,time,1.0", "c,2,5,time,3.0"]


def test_format_value_is_stable():
    assert format_value(None) == "" and format_value(math.nan) == ""
    assert format_value(0.1) == "0.1" and format_value(True) == "True" and format_value(3) == "3"
    import numpy as np
    import torch

    assert format_value(np.float64(0.25)) == "0.25" and format_value(torch.tensor(7)) == "7"


def test_read_rows_of_missing_file_is_empty(tmp_path):
    assert read_rows(tmp_path / "none.csv").empty


def test_device_slug_and_results_path(tmp_path):
    slug = device_slug("cpu")
    assert re.fullmatch(r"cpu-[a-z0-9-]+", slug), slug
    assert results_path("profile_smoke", "cpu", root=tmp_path) == tmp_path / slug / "profile_smoke.csv"
    with pytest.raises(ResultsError):
        results_path("../escape", "cpu", root=tmp_path)


def test_write_env_records_provenance_and_keeps_history(tmp_path):
    env = write_env(tmp_path, {"experiment": "x"}, device="cpu")
    on_disk = json.loads((tmp_path / "env.json").read_text())
    assert on_disk["experiment"] == "x" and on_disk["device"] == "cpu"
    for key in ("date", "cpu_model", "torch_threads", "git_sha", "versions", "device_slug"):
        assert key in on_disk, key
    assert on_disk["versions"]["torch"] and "transformers" in on_disk["versions"]
    assert env["date"] == on_disk["date"]
    write_env(tmp_path, {"experiment": "y"}, device="cpu")
    write_env(tmp_path, {"experiment": "z"}, device="cpu")
    again = json.loads((tmp_path / "env.json").read_text())
    assert again["experiment"] == "z" and [h["experiment"] for h in again["history"]] == ["x", "y"]
    assert all("history" not in h for h in again["history"])


# --- the schema registry and the device naming ----------------------------------------------------------------

def test_a_device_name_is_refused_in_the_device_column(tmp_path):
    cols = list(results.SCHEMAS["machine_peaks"].columns)
    row = {"device": "NVIDIA H200", "dtype": "float32", "metric": "peak_flops", "value": 1.0}
    with pytest.raises(results.ResultsError, match="not a device type"):
        results.append_rows(tmp_path / "m.csv", [row], cols)
    assert not (tmp_path / "m.csv").exists()
    results.append_rows(tmp_path / "m.csv", [row | {"device": results.device_type("cuda:1")}], cols)
    assert results.read_rows(tmp_path / "m.csv")["device"].tolist() == ["cuda"]


def test_every_key_is_part_of_its_schema():
    for name, s in results.SCHEMAS.items():
        assert set(s.key) <= set(s.columns) and len(set(s.columns)) == len(s.columns), name


def test_every_result_file_has_a_registered_schema_and_device_types():
    """The committed GPU rows (and this machine's, where present) follow the registry: a header that is one
    schema's, and `device` cells that name a device type, never a machine."""
    headers = {s.columns for s in results.SCHEMAS.values()}
    files = sorted((Path(__file__).resolve().parents[1] / "data" / "results").glob("*/*.csv"))
    assert files
    for f in files:
        df = results.read_rows(f, dtype=str)
        assert tuple(df.columns) in headers, f
        assert set(df["device"].dropna()) <= set(results.DEVICE_TYPES), f
