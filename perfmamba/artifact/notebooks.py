"""Execute the papermill notebooks into the book.

Each notebook `notebooks/<name>.ipynb` has three parameter files under `notebooks/params/`: `<name>.yaml` (the
paper's settings, for a GPU), `<name>.cpu.yaml` (the default on a 2-core CPU) and `<name>.smoke.yaml` (tiny
settings that CI runs). Executed copies land in `book/notebooks/<name>.ipynb`, which the book renders.
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from .. import paths, results
from ..errors import NotebookError
from ..io import atomic_path, atomic_write_text

ROOT = paths.REPO
NOTEBOOK_DIR = ROOT / "notebooks"
OUTPUT_DIR = ROOT / "book" / "notebooks"
PROFILES = ("paper", "cpu", "smoke")
KERNEL_WARNINGS = "ignore:IProgress not found:Warning"

# Paper artefacts first, then extensions; the book's table of contents follows this order.
NOTEBOOKS = [
    "fig2_latency",
    "table1_components",
    "fig3_state_activity",
    "fig4_accuracy",
    "table2_efficiency",
    "fig6_tradeoff",
    "ext_criteria",
    "ext_roofline",
    "ext_decode_state_traffic",
    "ext_recall",
    "ext_kernels",
    "claims",  # last: it reads the rows every other notebook wrote; the book shows it first
]
# Notebooks whose page belongs to the book's first part, not to Results or Extensions.
FRONT = ("claims",)


def check_names(names) -> None:
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        raise NotebookError(f"no notebook {unknown[0]!r} (known: {', '.join(NOTEBOOKS)})")


def params_file(name: str, profile: str) -> Path:
    if profile not in PROFILES:
        raise NotebookError(f"unknown parameter profile {profile!r}; expected one of {', '.join(PROFILES)}")
    suffix = "" if profile == "paper" else f".{profile}"
    return NOTEBOOK_DIR / "params" / f"{name}{suffix}.yaml"


def declared_parameters(path: Path) -> set[str]:
    """Names assigned in the cell tagged `parameters` (papermill's own inspection)."""
    import papermill

    return set(papermill.inspect_notebook(str(path)))


def resolve_parameters(name: str, profile: str, overrides: dict | None = None) -> dict:
    path = NOTEBOOK_DIR / f"{name}.ipynb"
    if not path.exists():
        raise NotebookError(f"no notebook {name!r} (known: {', '.join(NOTEBOOKS)})")
    pfile = params_file(name, profile)
    params = yaml.safe_load(pfile.read_text()) or {} if pfile.exists() else {}
    params.update(overrides or {})
    declared = declared_parameters(path)
    unknown = sorted(set(params) - declared)
    if unknown:
        raise NotebookError(f"{name}: unknown parameter(s) {', '.join(unknown)} (from {pfile.name} or overrides); "
                            f"the notebook declares {', '.join(sorted(declared))}")
    return params


def _relative(value):
    """Absolute paths inside the repository → relative to it (papermill runs with cwd=ROOT), so executed notebooks
    do not record the directory the repository was checked out in."""
    if isinstance(value, dict):
        return {k: _relative(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v) for v in value]
    if isinstance(value, (str, os.PathLike)) and os.path.isabs(value):
        try:
            return str(Path(value).resolve().relative_to(ROOT))
        except ValueError:
            return str(value)
    return value


def execute(name: str, profile: str = "cpu", *, overrides: dict | None = None, output_dir: Path | None = None,
            progress: bool = True) -> Path:
    """Run one notebook with papermill; the output is written atomically (a failed run leaves no page)."""
    import nbformat
    import papermill

    params = _relative(resolve_parameters(name, profile, overrides))
    source = NOTEBOOK_DIR / f"{name}.ipynb"
    out = Path(output_dir or OUTPUT_DIR) / f"{name}.ipynb"
    # the kernel inherits this: tqdm.auto warns once that ipywidgets is missing (it then draws text bars), which
    # would otherwise be the first output of every page
    warnings = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), KERNEL_WARNINGS]))
    try:
        with paths.environ(PYTHONWARNINGS=warnings), atomic_path(out, suffix=".ipynb") as tmp:
            papermill.execute_notebook(str(source), str(tmp), parameters=params, cwd=str(ROOT),
                                       kernel_name="python3", progress_bar=progress, log_output=False)
            # papermill records where it read and wrote (a temporary file): record the source and the page
            # instead, relative to the repository, so an executed notebook does not depend on where it ran
            nb = nbformat.read(tmp, as_version=4)
            meta = nb.metadata.get("papermill", {})
            meta["input_path"] = _relative(str(source.resolve()))
            meta["output_path"] = _relative(str(out.resolve()))
            nbformat.write(nb, tmp)
    except papermill.PapermillExecutionError as e:
        raise NotebookError(f"{name}: cell {e.exec_count} failed: {e.ename}: {e.evalue}") from None
    return out


def execute_all(profile: str = "cpu", *, names=None, overrides: dict | None = None, output_dir: Path | None = None):
    """Execute `names` (default every notebook, in order); overrides go to the notebooks that declare them.
    Prints the wall time of each notebook; returns the executed paths."""
    names = list(names or NOTEBOOKS)
    check_names(names)
    out = []
    for name in tqdm(names, desc=f"notebooks ({profile})", unit="nb"):
        t0 = time.perf_counter()
        declared = declared_parameters(NOTEBOOK_DIR / f"{name}.ipynb")
        own = {k: v for k, v in (overrides or {}).items() if k in declared}
        out.append(execute(name, profile, overrides=own, output_dir=output_dir, progress=False))
        print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)
    return out


def publish(numbers: dict, notebook: str, *, results_root=None):
    """Glue each number of a notebook (`myst_nb.glue`, so the claims page can quote it as
    ``{glue:text}`notebooks/<notebook>.ipynb::<key>:s` ``), show them as a table, and merge them into
    ``<results_root>/<device-slug>/claims.json`` (machine-readable, one entry per notebook). Returns nothing, so
    that a notebook cell ending with it shows the table only."""
    from IPython.display import Markdown, display
    from myst_nb import glue

    check_names([notebook])
    text = {k: str(v) for k, v in numbers.items()}
    for key, value in text.items():
        glue(key, value, display=False)
    lines = ["| quantity | value |", "| --- | --- |"]
    lines += [f"| `{k}` | {v.replace('|', '/')} |" for k, v in text.items()]
    display(Markdown("\n".join(lines)))
    path = results.results_path("claims", root=results_root).with_suffix(".json")
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except (ValueError, OSError):
        data = {}
    data[notebook] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "numbers": text}
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def glue_table(key: str, table) -> None:
    """Glue a table (a DataFrame, as HTML with every cell whole) that another page pastes with the ``{glue}``
    directive and ``:doc: notebooks/<name>.ipynb``."""
    from IPython.display import HTML
    from myst_nb import glue

    glue(key, HTML(table.to_html(index=False)), display=False)
