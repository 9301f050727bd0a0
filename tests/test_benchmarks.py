"""The benchmark suite runs end to end with tiny sizes, so it cannot rot. No timing assertions."""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path

import pytest

from benchmarks import profile, run


def test_suite_runs_with_tiny_sizes(tmp_path: Path) -> None:
    run.main(["--quick", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "benchmarks.json").read_text())
    assert set(report["benchmarks"]) == set(run.BENCHMARKS)
    for name, rows in report["benchmarks"].items():
        assert rows, name
        for row in rows:
            assert isinstance(row["ours"]["median"], numbers.Real), (name, row)
            assert row["ours"]["samples"] > 0, (name, row)
            for peer, figures in row["peers"].items():
                assert isinstance(figures["median"], numbers.Real), (name, peer)
                assert figures["samples"] > 0, (name, peer)
    table = (tmp_path / "BENCHMARKS.md").read_text()
    assert "CPUs" in table and "python -m benchmarks.run --quick" in table
    for name in run.BENCHMARKS:
        assert any(line.startswith(f"| {name} |") for line in table.splitlines()), name


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a root host (finds the worker by uid)")
def test_profile_tool_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m benchmarks.profile`` (CPU per call by thread; memory left after a burst)."""
    profile.cpu(50)
    profile.memory(100)
    out = capsys.readouterr().out
    assert "wall per call" in out and "total CPU per call" in out  # (50 calls: few ticks)
    assert "200 calls" in out and "timer heap" in out
