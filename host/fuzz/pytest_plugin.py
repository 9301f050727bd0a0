"""pytest plugin (entry point ``pytest11``): ``test_x = fuzz_provider("my_provider.py")`` gives
one item per action (id ``ns.name``), each fuzzed confined with the active Hypothesis profile
(``--hypothesis-seed`` and profiles apply: the runner builds on ``settings()``); a failing item
lists each distinct finding with its reproduce line. Cheap to import: pytest loads it always."""

from __future__ import annotations

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
    ``max_examples``, ``timeout``, ``mode``, ``checks``...)."""
    return FuzzSuite(ref, options)


class FuzzFailure(Exception):
    """An action's findings, one per distinct failure."""


class FuzzItem(pytest.Item):
    def __init__(self, *, suite: FuzzSuite, action: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite, self.action = suite, action

    def runtest(self) -> None:
        from hypothesis import settings

        from host import Host
        from host.fuzz.runner import FuzzOptions, fuzz_action

        options = FuzzOptions(settings=settings(), database=None, **self.suite.options)
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
                lines += [f"- {f.check} ({f.outcome}): {f.message}", f"  Input: {f.input}",
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
        return FuzzCollector.from_parent(collector, name=name, suite=obj)
    return None
