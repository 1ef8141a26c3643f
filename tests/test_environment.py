"""The exact pins (constraints/cpu.txt), the conda route (environment.yml), the compatible ranges
(pyproject.toml) and the running environment agree with each other."""
from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(lines, source: str) -> dict[str, tuple[str, str]]:
    """{normalised name: (name as written, version)} from `name==version` lines."""
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = PIN.match(line)
        assert m, f"{source}: {line!r} is not an exact pin name==version"
        key = norm(m[1])
        assert key not in pins, f"{source}: {m[1]} pinned twice"
        pins[key] = (m[1], m[2])
    return pins


@pytest.fixture(scope="module")
def constraints():
    return parse_pins((ROOT / "constraints" / "cpu.txt").read_text().splitlines(), "constraints/cpu.txt")


@pytest.fixture(scope="module")
def env_yml():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def pip_section(env) -> list[str]:
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "environment.yml needs exactly one pip section"
    return [str(x) for x in sections[0]]


def test_environment_yml_shape(env_yml):
    assert env_yml["name"] == "perfmamba"
    conda = [d for d in env_yml["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda and "pip" in conda
    assert "-e .[dev,book]" in pip_section(env_yml)


def test_environment_yml_mirrors_constraints(constraints, env_yml):
    env = parse_pins(pip_section(env_yml), "environment.yml")
    assert {k: v for k, (_, v) in env.items()} == {k: v for k, (_, v) in constraints.items()}


def transitive(path=ROOT / "constraints" / "cpu.txt") -> set[str]:
    """Pins after the line `# transitive` are dependencies of dependencies, pinned for exactness."""
    lines = path.read_text().splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip().lower().startswith("# transitive")), len(lines))
    return set(parse_pins(lines[start:], str(path)))


def test_every_pin_is_a_declared_dependency(constraints):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {norm(Requirement(r).name) for r in project["dependencies"]}
    for reqs in project.get("optional-dependencies", {}).values():
        declared |= {norm(Requirement(r).name) for r in reqs}
    undeclared = sorted(name for key, (name, _) in constraints.items() if key not in declared and key not in transitive())
    assert not undeclared, f"pinned in constraints/cpu.txt but not in pyproject.toml: {undeclared}"


def test_pins_satisfy_pyproject_ranges(constraints):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [Requirement(r) for r in extra]
    bad = [f"{r} vs =={constraints[norm(r.name)][1]}" for r in reqs
           if norm(r.name) in constraints and not r.specifier.contains(constraints[norm(r.name)][1], prereleases=True)]
    assert not bad, f"pins outside pyproject.toml's ranges: {bad}"


def test_installed_versions_equal_pins(constraints):
    """Catches a stale .venv: re-run `make venv` after changing constraints/cpu.txt."""
    stale = []
    for name, pinned in constraints.values():
        try:
            installed = Version(version(name)).public  # drops local tags such as torch's +cpu
        except PackageNotFoundError:
            stale.append(f"{name}: not installed (pinned {pinned})")
            continue
        if Version(installed) != Version(pinned):
            stale.append(f"{name}: installed {installed}, pinned {pinned}")
    assert not stale, "environment differs from constraints/cpu.txt:\n" + "\n".join(stale)
