"""``sandbox fuzz``: the subcommand's arguments and its run (``host.cli`` only registers it).

Exit codes as the rest of the CLI: 0 no finding, 1 at least one finding, 2 a usage or
configuration error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from host.argtypes import seconds
from host.fuzz.checks import CHECKS, MODES, OPT_IN
from host.terminal import plural

if TYPE_CHECKING:
    from host.fuzz.runner import ActionReport, FuzzOptions


def add_parser(commands: Any, add_sources: Any) -> None:
    """Register ``fuzz`` on the CLI's subparsers (``add_sources`` adds --provider/--config)."""
    fuzz = commands.add_parser(
        "fuzz",
        help="fuzz every action with inputs derived from its schema",
        description="Property-based fuzzing: Hypothesis generates inputs from each action's "
        "input schema and every example runs confined under the provider's policy. Each "
        "distinct failure is shrunk and printed with a 'sandbox call' line that reproduces it. "
        "Exit code 0 no failure, 1 at least one, 2 a usage or configuration error.",
    )
    fuzz.add_argument("actions", nargs="*", metavar="ACTION", help="only these actions")
    add_sources(fuzz)
    fuzz.add_argument(
        "--max-examples", type=int, default=100, metavar="N",
        help="inputs to try per action (100)",
    )
    fuzz.add_argument(
        "--seed", type=int, metavar="N",
        help="Hypothesis's seed (default: a random one, printed, so any run can be repeated)",
    )
    fuzz.add_argument(
        "--timeout", type=seconds, default=5.0, metavar="S",
        help="wall-time cap per example (5; lowered while a hang is shrunk)",
    )
    fuzz.add_argument(
        "--max-time", type=seconds, metavar="S", help="stop each action after S s (or 2m)"
    )
    fuzz.add_argument("--checks", metavar="NAME,...", help=f"only these of {', '.join(CHECKS)}")
    fuzz.add_argument(
        "--exclude-checks", metavar="NAME,...", help="skip these checks"
    )
    fuzz.add_argument(
        "--mode", choices=MODES, default="positive",
        help="inputs that fit the schema (positive, the default), inputs that break it "
        "(negative, each should be refused), or both (all)",
    )
    fuzz.add_argument(
        "--database", metavar="PATH|none", default=".sandbox/fuzz-examples",
        help="where each failure's input is kept, as JSON, and tried first next time; a "
        "run whose kept failures still fail reports them without a new search "
        "(.sandbox/fuzz-examples; none: keep nothing)",
    )
    fuzz.add_argument(
        "--workers", type=int, default=1, metavar="N", help="actions fuzzed in parallel (1)"
    )
    fuzz.add_argument(
        "--no-shrink", action="store_true",
        help="report each failure as found, without shrinking it to a smaller input",
    )
    fuzz.add_argument("--report", metavar="junit=PATH", help="also write a JUnit XML report")
    fuzz.add_argument("--json", action="store_true", help="print exactly one JSON object")


def _names(text: str, flag: str, usage_error: type[Exception]) -> set[str]:
    names = {n.strip() for n in text.split(",") if n.strip()}
    if not names:  # (``--checks=`` ran every check, as if it had not been given)
        raise usage_error(f"{flag}: expected check names, got {text!r}; known: "
                          + ", ".join(CHECKS))
    unknown = names - set(CHECKS)
    if unknown:
        raise usage_error(
            f"{flag}: unknown check {sorted(unknown)[0]!r}; known: {', '.join(CHECKS)}"
        )
    return names


#: The most --max-examples may ask for (at a thousand a second, eleven days of fuzzing);
#: Hypothesis fails on numbers it cannot turn into a float.
MAX_EXAMPLES = 10**9


def _check_report(report: str, usage_error: type[Exception]) -> None:
    """``junit=PATH`` naming a file that can be written, as far as can be told before the
    run (a later failure to write it is reported too, without a traceback)."""
    kind, _, path = report.partition("=")
    if kind != "junit" or not path:
        raise usage_error("--report: expected junit=PATH")
    if os.path.isdir(path):
        raise usage_error(f"--report {report}: {path} is a directory")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise usage_error(f"--report {report}: no directory {folder}")
    # Written only after the run: find out now whether it can be (/proc, a read-only place).
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        raise usage_error(f"--report {report}: cannot write it: {exc.strerror or exc}") from None
    if not existed:
        os.unlink(path)


