"""``sandbox demo``: every example and hostile action under a strict policy, in one table.

It is the first thing a new user runs, so it must be honest: each row says what the action
attempted, what came back, and whether that counts as contained. A row that is not contained
says so, and the command then exits 1.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from host import Outcome
from host.terminal import BOLD_RED, GREEN, YELLOW, colour_wanted, paint
from policies import KiB, MiB, Policy

#: The policy every demo action runs under.
DEMO_POLICY = Policy(
    wall_time=2.0,
    cpu_time=1.0,
    memory=128 * MiB,
    processes=16,
    output=256 * KiB,
    log=16 * KiB,
)


@dataclass(frozen=True)
class Scenario:
    action: str
    input: dict[str, Any]
    attempts: str
    contained: Callable[[Outcome], bool]


def _is(*types: str) -> Callable[[Outcome], bool]:
    return lambda o: o.error is not None and o.error.type in types


def _ok(o: Outcome) -> bool:
    return o.ok


def _scenarios(listener_port: int, canary: str) -> list[Scenario]:
    stopped_by_limit = _is("Timeout", "CpuExceeded")
    return [
        Scenario("text.word_count", {"text": "the quick brown fox"}, "count words", _ok),
        Scenario("text.regex_search", {"pattern": r"o\w", "text": "foo bow"}, "regex", _ok),
        Scenario(
            "text.regex_search",
            {"pattern": "(a+)+$", "text": "a" * 40 + "b"},
            "catastrophic regex backtracking",
            stopped_by_limit,
        ),
        Scenario("hostile.spin", {"seconds": 60}, "busy loop for 60 s", stopped_by_limit),
        Scenario("hostile.spin_native", {"seconds": 60}, "loop inside C code", stopped_by_limit),
        Scenario("hostile.sleep", {"seconds": 60}, "sleep for 60 s", _is("Timeout")),
        Scenario(
            "hostile.allocate",
            {"limit_mib": 4096},
            "allocate 4 GiB step by step",
            _is("MemoryExceeded"),
        ),
        Scenario(
            "hostile.allocate_once", {"mib": 4096}, "allocate 4 GiB at once", _is("MemoryExceeded")
        ),
        Scenario(
            "hostile.allocate_in_children",
            {"children": 8, "mib_each": 512, "hold_seconds": 1},
            "allocate 512 MiB in each of 8 children",
            lambda o: not o.ok or o.value == 0,
        ),
        Scenario(
            "hostile.double_fork",
            {"seconds": 60},
            "setsid + double fork, then sleep",
            _is("Timeout"),
        ),
        Scenario(
            "hostile.fork_bomb",
            {"limit": 2000, "child_seconds": 30},
            "fork 2000 processes",
            lambda o: not o.ok or (isinstance(o.value, int) and o.value < 2000),
        ),
        Scenario(
            "hostile.flood_stdout",
            {"megabytes": 100},
            "write 100 MB to stdout",
            lambda o: len(o.logs.encode()) <= DEMO_POLICY.log + 200,
        ),
        Scenario("hostile.huge_result", {"megabytes": 16}, "return 16 MB", _is("OutputTooLarge")),
        Scenario("hostile.exit", {"code": 3}, "os._exit(3)", _is("WorkerCrashed")),
        Scenario("hostile.segfault", {}, "dereference NULL (SIGSEGV)", _is("WorkerCrashed")),
        Scenario(
            "hostile.raise_error", {"message": "boom"}, "raise ValueError", _is("ActionFailed")
        ),
        Scenario("hostile.wrong_output", {}, "return a str for an int", _is("OutputInvalid")),
        Scenario(
            "hostile.read_file", {"path": "/etc/shadow"}, "read /etc/shadow", _is("ActionFailed")
        ),
        Scenario(
            "hostile.read_file",
            {"path": canary},
            "read a file outside its allowance",
            _is("ActionFailed"),
        ),
        Scenario(
            "hostile.write_file",
            {"path": canary + ".written", "text": "pwned"},
            "write a file outside its workdir",
            lambda o: not os.path.exists(canary + ".written"),
        ),
        Scenario(
            "hostile.open_socket",
            {"host": "127.0.0.1", "port": listener_port, "timeout": 1.0},
            "connect to a TCP listener on 127.0.0.1",
            lambda o: o.error is not None and "ConnectionRefused" not in o.error.message,
        ),
    ]


def _size(n: int) -> str:
    return f"{n / MiB:.1f}MiB" if n else "-"


def run_demo(out: Any = None, *, colour: bool | None = None, status: Any = None) -> int:
    """Run the scenarios, print the table row by row as each finishes; 0 when every hostile
    action was contained.

    ``colour`` (default: ``out`` is a terminal and ``NO_COLOR`` is unset) paints outcomes;
    ``status`` (default: stderr when it is a terminal) gets a transient line naming the action
    running now, erased before the row is printed. Piped, neither adds a byte."""
    out = out or sys.stdout
    colour = colour_wanted(out) if colour is None else colour
    if status is None and sys.stderr.isatty():
        status = sys.stderr
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]

    def say(text: str) -> None:
        if status is not None:
            status.write(f"\r\x1b[K{text}")
            status.flush()

    failures = []
    count = 0
    with tempfile.TemporaryDirectory(prefix="sandbox-demo-") as tmp:
        canary = os.path.join(tmp, "canary.txt")
        with open(canary, "w") as f:
            f.write("host secret\n")
        from host.cli import new_host

        with new_host() as host:
            say("starting the workers (every confinement layer on)...")
            host.add_provider("providers.examples.text", policy=DEMO_POLICY)
            host.add_provider("providers.examples.hostile", policy=DEMO_POLICY)
            layers = {p.name: p.layers for p in host.providers()}
            say("")
            _print_heading(out, layers)
            for scenario in _scenarios(port, canary):
                say(f"running {scenario.action}: {scenario.attempts}...")
                outcome = host.run(scenario.action, scenario.input)
                contained = scenario.contained(outcome)
                if scenario.action == "hostile.open_socket":
                    try:
                        conn, _ = listener.accept()
                        conn.close()
                        contained = False  # a connection reached the host's listener
                    except BlockingIOError:
                        pass
                result = "ok" if outcome.ok else outcome.error.type if outcome.error else "?"
                if outcome.ok and isinstance(outcome.value, int):
                    result = f"ok ({outcome.value})"  # e.g. how many forks got through
                say("")
                _print_row(out, scenario, result, contained, outcome, colour)
                count += 1
                if not contained:
                    failures.append(scenario.attempts)
    listener.close()
    print(file=out)
    if failures:
        print(paint(f"NOT contained: {'; '.join(failures)}", BOLD_RED, colour), file=out)
        return 1
    print(paint(f"All {count} actions were contained.", GREEN, colour), file=out)
    return 0


_HEADER = (
    f"{'action':<30} {'attempted':<40} {'outcome':<17} {'contained':<9} "
    f"{'wall':>7} {'cpu':>7} {'peak mem':>9}"
)


def _print_heading(out: Any, layers: dict[str, list[dict[str, Any]]]) -> None:
    print(f"Policy: {_policy_line()}", file=out)
    applied = [f"{r['name']}" for r in layers.get("hostile", []) if r.get("applied")]
    missing = [
        f"{r['name']} ({r['detail']})" for r in layers.get("hostile", []) if not r.get("applied")
    ]
    print(f"Layers applied: {', '.join(applied) or 'none'}", file=out)
    if missing:
        print(f"Layers not applied: {'; '.join(missing)}", file=out)
    print(file=out)
    print(_HEADER, file=out)
    print("-" * len(_HEADER), file=out, flush=True)


def _print_row(
    out: Any, scenario: Scenario, result: str, contained: bool, outcome: Outcome, colour: bool
) -> None:
    usage = outcome.usage
    # padded before painting, so the escape codes do not shift the columns
    shown = paint(f"{result:<17}", GREEN if outcome.ok else YELLOW, colour)
    verdict = paint(f"{'yes' if contained else 'NO':<9}", GREEN if contained else BOLD_RED, colour)
    print(
        f"{scenario.action:<30} {scenario.attempts:<40} {shown} {verdict} "
        f"{usage.wall_s:>6.3f}s {usage.cpu_s:>6.3f}s {_size(usage.max_rss_bytes):>9}",
        file=out,
        flush=True,
    )


def _policy_line() -> str:
    return ", ".join(
        f"{key}={value}"
        for key, value, _ in DEMO_POLICY.describe()
        if key in ("wall_time", "cpu_time", "memory", "processes", "output", "log", "network")
    )
