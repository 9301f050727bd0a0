"""``pytest --shards N``: the suite in N processes at once, each confined as the serial run is.

The suite spends most of its time waiting (for timeouts, heartbeats, idle workers, servers)
or in one core's worth of work, so on a machine with two cores two processes finish it in
little more than half the time. pytest-xdist cannot do it here: each process of the run must
be pid 1 of a pid namespace of its own (``tests.confinement``), so that an attack that got out
reaches only that process's tests and the leak check sees only its processes, and xdist's
workers cannot re-execute themselves inside new namespaces (their channel to the controller
is their standard input).

So the run that collected the tests (the parent) hands each shard a list of test ids; a shard
is a plain ``pytest`` started with the same arguments, which confines itself, runs only those
tests and writes each report as a JSON line (pytest's own ``pytest_report_to_serializable``).
The parent replays those reports through its own hooks as they come, so progress, failures,
``-ra``, ``--durations`` and the exit status are those of one run. Whole modules go to one
shard (their module fixtures are made once), the heaviest first to the least loaded shard,
by the weights in ``tests/shard_weights.json`` (seconds per module, from a serial run's
``--durations=0``; regenerate with ``python -m tests.shards DURATIONS_OUTPUT``).

Tests marked ``serial`` (they bound a latency or a CPU overshoot, which the other shard's load
would make flaky) run in the parent after the shards, alone on the machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests import confinement

WEIGHTS = Path(__file__).with_name("shard_weights.json")
#: A module the weights do not know costs this much per test.
UNKNOWN_WEIGHT_PER_TEST_S = 0.5
#: How often the parent reads the shards' reports.
POLL_S = 0.1
#: How long each part took, for the terminal summary (and for regenerating the weights).
summary: str | None = None


def add_options(parser: pytest.Parser) -> None:
    parser.addoption(
        "--shards",
        type=int,
        default=1,
        metavar="N",
        help="run the suite in N processes at once, each confined in a pid namespace of its "
        "own; tests marked serial run alone after them (default 1: one process)",
    )
    parser.addoption("--shard-of", default=None, help="(internal) a shard's work: a path stem")


def selected_by_the_parent(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a shard: keep only the tests the parent gave it, in collection order."""
    stem = config.getoption("--shard-of")
    if not stem:
        return
    given = set(Path(f"{stem}.ids").read_text().splitlines())
    kept = [item for item in items if item.nodeid in given]
    dropped = [item for item in items if item.nodeid not in given]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


def write_report(config: pytest.Config, report: pytest.TestReport) -> None:
    """In a shard: hand one report to the parent."""
    stem = config.getoption("--shard-of")
    if not stem:
        return
    data = config.hook.pytest_report_to_serializable(config=config, report=report)
    with open(f"{stem}.jsonl", "a") as f:
        f.write(json.dumps(data) + "\n")


def wanted(config: pytest.Config) -> bool:
    return (
        config.getoption("--shards") > 1
        and not config.getoption("--shard-of")
        and not config.getoption("collectonly")
    )


def run(session: pytest.Session) -> bool:
    """The parent's test loop: shards first, then the serial tests here."""
    config = session.config
    serial = [item for item in session.items if item.get_closest_marker("serial")]
    shared = [item for item in session.items if not item.get_closest_marker("serial")]
    groups = _assign(shared, config.getoption("--shards"))
    with tempfile.TemporaryDirectory(prefix="pytest-shards-") as work:
        shards = [_Shard(config, Path(work) / f"shard{i}", group) for i, group in enumerate(groups)]
        started = time.monotonic()
        try:
            _replay_until_done(session, shards)
        finally:
            for shard in shards:
                shard.stop()
        times = [f"{len(s.items)} tests in {s.took:.0f}s" for s in shards]
        if session.shouldfail or session.shouldstop:
            return True
        serial_started = time.monotonic()
        for i, item in enumerate(serial):
            nextitem = serial[i + 1] if i + 1 < len(serial) else None
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            if session.shouldfail or session.shouldstop:
                break
    global summary
    summary = (
        f"shards: {'; '.join(times)} (all {serial_started - started:.0f}s); then "
        f"{len(serial)} serial tests in {time.monotonic() - serial_started:.0f}s"
    )
    return True


def _assign(items: list[pytest.Item], count: int) -> list[list[pytest.Item]]:
    """Whole modules to shards, heaviest first to the lightest shard (items keep their order)."""
    by_module: dict[str, list[pytest.Item]] = defaultdict(list)
    for item in items:
        by_module[item.nodeid.split("::")[0]].append(item)
    try:
        weights: dict[str, float] = json.loads(WEIGHTS.read_text())
    except (OSError, ValueError):
        weights = {}

    def weight(module: str) -> float:
        known = weights.get(module)
        return known if known is not None else UNKNOWN_WEIGHT_PER_TEST_S * len(by_module[module])

    loads = [0.0] * count
    modules: list[list[str]] = [[] for _ in range(count)]
    for module in sorted(by_module, key=weight, reverse=True):
        lightest = loads.index(min(loads))
        loads[lightest] += weight(module)
        modules[lightest].append(module)
    order = {item.nodeid: i for i, item in enumerate(items)}
    return [
        sorted((item for m in group for item in by_module[m]), key=lambda it: order[it.nodeid])
        for group in modules
        if group
    ]


