"""Tests for the provider SDK (`providers/`): schema derivation, registration, loading, examples.

Hostile resource bombs are never executed here; only their harmless actions are called.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import (  # noqa: UP035 - the legacy aliases are under test
    Any,
    List,
    Literal,
    NotRequired,
    Optional,
    Required,
    TypedDict,
    Union,
)

import pytest

from providers import Action, Provider, ProviderError, ProviderLoadError, load_provider
from providers.schemas import annotation_schema

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def input_schema(
    properties: dict[str, Any], required: list[str], additional: Any = False
) -> dict[str, Any]:
    return {
        "$schema": DIALECT,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": additional,
    }


# --------------------------------------------------------------------------- schema derivation


class Point(TypedDict):
    x: int
    y: float


class Partial(TypedDict, total=False):
    a: str
    b: Required[int]


class Mixed(TypedDict):
    name: str
    tags: NotRequired[list[str]]
    where: Point


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (None, {"type": "null"}),
        (type(None), {"type": "null"}),
        (Any, {}),
        (object, {}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (List[str], {"type": "array", "items": {"type": "string"}}),  # noqa: UP006
        (Sequence[bool], {"type": "array", "items": {"type": "boolean"}}),
        (list, {"type": "array"}),
        (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
        (
            tuple[int, str],
            {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "items": False,
                "minItems": 2,
            },
        ),
        (dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
        (dict, {"type": "object"}),
        (Optional[int], {"anyOf": [{"type": "integer"}, {"type": "null"}]}),  # noqa: UP045
        (str | None, {"anyOf": [{"type": "string"}, {"type": "null"}]}),
        (
            Union[int, str, list[int]],  # noqa: UP007
            {
                "anyOf": [
                    {"type": "integer"},
                    {"type": "string"},
                    {"type": "array", "items": {"type": "integer"}},
                ]
            },
        ),
        (Literal["a", "b", 3], {"enum": ["a", "b", 3]}),
        (Literal["only"], {"const": "only"}),
        (
            Point,
            {
                "type": "object",
                "properties": {"x": {"type": "integer"}, "y": {"type": "number"}},
                "required": ["x", "y"],
                "additionalProperties": False,
            },
        ),
        (
            Partial,
            {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
                "required": ["b"],
                "additionalProperties": False,
            },
        ),
        (
            Mixed,
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "where": {
                        "type": "object",
                        "properties": {"x": {"type": "integer"}, "y": {"type": "number"}},
                        "required": ["x", "y"],
                        "additionalProperties": False,
                    },
                },
                "required": ["name", "where"],
                "additionalProperties": False,
            },
        ),
    ],
)
def test_annotation_schema(annotation: object, expected: dict[str, Any]) -> None:
    assert annotation_schema(annotation) == expected


@pytest.mark.parametrize(
    "annotation", [bytes, Point.__class__, Callable[[int], int], dict[int, str], complex]
)
def test_annotation_schema_rejects_non_json_types(annotation: object) -> None:
    with pytest.raises(ProviderError, match="unsupported annotation"):
        annotation_schema(annotation)


def test_input_schema_required_defaults_and_kwargs() -> None:
    p = Provider("demo")

    @p.action
    def act(
        a: str,
        b: int = 3,
        *,
        c: list[float],
        d: tuple[int, ...] = (1, 2),
        e: object = object(),  # not JSON-serialisable: no "default"
        **extra: int,
    ) -> dict[str, int]:
        return {}

    action = p.actions["act"]
    assert action.input_schema == input_schema(
        {
            "a": {"type": "string"},
            "b": {"type": "integer", "default": 3},
            "c": {"type": "array", "items": {"type": "number"}},
            "d": {"type": "array", "items": {"type": "integer"}, "default": [1, 2]},
            "e": {},
        },
        ["a", "c"],
        additional={"type": "integer"},
    )
    assert action.output_schema == {
        "type": "object",
        "additionalProperties": {"type": "integer"},
    }


def test_missing_return_annotation_means_anything_and_none_means_null() -> None:
    p = Provider("demo")

    @p.action
    def anything(x: int):  # type: ignore[no-untyped-def]
        return x

    @p.action
    def nothing() -> None:
        return None

    assert p.actions["anything"].output_schema == {}
    assert p.actions["nothing"].output_schema == {"type": "null"}
    assert p.actions["nothing"].input_schema == input_schema({}, [])


def test_future_annotations_in_a_loaded_file(tmp_path: Path) -> None:
    source = textwrap.dedent(
        """
        from __future__ import annotations
        from typing import NotRequired, TypedDict
        from providers import Provider

        class Out(TypedDict):
            total: int
            note: NotRequired[str | None]

        provider = Provider("fut")

        @provider.action
        def add(a: int, b: int | None = None) -> Out:
            return {"total": a + (b or 0)}
        """
    )
    path = tmp_path / "fut.py"
    path.write_text(source)
    action = load_provider(str(path)).actions["add"]
    assert action.input_schema == input_schema(
        {
            "a": {"type": "integer"},
            "b": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
        },
        ["a"],
    )
    assert action.output_schema == {
        "type": "object",
        "properties": {
            "total": {"type": "integer"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["total"],
        "additionalProperties": False,
    }


@pytest.mark.parametrize(
    ("define", "param"),
    [
        ("def f(data: bytes) -> int: ...", "data"),
        ("def f(cb: Callable[[], int]) -> int: ...", "cb"),
        ("def f(thing: Thing) -> int: ...", "thing"),
        ("def f(x) -> int: ...", "x"),
        ("def f(*args: int) -> int: ...", "*args"),
        ("def f(x: int, /) -> int: ...", "x"),
        ("def f(**kw) -> int: ...", "**kw"),
    ],
)
def test_unsupported_parameter_names_action_and_parameter(define: str, param: str) -> None:
    class Thing:
        pass

    namespace: dict[str, Any] = {"Callable": Callable, "Thing": Thing}
    exec(define, namespace)
    p = Provider("demo")
    with pytest.raises(ProviderError) as info:
        p.action(namespace["f"])
    message = str(info.value)
    assert "'demo.f'" in message
    assert repr(param) in message
    assert "input=" in message
    assert p.actions == {}


def test_unsupported_return_annotation_names_action() -> None:
    p = Provider("demo")
    with pytest.raises(ProviderError, match=r"'demo\.g'.*return.*output="):

        @p.action
        def g() -> bytes:
            return b""


# ------------------------------------------------------------------------------- registration


def test_bare_decorator_returns_function_and_registers() -> None:
    p = Provider("text", version="1.0")

    def word_count(text: str) -> int:
        """Count whitespace-separated words.

        Second paragraph is not part of the description.
        """
        return len(text.split())

    assert p.action(word_count) is word_count
    assert word_count("a b c") == 3
    action = p.actions["word_count"]
    assert isinstance(action, Action)
    assert action.full_name == "text.word_count"
    assert action.description == "Count whitespace-separated words."
    assert action.safe_rerun is False
    assert action.function is word_count


def test_called_decorator_options_and_namespace() -> None:
    p = Provider("text", version="2", description="d", namespace="txt")

    @p.action(name="shout", description="Explicit.", safe_rerun=True)
    def upper(text: str) -> str:
        """Docstring loses to explicit description."""
        return text.upper()

    assert upper("x") == "X"
    assert list(p.actions) == ["shout"]
    described = p.describe()
    assert described == {
        "name": "text",
        "version": "2",
        "namespace": "txt",
        "description": "d",
        "actions": [
            {
                "name": "shout",
                "namespace": "txt",
                "full_name": "txt.shout",
                "description": "Explicit.",
                "input_schema": input_schema({"text": {"type": "string"}}, ["text"]),
                "output_schema": {"type": "string"},
                "safe_rerun": True,
            }
        ],
    }
    json.dumps(described)


def test_explicit_schema_wins_and_is_copied() -> None:
    p = Provider("demo")
    schema_in: dict[str, Any] = {
        "type": "object",
        "properties": {"blob": {"type": "string", "contentEncoding": "base64"}},
        "required": ["blob"],
    }
    schema_out: dict[str, Any] = {"type": "integer", "minimum": 0}

    @p.action(input=schema_in, output=schema_out)
    def size(blob: bytes) -> bytes:  # annotations would be rejected if derived
        return blob

    action = p.actions["size"]
    assert action.input_schema == schema_in
    assert action.output_schema == schema_out
    assert action.input_schema is not schema_in
    schema_in["properties"]["blob"]["type"] = "integer"
    assert action.input_schema["properties"]["blob"]["type"] == "string"


def test_explicit_schema_for_one_side_only() -> None:
    p = Provider("demo")

    @p.action(output={"type": "string", "maxLength": 3})
    def f(n: int) -> str:
        return "x" * n

    assert p.actions["f"].input_schema == input_schema({"n": {"type": "integer"}}, ["n"])
    assert p.actions["f"].output_schema == {"type": "string", "maxLength": 3}


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"output": {"type": "nonsense"}}, r"'demo\.f'.*invalid output schema.*nonsense"),
        ({"input": {"type": "object", "required": "x"}}, r"'demo\.f'.*invalid input schema"),
        ({"input": {"type": "string"}}, r"'demo\.f'.*input schema.*\"type\": \"object\""),
        ({"input": {}}, r"'demo\.f'.*input schema.*object"),
        ({"input": True}, r"'demo\.f'.*invalid input schema: expected a dict"),
        ({"output": {"enum": {1, 2}}}, r"'demo\.f'.*invalid output schema: not JSON"),
    ],
)
def test_bad_schema_names_action(kwargs: dict[str, Any], pattern: str) -> None:
    def f(x: int = 0) -> int:
        return x

    p = Provider("demo")
    with pytest.raises(ProviderError, match=pattern) as info:
        p.action(**kwargs)(f)
    assert "\n" not in str(info.value)
    assert p.actions == {}


def test_duplicate_action_name() -> None:
    p = Provider("demo")

    @p.action
    def f() -> int:
        return 1

    with pytest.raises(ProviderError, match=r"'demo\.f' is already registered"):
        p.action(name="f")(lambda: 2)
    assert p.actions["f"].function is f


@pytest.mark.parametrize("bad", ["", "1abc", "has-dash", "dotted.name", "spa ce", "é"])
def test_invalid_names(bad: str) -> None:
    with pytest.raises(ProviderError, match="invalid provider name"):
        Provider(bad)
    with pytest.raises(ProviderError, match="invalid namespace name"):
        Provider("ok", namespace=bad)
    with pytest.raises(ProviderError, match="invalid action name"):
        Provider("ok").action(name=bad)(lambda: None)


def test_async_action_rejected() -> None:
    async def coro() -> int:
        return 1

    with pytest.raises(ProviderError, match="async"):
        Provider("demo").action(coro)


def test_generator_action_rejected() -> None:
    """A generator function registered, and every call ended OutputInvalid: its result, a
    generator, is no JSON value. Refused where the author made the mistake instead."""

    def numbers(n: int) -> Iterator[int]:
        yield from range(n)

    with pytest.raises(ProviderError, match="generator functions are not supported"):
        Provider("demo").action(numbers)


def test_importing_providers_does_not_import_jsonschema() -> None:
    code = "import sys, providers; print('jsonschema' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------ loading

GOOD_SOURCE = textwrap.dedent(
    """
    from providers import Provider

    provider = Provider("filed", version="3")
    other = Provider("other")

    @provider.action
    def ping() -> str:
        return "pong"
    """
)


def test_load_by_module_and_module_attr() -> None:
    import providers.examples.text as text_module

    loaded = load_provider("providers.examples.text")
    assert loaded is text_module.provider
    assert load_provider("providers.examples.text:provider") is text_module.provider
    assert load_provider("providers.examples.hostile").name == "hostile"


def test_load_attribute_default() -> None:
    with pytest.raises(ProviderLoadError, match="no attribute 'nope'"):
        load_provider("providers.examples.text", attribute_default="nope")


def test_load_by_file_path_and_file_attr(tmp_path: Path) -> None:
    path = tmp_path / "my-provider.py"
    path.write_text(GOOD_SOURCE)
    loaded = load_provider(str(path))
    assert loaded.name == "filed"
    assert loaded.actions["ping"].function() == "pong"
    module_name = loaded.actions["ping"].function.__module__
    assert re.fullmatch(r"_sandbox_provider_my_provider_[0-9a-f]{12}", module_name)
    assert module_name in sys.modules
    assert load_provider(f"{path}:other").name == "other"


def test_missing_file(tmp_path: Path) -> None:
    ref = str(tmp_path / "absent.py")
    with pytest.raises(ProviderLoadError, match="no such file") as info:
        load_provider(ref)
    assert repr(ref) in str(info.value)


def test_missing_module() -> None:
    with pytest.raises(ProviderLoadError, match="no module named 'no_such_pkg_xyz'"):
        load_provider("no_such_pkg_xyz.mod")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("x = 1 / 0", "ZeroDivisionError: division by zero"),
        ("def broken(:\n    pass", "SyntaxError: "),
        ("raise SystemExit(4)", "SystemExit: 4"),
        ("class Weird(BaseException): pass\nraise Weird('odd')", "Weird: odd"),
        ("import no_such_dependency_xyz", "ModuleNotFoundError: No module named"),
        (
            "from providers import Provider\np = Provider('x')\n"
            "@p.action\ndef f(b: bytes) -> int: return 0",
            "ProviderError: action 'x.f': parameter 'b'",
        ),
    ],
)
def test_import_that_raises(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "bad.py"
    path.write_text(body + "\n")
    with pytest.raises(ProviderLoadError) as info:
        load_provider(str(path))
    message = str(info.value)
    assert message.startswith(f"cannot load provider {str(path)!r}: ")
    assert expected in message
    assert info.value.__cause__ is not None
    assert "Traceback (most recent call last)" in info.value.traceback_text
    assert not any(name.startswith("_sandbox_provider_bad_") for name in sys.modules)


def test_import_error_exact_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.py").write_text("x = 1 / 0\n")
    with pytest.raises(ProviderLoadError) as info:
        load_provider("bad.py")
    assert str(info.value) == "cannot load provider 'bad.py': ZeroDivisionError: division by zero"
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_keyboard_interrupt_propagates(tmp_path: Path) -> None:
    path = tmp_path / "kbd.py"
    path.write_text("raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        load_provider(str(path))


def test_attribute_not_a_provider(tmp_path: Path) -> None:
    path = tmp_path / "notprov.py"
    path.write_text("provider = 42\n")
    with pytest.raises(ProviderLoadError, match=r"'provider' is a int, not a providers\.Provider"):
        load_provider(str(path))
    with pytest.raises(ProviderLoadError, match=r"not a providers\.Provider"):
        load_provider("providers.examples.text:TextStats")


@pytest.mark.parametrize("ref", ["", "   ", "mod:", "mod:1bad", "mod:a-b", ":attr", "a/b", "a..b"])
def test_malformed_reference(ref: str) -> None:
    with pytest.raises(ProviderLoadError):
        load_provider(ref)


# -------------------------------------------------------------------------- example providers


def test_text_examples_as_plain_functions() -> None:
    from providers.examples import text

    assert text.word_count("  one two\tthree\n") == 3
    assert text.upper("abc") == "ABC"
    assert text.regex_search(r"(a)b", "ab AB aB") == ["ab"]
    assert text.regex_search(r"(a)b", "ab AB aB", flags=["IGNORECASE"]) == ["ab", "AB", "aB"]
    assert text.regex_search(r"^x.y$", "x\ny\nxzy", flags=["MULTILINE"]) == ["xzy"]
    assert text.regex_search(r"^x.y$", "x\ny\nxzy", flags=["MULTILINE", "DOTALL"]) == [
        "x\ny",
        "xzy",
    ]
    with pytest.raises(re.error):
        text.regex_search("(", "x")
    payload = {"a": [1, 2.5, None, True], "b": "s"}
    assert text.echo(payload) is payload
    assert text.stats("one two\nthree\n") == {"lines": 2, "words": 3, "chars": 14}


def test_text_provider_description() -> None:
    from providers.examples import text

    assert list(text.provider.actions) == ["word_count", "regex_search", "echo", "upper", "stats"]
    regex = text.provider.actions["regex_search"]
    assert regex.input_schema["properties"]["flags"] == {
        "type": "array",
        "items": {"enum": ["IGNORECASE", "MULTILINE", "DOTALL"]},
        "default": [],
    }
    assert text.provider.actions["echo"].input_schema == {
        "type": "object",
        "properties": {"value": {}},
        "required": ["value"],
        "additionalProperties": False,
    }
    assert text.provider.actions["echo"].output_schema == {}
    assert text.provider.actions["stats"].output_schema["required"] == ["lines", "words", "chars"]
    json.dumps(text.provider.describe())


def test_hostile_safe_actions_as_plain_functions(tmp_path: Path) -> None:
    import os

    from providers.examples import hostile

    expected = {
        "spin", "spin_native", "sleep", "allocate", "allocate_once", "allocate_in_children",
        "fork_bomb", "double_fork", "flood_stdout", "huge_result", "exit", "segfault",
        "raise_error", "read_file", "write_file", "open_socket", "wrong_output", "getpid",
        "getppid",
    }  # fmt: skip
    assert set(hostile.provider.actions) == expected
    assert all(a.description for a in hostile.provider.actions.values())
    json.dumps(hostile.provider.describe())

    result: object = hostile.wrong_output()
    assert result == "not an int"
    assert hostile.provider.actions["wrong_output"].output_schema == {"type": "integer"}
    with pytest.raises(ValueError, match=r"^kaboom$"):
        hostile.raise_error("kaboom")
    assert hostile.getpid() == os.getpid()
    assert hostile.getppid() == os.getppid()
    target = tmp_path / "w.txt"
    assert hostile.write_file(str(target), "hello") is True
    assert hostile.read_file(str(target)) == "hello"
    # Tiny, bounded calls only: these prove the clamps/loops work, not the sandbox.
    assert hostile.spin(0.01) > 0
    assert hostile.sleep(0) < 1
    assert hostile.allocate(limit_mib=4, step_mib=2) == 4
    assert hostile.allocate_once(1) == 1
    assert len(hostile.huge_result(0)) == 0
