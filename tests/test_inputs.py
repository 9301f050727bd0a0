"""Hostile input from the engine side (issue 9, class 6): what is validated is what is sent.

Every smuggling trick below once validated one Python object and sent another (a ``dict``
subclass whose ``items()`` the encoder calls, keys that collide once encoded, numbers and
strings whose comparisons or length lie). Each now ends ``InputInvalid`` before anything is
sent, or is sent exactly as validated: the actions of ``tests/providers/receiver.py`` report
what the worker received. Inputs over the policy's ``input`` limit or deeper than the protocol's
depth limit are ``InputInvalid`` too, decided in the host (no worker is started or harmed), and
an input just under the limit reaches the worker intact.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host import Host, InputInvalid, SandboxExecutor
from host.inputs import encode_input
from policies import Policy
from sandbox import protocol
from tests.conftest import provider_file

RECEIVER = provider_file("receiver.py")


@pytest.fixture
def receiver() -> Iterator[Host]:
    with Host() as host:
        host.add_provider(RECEIVER, policy=Policy(workers={"min": 1, "max": 1}))
        yield host


def _invalid(host: Host, action: str, value: Any, match: str) -> InputInvalid:
    outcome = host.run(action, value)
    assert not outcome.ok and isinstance(outcome.error, InputInvalid), outcome
    assert match in outcome.error.message, outcome.error.message
    return outcome.error


# ------------------------------------------------------------------ smuggling: types that lie


class LyingDict(dict):  # type: ignore[type-arg]
    """Holds ``n = 1`` (what a validator reads) but presents ``n = "DROP TABLE users"`` to
    whoever iterates it (the JSON encoder)."""

    def items(self) -> Any:
        return [("n", "DROP TABLE users")]

    def keys(self) -> Any:
        return ["n"]

    def __iter__(self) -> Iterator[str]:
        return iter(["n"])


class TwinKey(str):
    """A key equal to nothing else, so a dict holds it beside a plain ``"n"``; both encode to
    ``"n"`` and the worker keeps the last."""

    __slots__ = ()

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


class Smaller(int):
    """Compares as if it were 0, whatever its value."""

    def __gt__(self, other: object) -> bool:
        return False

    def __ge__(self, other: object) -> bool:
        return False

    def __lt__(self, other: object) -> bool:
        return True

    def __le__(self, other: object) -> bool:
        return True


class Short(str):
    """Claims to be one character long."""

    def __len__(self) -> int:
        return 1


class AlwaysEqual(int):
    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 1


class Jsonish:
    """An object with every hook an encoder might honour."""

    def __json__(self) -> Any:
        return 5

    def to_json(self) -> Any:
        return 5

    def __iter__(self) -> Iterator[int]:
        return iter([5])


def test_a_dict_subclass_cannot_deliver_what_its_validator_did_not_see(receiver: Host) -> None:
    _invalid(receiver, "receiver.number", LyingDict(n=1), "plain dict")
    _invalid(receiver, "receiver.loose", {"n": 1, "inner": LyingDict(n=1)}, "at $.inner")
    assert receiver.call("receiver.number", {"n": 1}) == "int:1"


def test_keys_that_collide_once_encoded_are_refused(receiver: Host) -> None:
    # True encodes as "true": the worker would keep the string, the schema checked the 1.
    _invalid(receiver, "receiver.truthy", {"true": 1, True: "DROP TABLE users"}, "key of type bool")
    _invalid(receiver, "receiver.loose", {"n": 1, TwinKey("n"): "DROP"}, "key of type TwinKey")
    for key in (1, None, 1.5, (1, 2)):
        _invalid(receiver, "receiver.loose", {"n": 1, key: "x"}, "key of type")
    assert receiver.call("receiver.truthy", {"true": 1}) == {"true": 1}


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"n": Smaller(1_000_000)}, "type Smaller"),
        ({"s": Short("DROP TABLE users")}, "type Short"),
        ({"e": AlwaysEqual(7)}, "type AlwaysEqual"),
        ({"n": True}, "is not of type 'integer'"),
        ({"n": 2.5}, "is not of type 'integer'"),
    ],
    ids=["int-lying-comparisons", "str-lying-length", "int-lying-equality", "bool", "float"],
)
def test_values_whose_methods_lie_never_pass_a_bound(
    receiver: Host, value: dict[str, Any], match: str
) -> None:
    _invalid(receiver, "receiver.bounded", value, match)


def test_what_the_worker_receives_is_what_was_validated(receiver: Host) -> None:
    value = {"t": (1, "a", (True, None)), "f": -0.0, "big": 2**200, "u": "h\u00e9\u2603\U0001f600",
             "nested": [{"k": [1.5, {"z": False}]}]}  # fmt: skip
    expected = {"t": [1, "a", [True, None]], "f": -0.0, "big": 2**200,
                "u": "h\u00e9\u2603\U0001f600", "nested": [{"k": [1.5, {"z": False}]}]}  # fmt: skip
    got = receiver.call("receiver.echo", value)
    assert got == expected and json.dumps(got) == json.dumps(expected)
    assert math.copysign(1, got["f"]) == -1
    assert receiver.call("receiver.bounded", {"n": 10, "s": "abc", "e": 2}) == {
        "n": ["int", 10], "s": ["str", "abc"], "e": ["int", 2]}  # fmt: skip


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"x": b"bytes"}, "type bytes"),
        ({"x": {1, 2}}, "type set"),
        ({"x": Jsonish()}, "type Jsonish"),
        ({"x": float("nan")}, "nan"),
        ({"x": float("inf")}, "inf"),
        ({"x": [1, float("-inf")]}, "at $.x[1]"),
        ({"x": type("F", (float,), {})(1.0)}, "type F"),
        ({"x": "\ud800"}, "not JSON"),
        ({"x": 10**5000}, "not JSON"),
    ],
    ids=["bytes", "set", "object", "nan", "inf", "-inf-in-list", "float-subclass",
         "lone-surrogate", "huge-int"],
)  # fmt: skip
def test_values_json_cannot_carry_exactly_are_refused(
    receiver: Host, value: dict[str, Any], match: str
) -> None:
    _invalid(receiver, "receiver.echo", value, match)


@pytest.mark.parametrize("root", [[1], "text", 5, LyingDict(), (("n", 1),)])
def test_the_input_must_be_a_plain_object(receiver: Host, root: Any) -> None:
    _invalid(receiver, "receiver.echo", root, "must be a JSON object")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"]), max_size=4), children,
                      max_size=4),
    max_leaves=20,
)  # fmt: skip


def _tagged(value: Any) -> Any:
    """``value`` with every scalar paired with its exact type, so 1 == 1.0 == True do not pass
    for one another in a comparison."""
    if isinstance(value, dict):
        return {k: _tagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tagged(v) for v in value]
    return (type(value).__name__, repr(value))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=4).filter(lambda s: s.isprintable()), _JSON, max_size=4))
def test_the_validated_copy_is_exactly_what_the_bytes_decode_to(value: dict[str, Any]) -> None:
    plain, encoded = encode_input(value, limit=1 << 20)
    assert _tagged(protocol.loads(encoded)) == _tagged(plain) == _tagged(value)


# ------------------------------------------------------------------ size and depth limits


def _worker_ids(host: Host) -> list[str]:
    return [w.worker_id for w in host._reactor.providers["receiver"].workers]


@pytest.mark.parametrize("megabytes", [20, 100])
def test_an_input_over_the_policy_s_limit_is_refused_in_the_host(
    receiver: Host, megabytes: int
) -> None:
    before = _worker_ids(receiver)
    big = "x" * (megabytes * 1024 * 1024)
    _invalid(receiver, "receiver.digest", {"s": big}, "the policy's input limit is 1048576")
    del big
    many = {"items": list(range(400_000))}  # small strings, big encoding: measured exactly
    error = _invalid(receiver, "receiver.digest", many, "bytes encoded; the policy's input limit")
    assert f"the input is {len(protocol.dumps(many))} bytes encoded" in error.message
    assert receiver.call("receiver.number", {"n": 3}) == "int:3"
    assert _worker_ids(receiver) == before  # the same worker served: none killed or started
    stats = receiver.stats()["receiver"]
    assert stats["restarts"] == 0 and stats["failed_starts"] == 0, stats


def _nested_lists(depth: int) -> dict[str, Any]:
    value: Any = []
    for _ in range(depth - 2):
        value = [value]
    return {"v": value}  # the object is level 1, so this nests ``depth`` levels in all


def _nested_dicts(depth: int) -> dict[str, Any]:
    value: Any = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value  # type: ignore[no-any-return]


def _nested_mixed(depth: int) -> dict[str, Any]:
    value: Any = 1
    for level in range(depth - 1):
        value = [value] if level % 2 else {"k": value, "pad": [0]}
    return {"m": value} if isinstance(value, list) else value  # type: ignore[no-any-return]


@pytest.mark.parametrize("shape", [_nested_lists, _nested_dicts, _nested_mixed])
@pytest.mark.parametrize("depth", [101, 150, 100_000])
def test_an_input_deeper_than_the_protocol_s_limit_is_refused(
    receiver: Host, shape: Any, depth: int
) -> None:
    before = _worker_ids(receiver)
    value = shape(depth)
    _invalid(receiver, "receiver.depth", value, "nested deeper than 100 levels")
    assert receiver.call("receiver.number", {"n": 4}) == "int:4"
    assert _worker_ids(receiver) == before


@pytest.mark.parametrize("shape", [_nested_lists, _nested_dicts])
def test_an_input_at_the_depth_limit_reaches_the_worker(receiver: Host, shape: Any) -> None:
    assert receiver.call("receiver.depth", shape(100)) == 100


def test_an_input_of_exactly_the_limit_reaches_the_worker_intact() -> None:
    limit = 20 * 1024 * 1024  # above the 16 MiB a worker once accepted whatever the policy said
    with Host() as host:
        host.add_provider(RECEIVER, policy=Policy(input=limit, memory="512MiB"))
        filler = "\u00e9" * 1000 + "x"  # two-byte characters too, so bytes != characters
        text = (filler * (limit // len(filler.encode())))
        overhead = len(b'{"s":""}')
        text += "y" * (limit - overhead - len(text.encode()))
        value = {"s": text}
        encoded = protocol.dumps(value)
        assert len(encoded) == limit
        got = host.call("receiver.digest", value)
        assert got == {"bytes": limit, "sha256": hashlib.sha256(encoded).hexdigest()}
        _invalid(host, "receiver.digest", {"s": text + "y"}, f"input limit is {limit}")
        assert host.call("receiver.number", {"n": 5}) == "int:5"


# ------------------------------------------------------------------ the executor's path


def test_the_executor_s_arguments_obey_the_input_limit() -> None:
    with SandboxExecutor(max_workers=1) as pool:
        with pytest.raises(InputInvalid, match="the policy's input limit is 1048576"):
            pool.submit(len, "x" * (2 * 1024 * 1024)).result()
        assert pool.submit(len, "x" * 1000).result() == 1000
    big = 20 * 1024 * 1024
    with SandboxExecutor(max_workers=1, policy=Policy(input="32MiB", memory="512MiB")) as pool:
        assert pool.submit(len, "x" * big).result() == big