def check_database(database: str, usage_error: type[Exception]) -> None:
    """A directory Hypothesis can write to (made now if missing), or an error now: a file, or
    a place where nothing can be saved, used to be accepted and then silently saved nothing."""
    if not database:
        raise usage_error("--database: expected a directory, or none for no database")
    if os.path.exists(database) and not os.path.isdir(database):
        raise usage_error(f"--database {database}: not a directory")
    try:
        os.makedirs(database, exist_ok=True)
        with tempfile.TemporaryFile(dir=database):
            pass
    except OSError as exc:
        raise usage_error(
            f"--database {database}: cannot save examples there: {exc.strerror or exc}"
        ) from None


def options_from(args: argparse.Namespace, usage_error: type[Exception]) -> FuzzOptions:
    """Check the flags (a bad one is ``usage_error``, exit 2) and make the options."""
    from host.fuzz.runner import FuzzOptions

    if not 1 <= args.max_examples <= MAX_EXAMPLES:
        raise usage_error(f"--max-examples must be between 1 and {MAX_EXAMPLES}")
    if not args.timeout > 0:
        raise usage_error("--timeout must be a positive number of seconds")
    if args.max_time is not None and not args.max_time > 0:
        raise usage_error("--max-time must be a positive number of seconds")
    if args.workers < 1:
        raise usage_error("--workers must be at least 1")
    if args.report is not None:
        _check_report(args.report, usage_error)
    if args.database != "none":
        check_database(args.database, usage_error)
    checks = set(CHECKS) - OPT_IN
    if args.checks is not None:
        checks = _names(args.checks, "--checks", usage_error)
    if args.exclude_checks is not None:
        checks -= _names(args.exclude_checks, "--exclude-checks", usage_error)
    if not checks:  # (a run that can find nothing would pass whatever the actions do)
        raise usage_error("no check is left on (--checks, --exclude-checks); known: "
                          + ", ".join(CHECKS))
    # A negative example can only fail negative_data_rejection; a positive one never does.
    if args.mode == "positive" and checks == {"negative_data_rejection"}:
        raise usage_error("negative_data_rejection is the only check left, and it judges only "
                          "schema-invalid inputs: add --mode negative (or all)")
    if args.mode == "negative" and "negative_data_rejection" not in checks:
        raise usage_error("--mode negative tries only schema-invalid inputs, which only "
                          "negative_data_rejection judges, and it is not on")
    return FuzzOptions(
        max_examples=args.max_examples,
        seed=args.seed if args.seed is not None else secrets.randbelow(2**32),
        timeout=args.timeout,
        max_time=args.max_time,
        checks=frozenset(checks),
        mode=args.mode,
        database=None if args.database == "none" else args.database,
        shrink=not args.no_shrink,
    )


def sources_of(args: argparse.Namespace, builtin: tuple[str, ...]) -> list[str]:
    """The ``sandbox call`` arguments that load the same providers."""
    out: list[str] = []
    if args.config:
        out += ["--config", args.config]
    for ref in args.provider or ([] if args.config else list(builtin)):
        out += ["--provider", ref]
    return out


def _progress(report: ActionReport, done: bool) -> None:
    rate = report.examples / report.seconds if report.seconds else 0.0
    end = "\n" if done or not sys.stderr.isatty() else "\r"
    if done or sys.stderr.isatty():
        sys.stderr.write(
            f"{report.action}: {plural(report.examples, 'example')}, "
            f"{plural(len(report.findings), 'failure')}, "
            f"{rate:.1f} examples/s{end}"
        )
        sys.stderr.flush()


def run(
    args: argparse.Namespace, open_host: Any, usage_error: type[Exception],
    builtin: tuple[str, ...], printable: Any,
) -> int:
    """The command: 0 no finding, 1 findings."""

    options = options_from(args, usage_error)
    with _hypothesis_home(options.database):
        return _run(args, options, open_host, usage_error, builtin, printable)


