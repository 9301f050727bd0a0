"""The pytest plugin: one item per action; planted bugs fail with reproduce lines."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["pytester"]
PLANTED = os.path.join(os.path.dirname(__file__), "providers", "planted.py")


def test_fuzz_provider_items_per_action(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_planted=f"from host.fuzz.pytest_plugin import fuzz_provider\n"
        f"test_planted = fuzz_provider({PLANTED!r}, max_examples=40, timeout=1.0)\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--hypothesis-seed=1")
    result.assert_outcomes(passed=2, failed=5)
    text = result.stdout.str()
    for name in ("crash", "fails", "bad_output", "hang", "blowup"):
        assert f"sandbox call planted.{name} " in text
