"""Every notebook runs end to end with its smoke parameters on two tiny trained models, produces a figure or a
table and the numbers the claims page quotes; the sources and parameter files stay thin and consistent."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from perfmamba import plots
from perfmamba.artifact import notebooks

ROOT = Path(__file__).resolve().parents[1]
# a number pasted from another page: {glue:text}`notebooks/<name>.ipynb::<key>:s` in book/*.md, or
# {glue:text}`<name>.ipynb::<key>:s` in the claims notebook (a sibling of the pages it quotes)
GLUE_REF = re.compile(r"\{glue:(?:text|md)\}`(?:notebooks/)?(\w+)\.ipynb::(\w+)(?::[^`]*)?`")


def quoted() -> list[tuple[str, str]]:
    """(notebook, key) of every glued number another page quotes."""
    text = "".join(p.read_text() for p in (ROOT / "book").glob("*.md"))
    text += "".join(c.source for c in source("claims").cells if c.cell_type == "markdown")
    return GLUE_REF.findall(text)


def source(name: str):
    return nbformat.read(notebooks.NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


def parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged `parameters`"
    return cells[0]


# --- the sources ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", notebooks.NOTEBOOKS)
def test_source_is_thin_and_stripped(name):
    nb = source(name)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "title first"
    assert nb.cells[1] is parameters_cell(nb), "the parameters cell comes right after the title"
    assert nb.cells[-1].cell_type == "markdown" and "Deviations from the paper" in nb.cells[-1].source
    raw = json.loads((notebooks.NOTEBOOK_DIR / f"{name}.ipynb").read_text())
    ids = [c.get("id") for c in raw["cells"]]
    assert None not in ids and len(set(ids)) == len(ids), "every cell has its own id (nbformat 4.5)"
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert not cell.get("outputs") and cell.get("execution_count") is None, "sources carry no outputs"
        tree = ast.parse(cell.source)
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]
        assert not defs, "no def, class or lambda in a notebook: that belongs in the library"


@pytest.mark.parametrize("name", notebooks.NOTEBOOKS)
def test_every_parameter_line_is_declared(name):
    """papermill skips assignments it cannot parse (e.g. a comment containing '='): every one must count."""
    cell = parameters_cell(source(name))
    body = ast.parse(cell.source).body
    assert all(isinstance(n, ast.Assign) and len(n.targets) == 1 for n in body), "only plain assignments"
    assert {n.targets[0].id for n in body} == notebooks.declared_parameters(notebooks.NOTEBOOK_DIR / f"{name}.ipynb")
    lines = cell.source.splitlines()
    for n in body:
        assert "  # " in lines[n.end_lineno - 1], f"{lines[n.lineno - 1]!r}: say what it is (and its unit)"
        ast.literal_eval(n.value)  # one literal per parameter


@pytest.mark.parametrize("profile", notebooks.PROFILES)
@pytest.mark.parametrize("name", notebooks.NOTEBOOKS)
def test_parameter_files_exist_and_match_the_notebook(name, profile):
    path = notebooks.params_file(name, profile)
    assert path.is_file(), f"missing {path.relative_to(ROOT)}"
    params = yaml.safe_load(path.read_text()) or {}
    assert params, f"{path.name} is empty"
    assert notebooks.resolve_parameters(name, profile) == params


def test_unknown_parameter_is_refused():
    with pytest.raises(notebooks.NotebookError, match=r"fig2_latency: unknown parameter\(s\) seqlenz"):
        notebooks.resolve_parameters("fig2_latency", "smoke", {"seqlenz": [64]})


def test_unknown_notebook_and_profile_are_refused():
    with pytest.raises(notebooks.NotebookError, match="no notebook 'fig9'"):
        notebooks.resolve_parameters("fig9", "cpu")
    with pytest.raises(notebooks.NotebookError, match="unknown parameter profile 'gpu'"):
        notebooks.params_file("fig2_latency", "gpu")


def test_toc_lists_every_notebook_in_order():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    parts = {p["caption"]: [c["file"] for c in p["chapters"]] for p in toc["parts"]}
    listed = parts["Results"] + parts["Extensions"]
    assert listed == [f"book/notebooks/{n}" for n in notebooks.NOTEBOOKS if n not in notebooks.FRONT]
    assert [f"book/notebooks/{n}" for n in notebooks.FRONT] == \
        [f for f in parts["The paper and this artifact"] if f.startswith("book/notebooks/")]
    assert all(n.startswith("book/notebooks/ext_") for n in parts["Extensions"])


def test_pages_quote_only_known_notebooks():
    refs = quoted()
    assert refs, "the claims page quotes the notebooks' glued numbers"
    assert {n for n, _ in refs} <= set(notebooks.NOTEBOOKS)


def test_plot_functions_raise_on_empty_rows():
    import pandas as pd

    empty = pd.DataFrame()
    for fn in (plots.plot_fig3_state_activity, plots.plot_fig4_accuracy, plots.table2_efficiency,
               plots.plot_fig5_efficiency, plots.plot_fig6_tradeoff, plots.plot_criteria, plots.plot_roofline_measured,
               plots.plot_decode_state_traffic, plots.plot_recall):
        with pytest.raises(plots.PlotError, match="no .* rows"):
            fn(empty)
    with pytest.raises(Exception, match="no profiling rows"):
        plots.plot_fig2_latency(empty)


# --- executing every notebook ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two tiny models trained for a few steps on the corpus (byte-level BPE of 1024 tokens), a recall model,
    and $PERFMAMBA_RESULTS / $PERFMAMBA_ARTIFACTS in a temporary directory (the kernels inherit them)."""
    import torch

    from perfmamba.config import preset
    from perfmamba.data import encode_splits, load_corpus, train_tokenizer
    from perfmamba.experiments import recall_model
    from perfmamba.train import train

    root = tmp_path_factory.mktemp("notebooks")
    artifacts, results, out = root / "artifacts", root / "results", root / "out"
    mp = pytest.MonkeyPatch()
    mp.setenv("PERFMAMBA_RESULTS", str(results))
    mp.setenv("PERFMAMBA_ARTIFACTS", str(artifacts))
    mp.setenv("PERFMAMBA_THREADS", str(torch.get_num_threads()))
    corpus = load_corpus(artifacts / "corpus")
    tok = train_tokenizer(corpus["validation"], vocab_size=1024, out_dir=artifacts / "tokenizer")
    toks = encode_splits({"train": corpus["validation"], "validation": corpus["test"][:20000]}, tok)
    dirs = {}
    for arch, name in (("mamba1", "mamba-tiny"), ("mamba2", "mamba2-tiny")):
        dirs[arch] = str(artifacts / "models" / name)
        train(preset(name, vocab_size=len(tok)), toks["train"], toks["validation"], out_dir=dirs[arch], tokenizer=tok,
              steps=10, batch_size=8, seq_len=64, eval_every=10, eval_tokens=1024, progress=False)
    smoke_recall = yaml.safe_load(notebooks.params_file("ext_recall", "smoke").read_text())
    recall_model(artifacts, train_steps=smoke_recall["train_steps"], progress=False)  # ext_recall reuses it
    yield {"overrides": {"artifacts": str(artifacts), "model_dirs": dirs}, "out": out, "results": results}
    mp.undo()


def outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def glued(nb) -> set[str]:
    keys = set()
    for o in outputs(nb):
        meta = o.get("metadata", {}).get("scrapbook", {})
        if meta.get("name"):
            keys.add(meta["name"])
    return keys


@pytest.mark.slow
@pytest.mark.parametrize("name", notebooks.NOTEBOOKS)
def test_notebook_executes_with_smoke_parameters(tiny, name):
    declared = notebooks.declared_parameters(notebooks.NOTEBOOK_DIR / f"{name}.ipynb")
    path = notebooks.execute(name, "smoke", overrides={k: v for k, v in tiny["overrides"].items() if k in declared},
                             output_dir=tiny["out"], progress=False)
    nb = nbformat.read(path, as_version=4)
    outs = outputs(nb)
    assert not [o for o in outs if o.get("output_type") == "error"]
    figures = [o for o in outs if "image/png" in o.get("data", {})]
    tables = [o for o in outs if "<table" in str(o.get("data", {}).get("text/html", ""))]
    assert figures or tables, f"{name}: no figure and no table in the executed notebook"
    wanted = {k for n, k in quoted() if n == name}
    assert wanted <= glued(nb), f"{name}: the book quotes numbers the notebook does not glue: " \
                                f"{sorted(wanted - glued(nb))}"


@pytest.mark.slow
def test_results_stay_in_the_temporary_directory(tiny):
    """Run after the notebooks: their rows went to $PERFMAMBA_RESULTS, with the glued numbers in claims.json and the
    claim records in claims_records.json."""
    claims = list(tiny["results"].glob("*/claims.json"))
    assert len(claims) == 1
    published = set(json.loads(claims[0].read_text()))
    assert {"fig2_latency", "table1_components", "claims"} <= published <= set(notebooks.NOTEBOOKS)
    recs = json.loads(claims[0].with_name("claims_records.json").read_text())
    assert {r["id"] for r in recs} >= {"table1_flops_mamba1_out_proj", "headline", "accuracy_zones"}
    assert list(tiny["results"].glob("*/latency.csv")) and list(tiny["results"].glob("*/pruning_quality.csv"))
