"""pytest plugin (entry point ``pytest11``): ``test_x = fuzz_provider("my_provider.py")`` gives
one item per action (id ``ns.name``), each fuzzed confined with the active Hypothesis profile
(``--hypothesis-seed`` and profiles apply: the runner builds on ``settings()``); a failing item
lists each distinct finding with its reproduce line. Cheap to import: pytest loads it always."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class FuzzSuite:
    """What ``fuzz_provider`` returns; collected by :func:`pytest_pycollect_makeitem`."""

    ref: str
    options: dict[str, Any] = field(default_factory=dict)


def fuzz_provider(ref: str, **options: Any) -> FuzzSuite:
    """A test suite fuzzing every action of the provider ``ref`` (``FuzzOptions`` keywords:
    ``max_examples``, ``timeout``, ``mode``, ``checks`` (names, or one comma-separated
    string), ``database``...; without ``max_examples``, the active Hypothesis profile's). A
    relative file ``ref`` is found beside the test file. Options are checked here, at
    collection: a misspelt check name ran no check and passed whatever the action did."""
    import dataclasses

    from host.fuzz.checks import CHECKS, MODES
    from host.fuzz.runner import FuzzOptions

    known = sorted(f.name for f in dataclasses.fields(FuzzOptions) if f.name != "settings")
    for name in options:
        if name not in known:
            raise TypeError(f"fuzz_provider: unknown option {name!r}; known: {', '.join(known)}")
    checks = options.get("checks")
    if checks is not None:
        names = checks.split(",") if isinstance(checks, str) else list(checks)
        names = [str(n).strip() for n in names if str(n).strip()]
        for check in names:
            if check not in CHECKS:
                raise ValueError(
                    f"fuzz_provider: unknown check {check!r}; known: {', '.join(CHECKS)}"
                )
        if not names:
            raise ValueError("fuzz_provider: checks names no check")
        options["checks"] = frozenset(names)
    if "mode" in options and options["mode"] not in MODES:
        raise ValueError(f"fuzz_provider: mode must be one of {', '.join(MODES)}")
    _check_values(options)
    return FuzzSuite(ref, options)


def _check_values(options: dict[str, Any]) -> None:
    """The CLI's checks of its flags, for the keywords: a bad value failed every item of the
    suite at run time, with Hypothesis's or the host's traceback (``max_examples=0``,
    ``timeout=-1``, ``timeout="2"``), and a database that cannot be used only once something
    was found."""
    from host.fuzz.cli import MAX_EXAMPLES, check_database

    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def seconds(value: Any) -> bool:
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool)
            and 0 < value < float("inf")
        )

    bad: str | None = None
    if "max_examples" in options and not (
        whole(options["max_examples"]) and 1 <= options["max_examples"] <= MAX_EXAMPLES
    ):
        bad = f"max_examples must be an integer between 1 and {MAX_EXAMPLES}"
    elif "timeout" in options and not seconds(options["timeout"]):
        bad = "timeout must be a positive number of seconds"
    elif options.get("max_time") is not None and not seconds(options["max_time"]):
        bad = "max_time must be a positive number of seconds, or None"
    elif options.get("seed") is not None and not whole(options["seed"]):
        bad = "seed must be an integer, or None"
    elif "shrink" in options and not isinstance(options["shrink"], bool):
        bad = "shrink must be True or False"
    elif options.get("database") is not None and not isinstance(options["database"], str):
        bad = "database must be a directory's path, or None"
    if bad is not None:
        name = bad.split()[0]
        raise ValueError(f"fuzz_provider: {bad}, got {options[name]!r}")
    if options.get("database") is not None:
        check_database(options["database"], _PluginUsageError)


class _PluginUsageError(ValueError):
    """A bad ``fuzz_provider`` keyword (what the CLI calls a usage error)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"fuzz_provider: {message.replace('--database', 'database', 1)}")


def run_options(suite: FuzzSuite) -> Any:
    """The ``FuzzOptions`` of a suite's run: its own, over the active Hypothesis profile's
    (``max_examples`` included: it was always 100) and no example database (pytest runs
    again anyway)."""
    from hypothesis import settings

    from host.fuzz.runner import FuzzOptions

    base = settings()  # the active profile, with --hypothesis-seed and the like
    return FuzzOptions(**{
        "settings": base, "database": None, "max_examples": base.max_examples,
        **suite.options,
    })  # fmt: skip


class FuzzFailure(Exception):
    """An action's findings, one per distinct failure."""


class FuzzItem(pytest.Item):
    def __init__(self, *, suite: FuzzSuite, action: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite, self.action = suite, action

    def runtest(self) -> None:
        from host import Host
        from host.fuzz.runner import fuzz_action

        options = run_options(self.suite)
        with Host() as host:
            host.add_provider(self.suite.ref)
            descriptor = host.catalog.find(self.action)
            assert descriptor is not None
            report = fuzz_action(host, descriptor, options, ["--provider", self.suite.ref])
        if report.error:
            raise FuzzFailure(f"{self.action}: {report.error}")
        if report.note:
            pytest.skip(f"{self.action}: {report.note}")
        if report.findings:
            lines = [f"{len(report.findings)} distinct failure(s) in {self.action}:"]
            for f in report.findings:
                lines += [f"- {f.check} ({f.outcome}): {f.message}",
                          f"  Input: {json.dumps(f.input, ensure_ascii=False)}",
                          f"  Reproduce with: {f.reproduce}"]
            raise FuzzFailure("\n".join(lines))

    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        if isinstance(excinfo.value, FuzzFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, self.action


class FuzzCollector(pytest.Collector):
    def __init__(self, *, suite: FuzzSuite, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite = suite

    def collect(self) -> Iterator[pytest.Item]:
        from host import Host

        with Host() as host:
            host.add_provider(self.suite.ref)
            names = [d.full_name for d in host.catalog.find_all()]
        for name in names:
            yield FuzzItem.from_parent(self, name=name, suite=self.suite, action=name)


def pytest_pycollect_makeitem(collector: Any, name: str, obj: object) -> Any:
    if isinstance(obj, FuzzSuite):
        return FuzzCollector.from_parent(collector, name=name, suite=_beside(collector, obj))
    return None


def _beside(collector: Any, suite: FuzzSuite) -> FuzzSuite:
    """``suite`` with a relative provider file found beside the test file (it was looked for
    in the directory pytest ran from)."""
    import os

    ref = suite.ref
    if ref.endswith(".py") and not os.path.isabs(ref):
        here = os.path.join(os.path.dirname(str(collector.path)), ref)
        if os.path.exists(here):
            return FuzzSuite(here, suite.options)
    return suite
