"""Fuzz one action through a live :class:`~host.Host`: every example runs confined.

Hypothesis drives the search; each example is one ``host.run`` call whose outcome is judged by
the named checks (:data:`CHECKS`). A finding is raised as an exception whose *class* is its
(check, outcome type), so Hypothesis keeps, shrinks and replays each distinct failure
separately (its ``report_multiple_bugs``). Measured usage goes to ``hypothesis.target`` so the
search climbs towards expensive inputs (once a measure rises above a round trip's noise); once
an action has timed out, the examples tried while shrinking get a lower deadline (the final
replay of each failure gets the full one again).
Each failure reported is kept (:mod:`host.fuzz.store`) and tried before the next run's search.
"""

from __future__ import annotations

import json
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from host.fuzz.checks import CHECKS, OPT_IN
from host.fuzz.store import FailureStore

if TYPE_CHECKING:
    from host.catalog import ActionDescriptor
    from host.errors import Outcome, Usage

def _serialize_ast_parse() -> None:
    """Make ``ast.parse`` one thread at a time in this process. Hypothesis parses a lambda's
    source to describe a strategy that uses one, and CPython 3.11's AST conversion keeps its
    recursion depth in shared state: actions fuzzed in parallel (``--workers``) failed with
    ``SystemError: AST constructor recursion depth mismatch`` (5 runs in 5 with 4 workers).
    The wrapper changes nothing else."""
    import ast

    if getattr(ast.parse, "_sandbox_serialized", False):
        return
    parse, lock = ast.parse, threading.Lock()

    def serialized(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return parse(*args, **kwargs)

    serialized._sandbox_serialized = True  # type: ignore[attr-defined]
    ast.parse = serialized


_serialize_ast_parse()


class _TimeUp(BaseException):
    """``max_time`` passed: ends the Hypothesis run at once (a BaseException, which Hypothesis
    does not take for a failure of the test); the findings so far come from ``latest``."""


#: The per-example deadline once an example timed out (but for a failure's final replay): this
#: share of the full one, or this many times the slowest example that did not time out if that
#: is less; halved after each example that times out again, never under the floor (an action
#: that always hangs ran every one of its 100 examples at a quarter of its timeout: 131 s for
#: a 5 s timeout). An input that only outran the shorter deadline is not reported: the final
#: replay, at the full timeout, confirms a hang, and where it does not, the report keeps the
#: last one found at the full timeout. The floor leaves room for what a call's timeout also
#: counts: after a timeout the worker is replaced, and the next example waits for that (at
#: 0.1 s, on a loaded machine, examples that finish at once timed out, and the hang was
#: reported unshrunk).
SHRINK_DEADLINE_SHARE = 0.25
SHRINK_DEADLINE_SLOWEST = 10.0
SHRINK_DEADLINE_FLOOR_S = 0.3


@dataclass
class FuzzOptions:
    """What one fuzz run does; the CLI flags and ``fuzz_provider``'s keywords."""

    max_examples: int = 100
    seed: int | None = None
    timeout: float = 5.0
    max_time: float | None = None
    checks: frozenset[str] = frozenset(CHECKS) - OPT_IN
    mode: str = "positive"
    #: Where failures are kept and tried first next time (``host/fuzz/store.py``), or None.
    database: str | None = ".sandbox/fuzz-examples"
    shrink: bool = True
    #: Base Hypothesis settings (the pytest plugin passes the active profile's).
    settings: Any = None


@dataclass
class Finding:
    """One distinct failure, shrunk."""

    check: str
    outcome: str
    message: str
    input: Any
    usage: dict[str, Any]
    reproduce: str = ""
    #: Whether the input fits the schema (only ``mode all`` mixes both kinds); not reported.
    positive: bool = True
    #: It did not happen again when Hypothesis replayed it (its reproduce line may pass).
    flaky: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = {
            "check": self.check,
            "outcome": self.outcome,
            "message": self.message,
            "input": self.input,
            "reproduce": self.reproduce,
            "usage": self.usage,
        }
        if self.flaky:
            data["flaky"] = True
        return data


@dataclass
class ActionReport:
    action: str
    examples: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    #: The input that cost the most wall time, with its usage (even when no limit was hit).
    worst: dict[str, Any] | None = None
    #: Why the action could not be fuzzed (its input schema: no value satisfies it, or a
    #: ``$ref`` leads nowhere): a failure of the run, as a finding is.
    error: str = ""
    #: Why there was nothing to fuzz in this mode (negative mode, a schema every value
    #: satisfies): not a failure.
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "action": self.action,
            "examples": self.examples,
            "seconds": round(self.seconds, 3),
            "findings": [f.to_dict() for f in self.findings],
        }
        if self.worst is not None:
            data["worst"] = self.worst
        if self.error:
            data["error"] = self.error
        if self.note:
            data["note"] = self.note
        return data


