"""JSON Schema's ``integer`` accepts ``2.0`` and ``1e2``; a function annotated ``int`` gets an
``int`` (``providers.integers``), and nothing typed as a float changes."""

from __future__ import annotations

from host import Host
from providers.integers import as_declared
from tests.conftest import provider_file


def test_a_schema_valid_integral_float_reaches_an_int_parameter_as_an_int(host: Host) -> None:
    host.add_provider(provider_file("integral.py"))
    assert host.call("integral.repeat", {"text": "ab", "n": 3.0}) == "ababab"
    assert host.call("integral.repeat", {"text": "ab", "n": 1e1}) == "ab" * 10
    found = host.call("integral.kinds", {
        "choice": 1.0, "maybe": 2.0, "many": [1.0, 2, 3e0], "ratio": 2.0, "pair": [4.0, 5.0],
    })  # fmt: skip
    assert found == {
        "choice": "int", "maybe": "int", "many": ["int", "int", "int"], "ratio": "float",
        "pair": ["int", "float"],
    }  # fmt: skip


def test_only_integral_floats_under_integer_schemas_change() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "x": {"type": "number"},
            "either": {"type": ["integer", "number"]},
            "free": {},
            "nested": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    }
    given = {"n": 2.0, "x": 2.0, "either": 2.0, "free": 2.0, "nested": {"a": 1.0, "b": 2.5}}
    converted = as_declared(given, schema)
    assert converted == {"n": 2, "x": 2.0, "either": 2.0, "free": 2.0,
                         "nested": {"a": 1, "b": 2.5}}  # fmt: skip
    assert [type(converted[k]) for k in ("n", "x", "either", "free")] == [int, float, float, float]
    assert type(converted["nested"]["a"]) is int and given["n"] == 2.0  # (a copy: not in place)
    untouched = {"n": 2, "x": 1.5}
    assert as_declared(untouched, schema) is untouched
