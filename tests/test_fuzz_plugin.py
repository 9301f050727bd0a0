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
    # Inputs as JSON, as the CLI prints them (they were Python reprs: {'n': 3}).
    assert "  Input: {\"" in text and "  Input: {'" not in text, text


def test_fuzz_provider_checks_its_options_and_follows_the_profile(
    pytester: pytest.Pytester,
) -> None:
    """A misspelt check name ran no check at all, and the action that always fails passed;
    ``database=`` was a TypeError (given twice); the active profile's ``max_examples`` was
    ignored for 100; a relative provider file was looked for where pytest ran, not beside the
    test file. The first two are errors at collection now, the others work."""
    import shutil

    source = os.path.join(os.path.dirname(__file__), "providers", "multibug.py")
    tests = pytester.mkdir("suite")
    shutil.copy(source, tests / "multibug.py")
    (tests / "test_typo.py").write_text(
        "from host.fuzz.pytest_plugin import fuzz_provider\n"
        "test_m = fuzz_provider('multibug.py', checks=['no_action_failures'])\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", str(tests / "test_typo.py"))
    assert result.ret != 0
    assert "unknown check 'no_action_failures'" in result.stdout.str()
    (tests / "test_beside.py").write_text(
        "from host.fuzz.pytest_plugin import fuzz_provider\n"
        "test_m = fuzz_provider('multibug.py', database=None, max_examples=20)\n"
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", str(tests / "test_beside.py"), "-k", "optional or two",
        "-v", "--hypothesis-seed=1",
    )
    text = result.stdout.str()
    assert "multibug::optional PASSED" in text, text
    assert "multibug::two FAILED" in text, text
    # The active profile's max_examples, unless the suite gives its own.
    from hypothesis import settings

    from host.fuzz.pytest_plugin import fuzz_provider, run_options

    settings.register_profile("sandbox-test-few", max_examples=3)
    before = settings._current_profile
    settings.load_profile("sandbox-test-few")
    try:
        assert run_options(fuzz_provider("x.py")).max_examples == 3
        assert run_options(fuzz_provider("x.py", max_examples=7)).max_examples == 7
    finally:
        settings.load_profile(before)


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"max_examples": 0}, "max_examples must be an integer between 1"),
        ({"max_examples": 2.5}, "max_examples must be an integer"),
        ({"timeout": -1}, "timeout must be a positive number of seconds, got -1"),
        ({"timeout": "2"}, "timeout must be a positive number of seconds, got '2'"),
        ({"timeout": True}, "timeout must be a positive number"),
        ({"max_time": 0}, "max_time must be a positive number"),
        ({"seed": "1"}, "seed must be an integer"),
        ({"shrink": "no"}, "shrink must be True or False"),
        ({"database": 3}, "database must be a directory's path"),
        ({"database": "/proc/sandbox-nope"}, "database /proc/sandbox-nope: cannot save"),
    ],
)
def test_fuzz_provider_refuses_bad_values_where_the_suite_is_declared(
    options: dict[str, object], complaint: str
) -> None:
    """Each failed every item at run time, in Hypothesis's or the host's traceback (or, for
    the database, only once something was found)."""
    from host.fuzz.pytest_plugin import fuzz_provider

    with pytest.raises(ValueError, match="fuzz_provider: ") as caught:
        fuzz_provider("x.py", **options)
    assert complaint in str(caught.value)


def test_fuzz_provider_takes_good_values() -> None:
    from host.fuzz.pytest_plugin import fuzz_provider

    suite = fuzz_provider("x.py", max_examples=5, timeout=2, max_time=None, seed=3,
                          shrink=False, database=None)
    assert suite.options["timeout"] == 2 and suite.options["shrink"] is False
