"""The benchmark suite runs end to end with tiny sizes, so it cannot rot. No timing assertions."""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path

import pytest

from benchmarks import profile, run, worker_end


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


def test_worker_end_variants_echo_every_call_and_a_codec_reply_outlives_its_worker() -> None:
    """``python -m benchmarks.worker_end``: each of the four wires completes every round trip
    with the CALL echoed back (a wrong echo raises), counted by the worker too; and a reply our
    codec wrote is in the kernel when ``sendall`` returns, so it reaches the host even though
    the worker is SIGKILLed right after (pyzmq's may not: no assertion on it)."""
    result = worker_end.run(calls=50, rounds=2, kill_trials=3)
    assert [r["order"] for r in result["rounds"]] == [
        list(worker_end.VARIANTS), list(reversed(worker_end.VARIANTS))
    ]
    for r in result["rounds"]:
        assert set(r["figures"]) == set(worker_end.VARIANTS)
        for name, figures in r["figures"].items():
            assert figures["samples"] == 50 and figures["worker_served"] == 50, name
            assert isinstance(figures["worker_cpu_us_per_rt"], numbers.Real), name
    assert result["kill_after_send"]["codec socketpair"] == {"trials": 3, "replies_arrived": 3}
    assert result["kill_after_send"]["pyzmq DEALER"]["trials"] == 3