class _Shard:
    """One child pytest, its test ids, its reports file and its own output (kept for a crash)."""

    def __init__(self, config: pytest.Config, stem: Path, items: list[pytest.Item]) -> None:
        self.stem = stem
        self.items = items
        self.finished: set[str] = set()
        Path(f"{stem}.ids").write_text("\n".join(item.nodeid for item in items) + "\n")
        Path(f"{stem}.jsonl").touch()
        self._reports = open(f"{stem}.jsonl")  # noqa: SIM115 - read as it grows, closed in stop
        self._pending = ""
        self.output = open(f"{stem}.out", "w+b")  # noqa: SIM115 - closed in stop
        self.started = time.monotonic()
        self.ended: float | None = None
        env = dict(os.environ)
        env.pop(confinement.MARKER, None)  # a shard confines itself, in a namespace of its own
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest", *_without_shards(config.invocation_params.args),
             "-p", "no:cacheprovider", "--shard-of", str(stem)],
            cwd=config.invocation_params.dir, env=env,
            stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def read(self) -> list[dict[str, Any]]:
        """Reports written since the last read (whole lines only)."""
        self._pending += self._reports.read()
        *lines, self._pending = self._pending.split("\n")
        return [json.loads(line) for line in lines if line]

    @property
    def took(self) -> float:
        """Seconds from its start until it exited (or until now)."""
        return (self.ended or time.monotonic()) - self.started

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reports.close()
        self.output.close()

    def tail(self, limit: int = 4000) -> str:
        self.output.flush()
        self.output.seek(0)
        return self.output.read().decode(errors="replace")[-limit:]


def _without_shards(args: tuple[str, ...] | list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--shards":
            skip = True
        elif not arg.startswith("--shards="):
            out.append(arg)
    return out


def _replay_until_done(session: pytest.Session, shards: list[_Shard]) -> None:
    hook = session.config.hook
    live = list(shards)
    while live:
        for shard in list(live):
            exited = shard.process.poll() is not None
            for data in shard.read():
                report = hook.pytest_report_from_serializable(config=session.config, data=data)
                if isinstance(report.longrepr, list):  # a skip's (path, line, reason), via JSON
                    report.longrepr = tuple(report.longrepr)
                if report.when == "setup":
                    hook.pytest_runtest_logstart(nodeid=report.nodeid, location=report.location)
                hook.pytest_runtest_logreport(report=report)
                if report.when == "teardown":
                    shard.finished.add(report.nodeid)
                    hook.pytest_runtest_logfinish(nodeid=report.nodeid, location=report.location)
            if session.shouldfail or session.shouldstop:
                return
            if exited:
                shard.ended = time.monotonic()
                live.remove(shard)
                _fail_what_did_not_end(session, shard)
        time.sleep(POLL_S)


def _fail_what_did_not_end(session: pytest.Session, shard: _Shard) -> None:
    """A shard that died (or stopped early) fails each of its tests that did not end: the
    first with the end of the shard's output, which says why."""
    code = shard.process.returncode
    missing = [item for item in shard.items if item.nodeid not in shard.finished]
    if not missing and code in (0, 1):
        return
    if not missing:
        session.shouldfail = f"shard {shard.stem.name} exited with status {code}:\n{shard.tail()}"
        return
    hook = session.config.hook
    for i, item in enumerate(missing):
        why = f"the shard running this test exited with status {code} before it ended"
        if i == 0:
            why += f"; the end of its output:\n{shard.tail()}"
        location = item.location
        hook.pytest_runtest_logstart(nodeid=item.nodeid, location=location)
        report = pytest.TestReport(
            item.nodeid, location, {}, "failed", why, "call", [], 0.0, 0.0, 0.0
        )
        hook.pytest_runtest_logreport(report=report)
        hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=location)


def _weights_from_durations(text: str) -> dict[str, float]:
    """Seconds per module from ``pytest --durations=0`` output."""
    totals: dict[str, float] = defaultdict(float)
    for match in re.finditer(r"^([0-9.]+)s (?:call|setup|teardown)\s+(\S+?)::", text, re.M):
        totals[match.group(2)] += float(match.group(1))
    return {module: round(seconds, 1) for module, seconds in sorted(totals.items())}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.shards DURATIONS_OUTPUT  (a run's --durations=0)")
    weights = _weights_from_durations(Path(sys.argv[1]).read_text())
    WEIGHTS.write_text(json.dumps(weights, indent=1) + "\n")
    print(f"{len(weights)} modules, {sum(weights.values()):.0f} s in all: {WEIGHTS}")