class _Found(Exception):
    """A finding, raised inside the Hypothesis test; subclassed per (check, outcome)."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(f"{finding.check}: {finding.outcome}: {finding.message}")
        self.finding = finding


_KINDS: dict[tuple[str, str], type[_Found]] = {}
_KINDS_LOCK = threading.Lock()


def _kind(check: str, outcome: str) -> type[_Found]:
    with _KINDS_LOCK:
        key = (check, outcome)
        if key not in _KINDS:
            _KINDS[key] = type(f"{check}__{outcome}", (_Found,), {})
        return _KINDS[key]


_C1_ESCAPES = {c: f"\\u{c:04x}" for c in range(0x7F, 0xA0)}


def reproduce_command(action: str, value: Any, sources: Sequence[str], timeout: float) -> str:
    """The ``sandbox call`` line that runs this input again under the same providers, policy
    (from the same --config) and timeout."""
    # DEL and the C1 controls JSON-escaped (JSON escapes C0 itself): printed, the line goes
    # through the CLI's escaping of what a terminal would act on, which made them ``\x7f``,
    # not JSON, so the pasted line failed. They can only be inside strings.
    payload = json.dumps(value, separators=(",", ":"), ensure_ascii=False).translate(_C1_ESCAPES)
    return shlex.join(["sandbox", "call", action, payload, *sources, "--timeout", f"{timeout:g}"])


#: What a measure must exceed before ``hypothesis.target`` sees it. Below these an example
#: costs what a round trip costs (~0.5 ms of wall time, ~0.2 ms of the worker's CPU, a peak
#: memory within a few MiB of the worker's own), and the differences between examples are
#: noise: Hypothesis would spend its optimisation examples climbing that noise, and paid
#: ~0.04 ms per label per example for watching it (the three labels were 0.12 ms of an
#: example's ~1.5 ms). Above them the differences are the input's.
TARGET_FLOOR_WALL_S = 0.005
TARGET_FLOOR_CPU_S = 0.002
#: Peak memory counts once it is this far above the least peak the action's examples had.
TARGET_FLOOR_RSS_MIB = 16.0


def observations(usage: Usage, least_rss_bytes: int) -> dict[str, float]:
    """The ``target()`` scores of one example's usage: each measure above its floor."""
    scores: dict[str, float] = {}
    if usage.wall_s > TARGET_FLOOR_WALL_S:
        scores["wall_s"] = usage.wall_s
    if usage.cpu_s > TARGET_FLOOR_CPU_S:
        scores["cpu_s"] = usage.cpu_s
    rss_mib = usage.max_rss_bytes / 2**20
    if rss_mib > least_rss_bytes / 2**20 + TARGET_FLOOR_RSS_MIB:
        scores["max_rss_mib"] = rss_mib
    return scores


def judge(
    descriptor: ActionDescriptor, outcome: Outcome, positive: bool
) -> tuple[str, str, str] | None:
    """(check, outcome type, message) that ``outcome`` fails, or None."""
    if not positive:
        if outcome.error is not None and outcome.error.type == "InputInvalid":
            return None
        kind = "ok" if outcome.error is None else outcome.error.type
        return ("negative_data_rejection", kind, "a schema-invalid input was not refused")
    if outcome.error is None:
        return None
    kind = outcome.error.type
    details = outcome.error.details
    if kind == "ActionFailed" and (
        details.get("declared") is True or details.get("exception_type") in descriptor.raises
    ):
        return None
    for check, kinds in CHECKS.items():
        if kind in kinds:
            return (check, kind, outcome.error.message)
    return None


