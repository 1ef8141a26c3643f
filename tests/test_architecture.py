"""The shape of the library: no import cycle between its modules (imports inside functions included, since a
function-local import only hides a cycle), and every module short enough to read in one sitting."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "perfmamba"
MAX_LINES = 600


def modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.with_suffix("").relative_to(ROOT.parent).parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imports(name: str, path: Path, known) -> set[str]:
    """The perfmamba modules that `name` imports anywhere in its body (a package's submodule where the name is one,
    else the package), and the packages above them, whose __init__ runs first."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for t in targets:
            if not t.startswith("perfmamba"):
                continue
            while t not in known and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in known and t != name:
                found.add(t)
                break
    # importing a.b.c runs a/b/__init__ first: a module depends on the packages above what it imports (the root
    # package aside, which is where every import starts)
    for t in list(found):
        parts = t.split(".")
        found.update(p for i in range(2, len(parts)) if (p := ".".join(parts[:i])) in known and p != name
                     and not name.startswith(p + "."))
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_inside_the_library():
    mods = modules()
    graph = {m: imports(m, p, mods) for m, p in mods.items()}
    assert graph["perfmamba.checkpoints"] >= {"perfmamba.models.lm", "perfmamba.formats"}  # the walk sees imports
    assert not cycles(graph), f"import cycles: {cycles(graph)}"


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_is_too_long_to_read():
    long = {str(p.relative_to(ROOT.parent)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_artifact_and_the_command_sit_on_top():
    """Nothing in the library imports the artifact tooling or the command; the models import none of what
    measures, cuts, evaluates or plots them."""
    mods = modules()
    graph = {m: imports(m, p, mods) for m, p in mods.items()}
    top = ("perfmamba.artifact", "perfmamba.cli", "perfmamba.__main__")
    assert graph["perfmamba.cli"] & {"perfmamba.artifact.pipeline", "perfmamba.artifact.notebooks"}
    below = {m: bad for m, deps in graph.items() if not m.startswith(top)
             if (bad := sorted(d for d in deps if d.startswith(top)))}
    assert not below, below
    tools = ("perfmamba.profiling", "perfmamba.pruning", "perfmamba.evaluation", "perfmamba.experiments",
             "perfmamba.claims", "perfmamba.plots", "perfmamba.train", "perfmamba.data")
    models = {m: bad for m, deps in graph.items() if m.startswith(("perfmamba.models", "perfmamba.ops"))
              if (bad := sorted(d for d in deps if d.startswith(tools)))}
    assert not models, models
