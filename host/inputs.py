"""An engine's input, turned into the exact bytes a worker receives, or refused.

The host validates an input against the action's schema and sends it. Those must be the same
thing: validating one Python object and sending its ``json`` encoding let a ``dict`` subclass
(whose ``items()`` the encoder calls) or keys ``True`` and ``"true"`` (both encoded ``"true"``,
the second silently winning in the worker) put values in front of the action that the schema
never saw. So the input is first copied into a private value made only of the plain JSON types
- exact ``dict`` with exact ``str`` keys, ``list`` (a ``tuple`` becomes one), ``str``, ``int``,
``float`` (finite), ``bool`` and ``None``, no subclass of any - and anything else is
:class:`~host.errors.InputInvalid`. Encoding such a value is faithful (decoding the bytes gives
it back, type for type), so the copy that is validated is what the worker decodes, and no later
change to the engine's object can alter what was checked.

The copy is made without recursion and stops at :data:`sandbox.protocol.MAX_INPUT_DEPTH`, so a
100,000-deep list is refused with a message, not a ``RecursionError`` (``json.dumps`` and the
validators recurse). The size limit is the policy's ``input``, decided on the encoded bytes
(plus the call's binary payload, if any): the worker accepts any CALL up to that size, so an
input the host accepts always reaches the worker intact. Strings are counted while copying,
so a 100 MB string is refused before it is encoded; so is every item (one byte at least) and
every key (its quotes and colon), so a small object that *refers* to the same list many times
(``x = [x, x]`` 30 times: 30 lists, 2**30 items once copied or encoded) is refused after about
``input`` items, instead of being expanded in the host until it runs out of memory.
"""

from __future__ import annotations

import math
from typing import Any

from host.errors import InputInvalid
from host.validation import json_path
from sandbox import protocol


class TooLarge(Exception):
    """The input's strings alone are longer than allowed: refused before it is encoded."""

    def __init__(self, at_least: int) -> None:
        super().__init__(at_least)
        self.at_least = at_least


#: Scalars copied as they are (floats are checked to be finite).
_SCALARS = frozenset({str, int, float, bool, type(None)})
_NAMES = "dict, list, str, int, float, bool and None"
#: A container's place in the input, for messages: (the parent's place, key), None at the root.
_Place = tuple[Any, Any] | None


def plain_copy(value: Any, *, max_depth: int, max_chars: int) -> tuple[dict[str, Any], int]:
    """A copy of ``value`` made of plain JSON types only, and the characters of its strings.

    Raises :class:`InputInvalid` (with the JSON path) for a value of any other type, a key that
    is not a ``str``, a float that is not finite or nesting deeper than ``max_depth``, and
    :class:`TooLarge` when its strings, keys and items need more than ``max_chars`` characters
    in all (their encoding is at least that long).

    One loop per container kind, with locals for what it looks up: this runs on every call's
    input, and costs about as much as validating it.
    """
    if type(value) is not dict:
        raise InputInvalid(
            f"the input must be a JSON object (a plain dict), got {type(value).__name__}",
            path="$",
        )
    scalars, isfinite = _SCALARS, math.isfinite
    root: dict[str, Any] = {}
    chars = 0
    # (source container, its copy, its depth, its place): containers only, never recursion.
    stack: list[tuple[Any, Any, int, _Place]] = [(value, root, 1, None)]
    pop, push = stack.pop, stack.append
    try:
        while stack:
            source, copy, depth, place = pop()
            if depth > max_depth:
                where = json_path(_parts(place))
                raise InputInvalid(
                    f"the input is nested deeper than {max_depth} levels (the protocol's depth "
                    f"limit) at {where}",
                    path=where,
                )
            item_copy: Any
            if type(source) is dict:
                for key, item in source.items():
                    if type(key) is not str:
                        raise _not_json(place, None, _what_key(key))
                    # At least '"key":' and one character of the value are sent.
                    chars += len(key) + 4
                    kind = type(item)
                    if kind is str:
                        chars += len(item)
                    elif kind is dict:
                        item_copy = {}
                        push((item, item_copy, depth + 1, (place, key)))
                        item = item_copy
                    elif kind is list or kind is tuple:
                        item_copy = []
                        push((item, item_copy, depth + 1, (place, key)))
                        item = item_copy
                    elif kind not in scalars or (kind is float and not isfinite(item)):
                        raise _not_json(place, key, _what(item))
                    copy[key] = item
            else:
                append = copy.append
                chars += len(source)  # each item is sent as one character at least
                for index, item in enumerate(source):
                    kind = type(item)
                    if kind is str:
                        chars += len(item)
                    elif kind is dict:
                        item_copy = {}
                        push((item, item_copy, depth + 1, (place, index)))
                        item = item_copy
                    elif kind is list or kind is tuple:
                        item_copy = []
                        push((item, item_copy, depth + 1, (place, index)))
                        item = item_copy
                    elif kind not in scalars or (kind is float and not isfinite(item)):
                        raise _not_json(place, index, _what(item))
                    append(item)
            if chars > max_chars:
                raise TooLarge(chars)
    except RuntimeError as exc:  # another thread resized a dict or list while it was copied
        raise InputInvalid(f"the input could not be read: {exc}", path="$") from None
    return root, chars


def _parts(place: _Place) -> list[Any]:
    parts = []
    while place is not None:
        place, key = place
        parts.append(key)
    return parts[::-1]


def _what_key(key: Any) -> str:
    """(No ``repr`` of an object of unknown type: its ``__repr__`` is code of the engine's
    caller, not ours to run in a message.)"""
    shown = f"{key!r} would be" if type(key) in (bool, int, float, type(None)) else "it would be"
    return f"a key of type {type(key).__name__} (JSON object keys are strings; {shown} sent as one)"


def _what(item: Any) -> str:
    if type(item) is float:
        return f"{item!r} (not a JSON number)"
    return f"a value of type {type(item).__name__}"


def _not_json(place: _Place, key: Any, what: str) -> InputInvalid:
    parts = _parts(place)
    where = json_path(parts if key is None else [*parts, key])
    return InputInvalid(
        f"the input is not plain JSON at {where}: {what}; only {_NAMES} are sent "
        "(no subclasses)",
        path=where,
    )


def encode_input(value: Any, *, limit: int, payload_size: int = 0) -> tuple[dict[str, Any], bytes]:
    """The plain copy of ``value`` and its encoding, checked against the depth limit and the
    policy's input limit (``limit`` bytes for the encoding plus ``payload_size``)."""
    what = "the input and its payload are" if payload_size else "the input is"
    try:
        plain, _ = plain_copy(
            value, max_depth=protocol.MAX_INPUT_DEPTH, max_chars=max(limit - payload_size, 0)
        )
    except TooLarge as exc:
        raise InputInvalid(
            f"{what} at least {exc.at_least + payload_size} bytes encoded; the policy's input "
            f"limit is {limit}",
            path="$",
        ) from None
    try:
        encoded = protocol.dumps(plain)
    except (TypeError, ValueError) as exc:  # a lone surrogate, an int of 4300+ digits
        raise InputInvalid(f"the input is not JSON: {exc}", path="$") from None
    size = len(encoded) + payload_size
    if size > limit:
        raise InputInvalid(
            f"{what} {size} bytes encoded; the policy's input limit is {limit}", path="$"
        )
    return plain, encoded