def _run(host: Any, action: str, value: Any, timeout: float) -> Outcome:
    """One confined example through ``run``: on a thread other than the main one (``sandbox
    fuzz`` runs its actions so) it reads its own reply, polling for it briefly, instead of
    waking the host's loop and being woken by it. Through ``submit`` (the loop reads the
    reply) an example took 1.126 ms against 0.974 ms this way (medians of 6 alternating rounds
    of 400 on text.upper, 2026-12-07); before the worker and the caller polled for replies,
    ``submit`` was the quicker (the two evicted each other from the caches)."""
    outcome: Outcome = host.run(action, value, timeout=timeout)
    return outcome


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def fuzz_action(
    host: Any,
    descriptor: ActionDescriptor,
    options: FuzzOptions,
    sources: Sequence[str],
    progress: Callable[[ActionReport, bool], None] | None = None,
    stop: threading.Event | None = None,
) -> ActionReport:
    """Fuzz one action; the report has each distinct failure once, shrunk, with its reproduce
    line. ``sources`` are the CLI arguments that load the same providers (--provider/--config).
    Once ``stop`` is set (the command was interrupted) no further example runs."""
    from hypothesis import HealthCheck, Phase, given, settings, target
    from hypothesis.control import current_build_context
    from hypothesis.errors import HypothesisException, Unsatisfiable

    from providers.testing import AcceptsEverything, from_schema, invalid_inputs

    name = descriptor.full_name
    report = ActionReport(name)
    schema = descriptor.input_schema
    # Only "all" mixes both kinds, so only there is each value tagged with its kind (a map per
    # example costs ~0.05 ms, Hypothesis's own per-example work being ~0.7 ms); the other modes
    # draw the bare values, and build only the strategy they use (the negative one compiles a
    # validator). A map draws no choices: saved examples replay the same either way.
    tagged = options.mode == "all"
    if options.mode not in ("positive", "negative", "all"):
        raise ValueError(f"unknown fuzz mode {options.mode!r}")
    try:
        if tagged:
            strategy = from_schema(schema).map(lambda v: (True, v))
            try:
                strategy |= invalid_inputs(schema).map(lambda v: (False, v))
            except AcceptsEverything:
                pass  # no negative examples to mix in
        elif options.mode == "positive":
            strategy = from_schema(schema)
        else:
            strategy = invalid_inputs(schema)
    except AcceptsEverything as exc:  # negative mode: nothing to try
        report.note = f"no negative examples: {exc}"
    except ValueError as exc:  # no value satisfies the schema, or it cannot be read
        report.error = f"cannot generate inputs from its input schema: {exc}"
    if report.error or report.note:
        if progress is not None:
            progress(report, True)
        return report
    untagged_positive = options.mode == "positive"
    started = time.monotonic()
    state = {"timed_out": False, "last_progress": started}
    worst_wall = -1.0
    slowest_finished = [0.0]  # the longest wall time of an example that did not time out
    shorter = [0.0]  # the deadline once an example timed out (0: none has yet)
    least_rss = [2**63]  # the smallest peak memory of this action's examples so far
    # The last finding raised per (check, outcome): while shrinking each is smaller than the
    # one before, so if max_time ends the run this is the smallest found so far. ``confirmed``:
    # the same, of those found at the full timeout.
    latest: dict[tuple[str, str], Finding] = {}
    confirmed: dict[tuple[str, str], Finding] = {}
    cut_short: set[int] = set()  # ids of the findings made at the shorter deadline

    def examine(is_positive: bool, value: Any, timeout: float) -> tuple[Outcome, Finding | None]:
        """Run one input confined and judge it: its outcome, and the finding it is (if any
        check it fails is on)."""
        outcome = _run(host, name, value, timeout)
        report.examples += 1
        verdict = judge(descriptor, outcome, is_positive)
        if verdict is None and is_positive and outcome.ok and "determinism" in options.checks:
            again = _run(host, name, value, options.timeout)
            if not again.ok or _canonical(again.value) != _canonical(outcome.value):
                verdict = ("determinism", "ok", "the same input gave a different result")
        if verdict is None or verdict[0] not in options.checks:
            return outcome, None
        check, kind, message = verdict
        return outcome, Finding(
            check, kind, message, value, outcome.usage.to_dict(),
            reproduce_command(name, value, sources, options.timeout), positive=is_positive,
        )

    store = (
        FailureStore(options.database, _store_key(sources, name, options.mode))
        if options.database is not None else None
    )
    if store is not None:
        # Saved failures first, at the full timeout. As Hypothesis does with its database, a
        # run whose saved failures still fail reports them at once: fix them (or pass
        # --database none) for a new search. One that no longer fails any check is forgotten,
        # and so is a valid input the schema now refuses (the schema changed; unless refusing
        # it was the failure); one failing a check this run leaves out is kept, unreported.
        replayed: list[Finding] = []
        for entry in store.load():
            if stop is not None and stop.is_set():
                break
            outcome, finding = examine(entry.positive, entry.input, options.timeout)
            refused = outcome.error is not None and outcome.error.type == "InputInvalid"
            if entry.positive and refused and entry.check != "positive_data_acceptance":
                store.discard(entry)
            elif finding is not None:
                replayed.append(finding)
            elif judge(descriptor, outcome, entry.positive) is None:
                store.discard(entry)
        if replayed:
            report.findings = _distinct(replayed)
            report.seconds = time.monotonic() - started
            if progress is not None:
                progress(report, True)
            return report

    def body(example: Any) -> None:
        nonlocal worst_wall
        if stop is not None and stop.is_set():
            raise _TimeUp
        is_positive, value = example if tagged else (untagged_positive, example)
        timeout = options.timeout
        # Whether this is a failure's final replay matters only with a time limit or after a
        # timeout (ask Hypothesis only then).
        if options.max_time is not None or state["timed_out"]:
            final = current_build_context().is_final
            if (
                options.max_time is not None
                and not final
                and time.monotonic() - started > options.max_time
            ):
                raise _TimeUp
            if state["timed_out"] and not final:
                if not shorter[0]:
                    shorter[0] = min(
                        options.timeout * SHRINK_DEADLINE_SHARE,
                        SHRINK_DEADLINE_SLOWEST * slowest_finished[0] or options.timeout,
                    )
                timeout = max(SHRINK_DEADLINE_FLOOR_S, min(shorter[0], options.timeout))
            # Not past --max-time by a whole timeout (an example that then hangs was run to
            # its end: --max-time 1 took 6.6 s with a 5 s timeout); one cut off by this is
            # no finding: the time was up. (A final replay runs whole: it confirms a failure.)
            left = None if options.max_time is None else (
                options.max_time - (time.monotonic() - started)
            )
            cut = left is not None and not final and left < timeout
            if cut:
                timeout = max(SHRINK_DEADLINE_FLOOR_S, left or 0.0)
        else:
            cut = False
        outcome, finding = examine(is_positive, value, timeout)
        usage = outcome.usage
        timed_out = outcome.error is not None and outcome.error.type in ("Timeout", "CpuExceeded")
        if cut and outcome.error is not None and outcome.error.type == "Timeout":
            raise _TimeUp
        if not timed_out:
            slowest_finished[0] = max(slowest_finished[0], usage.wall_s)
        elif timeout < options.timeout:
            shorter[0] = max(SHRINK_DEADLINE_FLOOR_S, timeout / 2)
        if outcome.error is None or outcome.error.type != "InputInvalid":
            if usage.max_rss_bytes:
                least_rss[0] = min(least_rss[0], usage.max_rss_bytes)
            for label, score in observations(usage, least_rss[0]).items():
                target(score, label=label)
            if usage.wall_s > worst_wall:
                worst_wall = usage.wall_s
                report.worst = {"input": value, "usage": usage.to_dict()}
        if progress is not None and time.monotonic() - state["last_progress"] > 1.0:
            state["last_progress"] = time.monotonic()
            report.seconds = time.monotonic() - started
            progress(report, False)
        if finding is None:
            return
        if finding.outcome in ("Timeout", "CpuExceeded"):
            state["timed_out"] = True
        latest[(finding.check, finding.outcome)] = finding
        if timeout >= options.timeout:
            confirmed[(finding.check, finding.outcome)] = finding
        else:
            cut_short.add(id(finding))
        raise _kind(finding.check, finding.outcome)(finding)

    base = options.settings if options.settings is not None else settings()
    phases = [p for p in base.phases if options.shrink or p is not Phase.shrink]
    given_body = given(strategy)(body)
    if options.seed is not None:
        from hypothesis import seed as with_seed

        given_body = with_seed(options.seed)(given_body)
    test = settings(
        base,
        max_examples=options.max_examples,
        deadline=None,
        # Failures are kept by ``store`` instead (host/fuzz/store.py says why).
        database=None,
        phases=phases,
        report_multiple_bugs=True,
        suppress_health_check=list(HealthCheck),
        derandomize=False,
        print_blob=False,
    )(given_body)
    found: list[Finding] = []
    try:
        test()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        # What the run raised: one failure, or (``report_multiple_bugs``) a group of them, in
        # which a failure that did not happen again on its final replay is a FlakyFailure
        # group of its own; _TimeUp where max_time or an interrupt ended it.
        failures = _failures(exc)
        if failures is None:  # something other than failures and _TimeUp
            if not isinstance(exc, HypothesisException) or isinstance(exc, BaseExceptionGroup):
                raise
            # Hypothesis could not draw from the strategy: a schema the generator did not see
            # was unsatisfiable (``propertyNames: {const: "a"}`` with ``minProperties: 2``
            # came out as InvalidArgument at draw time, and the whole command ended in its
            # traceback). The action could not be fuzzed; the findings before it still count.
            found.extend(latest.values())
            if isinstance(exc, Unsatisfiable):
                why = "no value it accepts was found (is it satisfiable?)"
            else:
                why = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"
            report.error = f"cannot generate inputs from its input schema: {why}"
        else:
            def trusted(finding: Finding) -> Finding | None:
                """A finding made only at the shorter deadline (its replay did not confirm
                it) gives way to the last one that failed at the full timeout, if any: it
                reported hangs of inputs that finish."""
                if id(finding) in cut_short:
                    return confirmed.get((finding.check, finding.outcome))
                return finding

            for one, flaky in failures:
                finding = trusted(one.finding)
                if finding is None:
                    continue
                if flaky and finding is one.finding:
                    finding = replace(finding, flaky=True, message=(
                        f"{finding.message} (flaky: it did not happen again when replayed)"
                    ))  # fmt: skip
                found.append(finding)
            if any(isinstance(leaf, _TimeUp) for leaf in _leaves(exc)):
                # The smallest of each found so far, by the same rule.
                found.extend(f for f in map(trusted, latest.values()) if f is not None)
    report.findings = _distinct(found)
    if store is not None:
        for finding in report.findings:
            store.save(finding.positive, finding.check, finding.outcome, finding.input)
    report.seconds = time.monotonic() - started
    if progress is not None:
        progress(report, True)
    return report


