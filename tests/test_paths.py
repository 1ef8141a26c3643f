"""perfmamba.paths: where files live, from the environment, and `environ` that sets a variable for a while."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from perfmamba import paths, results


def test_roots_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.ARTIFACTS, raising=False)
    monkeypatch.delenv(paths.RESULTS, raising=False)
    assert paths.artifacts_root() == Path("artifacts")
    assert paths.results_root() == paths.REPO / "data" / "results"
    with paths.environ(**{paths.ARTIFACTS: str(tmp_path / "a"), paths.RESULTS: str(tmp_path / "r")}):
        assert paths.artifacts_root() == tmp_path / "a"
        assert results.results_path("x", "cpu").parent.parent == tmp_path / "r"
    assert paths.ARTIFACTS not in os.environ and paths.RESULTS not in os.environ


def test_environ_restores_on_error(monkeypatch):
    monkeypatch.setenv("PERFMAMBA_TEST_VAR", "old")
    with pytest.raises(RuntimeError):
        with paths.environ(PERFMAMBA_TEST_VAR="new"):
            assert os.environ["PERFMAMBA_TEST_VAR"] == "new"
            raise RuntimeError
    assert os.environ["PERFMAMBA_TEST_VAR"] == "old"
