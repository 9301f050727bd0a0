"""Finding ``$ref`` cycles that never descend into the value: schemas that recurse without end.

``{"$defs": {"a": {"not": {"$ref": "#/$defs/a"}}}, "$ref": "#/$defs/a"}`` applies ``a`` to the
same value again and again: jsonschema recurses to the interpreter's limit (a few ms of the
thread's time, and where the limit is hit inside ``referencing``'s Rust code, a pyo3
``PanicException``, which is not an ``Exception``), and a generator cannot build a strategy for
it. A cycle that passes through a keyword applying its subschema to a *part* of the value
(``properties``, ``items``...) is fine: the value is finite, so the recursion ends. A cycle made
only of keywords that apply their subschema to the value itself (``allOf``, ``anyOf``,
``oneOf``, ``not``, ``if``/``then``/``else``, ``dependentSchemas``, ``$ref``,
``$dynamicRef``) recurses without end for any value that reaches it, so the catalog refuses it.

Only references this module can resolve on its own are followed: ``#``, ``#/json/pointer`` and
``#anchor`` within a schema that has no ``$id`` below its root (there, ``#...`` would be relative
to another resource). Anything else is left alone (no refusal; the bounded validator still
ends such a recursion as a problem). Work linear in the schema's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

#: Keywords that apply their subschema(s) to the value itself, and to a part of it.
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_LIST = ("allOf", "anyOf", "oneOf")
_IN_PLACE_MAP = ("dependentSchemas",)
_DESCEND_ONE = (
    "items", "additionalProperties", "contains", "propertyNames", "unevaluatedItems",
    "unevaluatedProperties",
)  # fmt: skip
_DESCEND_LIST = ("prefixItems",)
_DESCEND_MAP = ("properties", "patternProperties")
#: Containers of subschemas that are applied only where something refers to them.
_DEFINITIONS = ("$defs", "definitions")


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _subschemas(node: dict[str, Any], pointer: str) -> list[tuple[str, Any, bool | None]]:
    """(pointer, subschema, how it applies) for each subschema of ``node``: True to the value
    itself, False to a part of it, None not at all (a definition, applied where referred to)."""
    found: list[tuple[str, Any, bool | None]] = []
    groups: tuple[tuple[tuple[str, ...], bool | None, str], ...] = (
        (_IN_PLACE_ONE, True, "one"), (_IN_PLACE_LIST, True, "list"),
        (_IN_PLACE_MAP, True, "map"), (_DESCEND_ONE, False, "one"),
        (_DESCEND_LIST, False, "list"), (_DESCEND_MAP, False, "map"),
        (_DEFINITIONS, None, "map"),
    )  # fmt: skip
    for keys, applies, shape in groups:
        for key in keys:
            value = node.get(key)
            if key in ("then", "else") and "if" not in node:
                continue  # (ignored without an ``if``)
            if shape == "one" and value is not None:
                found.append((f"{pointer}/{_escape(key)}", value, applies))
            elif shape == "list" and isinstance(value, list):
                found.extend(
                    (f"{pointer}/{_escape(key)}/{i}", item, applies)
                    for i, item in enumerate(value)
                )
            elif shape == "map" and isinstance(value, dict):
                found.extend(
                    (f"{pointer}/{_escape(key)}/{_escape(str(name))}", item, applies)
                    for name, item in value.items()
                )
    return found


def _walk(schema: Any) -> tuple[dict[str, Any], list[tuple[str, str, bool]], bool]:
    """Every subschema by pointer, the edges between them (from, to, in place), and whether a
    ``$id`` below the root makes local references ambiguous."""
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str, bool]] = []
    nested_id = False
    stack: list[tuple[str, Any]] = [("", schema)]
    while stack:
        pointer, node = stack.pop()
        nodes[pointer] = node
        if not isinstance(node, dict):
            continue
        if pointer and "$id" in node:
            nested_id = True
        for child_pointer, child, applies in _subschemas(node, pointer):
            if applies is not None:
                edges.append((pointer, child_pointer, applies))
            stack.append((child_pointer, child))
    return nodes, edges, nested_id


def _target(ref: Any, nodes: dict[str, Any], anchors: dict[str, str]) -> str | None:
    """The pointer a local reference names, or None if it is not one this module resolves."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    fragment = unquote(ref[1:])
    if fragment == "" or fragment.startswith("/"):
        return fragment.rstrip("/") if fragment.rstrip("/") in nodes else None
    return anchors.get(fragment)


def ref_cycle(schema: Any) -> str | None:
    """Why ``schema`` recurses without end (the cycle, as JSON pointers), or None."""
    nodes, edges, nested_id = _walk(schema)
    if nested_id:
        return None
    anchors: dict[str, str] = {}
    for pointer, node in nodes.items():
        if isinstance(node, dict):
            for key in ("$anchor", "$dynamicAnchor"):
                if isinstance(node.get(key), str):
                    anchors.setdefault(node[key], pointer)
    # Edges: every subschema applied (in place or to a part) and every resolved reference.
    applied: dict[str, list[str]] = {}
    in_place: dict[str, list[str]] = {}
    for pointer, node in nodes.items():
        if isinstance(node, dict):
            for key in ("$ref", "$dynamicRef"):
                target = _target(node.get(key), nodes, anchors)
                if target is not None:
                    in_place.setdefault(pointer, []).append(target)
                    applied.setdefault(pointer, []).append(target)
    for source, target, applies_in_place in edges:
        applied.setdefault(source, []).append(target)
        if applies_in_place:
            in_place.setdefault(source, []).append(target)
    # Only what the root reaches is ever applied (an unused definition recurses nowhere).
    reached = {""}
    frontier = [""]
    while frontier:
        for child in applied.get(frontier.pop(), ()):
            if child not in reached:
                reached.add(child)
                frontier.append(child)
    # Depth-first search for a cycle among the in-place edges (iterative: schemas nest 64
    # levels, but reference chains may be longer).
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in in_place:
        if start in state or start not in reached:
            continue
        path = [start]
        iterators: list[Iterator[str]] = [iter(in_place.get(start, ()))]
        following: str | None
        state[start] = 1
        while iterators:
            following = next(iterators[-1], None)
            if following is None:
                state[path.pop()] = 2
                iterators.pop()
            elif state.get(following) == 1:
                cycle = [*path[path.index(following) :], following]
                shown = " -> ".join(f"#{p}" for p in cycle[:8])
                more = " -> ..." if len(cycle) > 8 else ""
                return (
                    f"the schema applies itself to the same value without end ({shown}{more}): "
                    "a $ref cycle must pass through a keyword that descends into the value "
                    "(properties, items, ...)"
                )
            elif following not in state:
                state[following] = 1
                path.append(following)
                iterators.append(iter(in_place.get(following, ())))
    return None