def _distinct(findings: list[Finding]) -> list[Finding]:
    """The first finding of each (check, outcome)."""
    seen: dict[tuple[str, str], Finding] = {}
    for finding in findings:
        seen.setdefault((finding.check, finding.outcome), finding)
    return list(seen.values())


def _store_key(sources: Sequence[str], action: str, mode: str) -> bytes:
    """Which saved failures belong to this run: the same providers, action and mode."""
    return json.dumps([list(sources), action, mode]).encode()


def _failures(exc: BaseException, flaky: bool = False) -> list[tuple[_Found, bool]] | None:
    """The failures in what a Hypothesis run raised, each with whether it was flaky (in a
    FlakyFailure: it did not happen again on its final replay); None if it holds anything
    but failures and :class:`_TimeUp`. (``ExceptionGroup.subgroup`` tests the group itself
    first, so "not a failure" matched every group: two distinct failures in one action, or a
    flaky one, ended ``sandbox fuzz`` in a traceback.)"""
    from hypothesis.errors import Flaky

    if isinstance(exc, _Found):
        return [(exc, flaky)]
    if isinstance(exc, _TimeUp):
        return []
    if not isinstance(exc, BaseExceptionGroup):
        return None
    found: list[tuple[_Found, bool]] = []
    for inner in exc.exceptions:
        part = _failures(inner, flaky or isinstance(exc, Flaky))
        if part is None:
            return None
        found.extend(part)
    return found


def _leaves(exc: BaseException | None) -> list[BaseException]:
    if exc is None:
        return []
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