#: Where Hypothesis keeps its own caches (unicode tables, constants) beside the failure store.
HYPOTHESIS_HOME = ".sandbox/hypothesis"


@contextlib.contextmanager
def _hypothesis_home(database: str | None) -> Iterator[None]:
    """Hypothesis's caches go to ``.sandbox/hypothesis`` (it made ``.hypothesis/`` in the
    working directory, which the README did not say), or, with ``--database none``, to a
    temporary directory removed at the end: nothing is kept. ``HYPOTHESIS_STORAGE_DIRECTORY``
    still wins."""
    from hypothesis.configuration import set_hypothesis_home_dir

    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        yield
        return
    with contextlib.ExitStack() as stack:
        home = HYPOTHESIS_HOME
        if database is None:
            home = stack.enter_context(tempfile.TemporaryDirectory(prefix="sandbox-fuzz-"))
        set_hypothesis_home_dir(home)
        try:
            yield
        finally:
            set_hypothesis_home_dir(None)


def _run(
    args: argparse.Namespace, options: Any, open_host: Any, usage_error: type[Exception],
    builtin: tuple[str, ...], printable: Any,
) -> int:
    from host.fuzz.runner import fuzz_action

    host = open_host(args)
    try:
        known = {d.full_name: d for d in host.catalog.find_all()}
        for name in args.actions:
            if name not in known:
                raise usage_error(f"unknown action {name!r}; known actions: {', '.join(known)}")
        chosen = [known[n] for n in (args.actions or known)]
        sources = sources_of(args, builtin)
        started = time.monotonic()
        quiet = None if args.json else _progress
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=args.workers)

        def fuzz_one(descriptor: Any) -> ActionReport:
            try:
                return fuzz_action(host, descriptor, options, sources, quiet, stop)
            except Exception as exc:  # (a bug of ours or Hypothesis's: that action's error)
                from host.fuzz.runner import ActionReport

                report = ActionReport(descriptor.full_name)
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                report.error = f"the fuzzer failed on this action: {type(exc).__name__}: {first}"
                return report

        try:
            reports = list(pool.map(fuzz_one, chosen))
        except BaseException:  # interrupted: each action stops at its next example and its
            stop.set()  # call in flight ends with the host's workers, so the join is quick
            host.close(timeout=0)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
        elapsed = time.monotonic() - started
    except BaseException:
        host.close(timeout=0)
        raise
    finally:
        host.close()
    ok = not any(r.findings or r.error for r in reports)
    data = {"ok": ok, "seed": options.seed, "actions": [r.to_dict() for r in reports]}
    if args.report:
        from host.fuzz.junit import write_junit

        path = args.report.partition("=")[2]
        try:
            write_junit(path, reports)
        except OSError as exc:  # (what the check before the run could not see: /dev/full)
            raise usage_error(f"--report {args.report}: cannot write {path}: "
                              f"{exc.strerror or exc}") from None
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        _summary(reports, elapsed, printable, options.seed)
    return 0 if ok else 1


def _summary(
    reports: list[ActionReport], elapsed: float, printable: Any, seed: int | None
) -> None:
    width = max((len(r.action) for r in reports), default=6)
    print(f"{'action':<{width}}  examples  failures  examples/s  worst wall")
    for r in reports:
        rate = r.examples / r.seconds if r.seconds else 0.0
        worst = f"{r.worst['usage']['wall_s']:.3f} s" if r.worst else "-"
        print(f"{r.action:<{width}}  {r.examples:>8}  {len(r.findings):>8}  {rate:>10.1f}  {worst}")
    total = sum(len(r.findings) for r in reports)
    print(f"{total} distinct failure(s) in {elapsed:.1f} s (seed {seed})")
    for r in reports:
        if r.error or r.note:
            print()
            print(printable(f"{r.action}: {r.error or r.note}"))
        for f in r.findings:
            print()
            print(printable(f"{r.action}: {f.check} ({f.outcome}): {f.message}"))
            print(printable(f"  Input: {json.dumps(f.input, ensure_ascii=False)}"))
            print(printable(f"  Reproduce with: {f.reproduce}"))
