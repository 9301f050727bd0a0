"""The action catalog, with Mistral's lookup semantics and one consistent signature.

The host never imports provider code: the catalog is learnt from a worker's HELLO, which is
untrusted input, so every entry is checked (names, schemas) before it is accepted.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from host.validation import SchemaInvalid, SchemaValidator

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MAX_DESCRIPTION = 4096
#: Longest provider, namespace or action name: names travel in every CALL's envelope, which
#: the worker bounds (``protocol.CALL_ENVELOPE_BYTES``).
MAX_NAME_LENGTH = 128
#: Most actions one provider may announce. (Each schema is bounded too: ``host.bounded``.)
MAX_ACTIONS = 1000


def is_name(value: object) -> TypeGuard[str]:
    """A provider, namespace or action name: ASCII letters, digits and underscores, not
    starting with a digit, at most :data:`MAX_NAME_LENGTH` long. ASCII only, so two names that
    look alike are alike (no Unicode confusables), and without dots, so ``namespace.action`` is
    read one way only."""
    return isinstance(value, str) and len(value) <= MAX_NAME_LENGTH and bool(
        _IDENTIFIER.match(value)
    )


def same_name(a: str, b: str) -> bool:
    """Names that differ only in case count as one: ``CTL`` next to ``ctl`` would let a provider
    pass for another in a listing or a config, and routing must be unambiguous to a reader."""
    return a.lower() == b.lower()


class CatalogInvalid(ValueError):
    """What a worker announced is not a valid catalog."""


class OutsideNamespace(CatalogInvalid):
    """A provider announced an action (or a namespace) other than the one the engine bound it
    to: its own name. A load error, so the provider does not start and serves nothing."""


class SchemaRejected(CatalogInvalid):
    """A schema the worker announced is not valid JSON Schema: the provider's mistake, not a
    protocol violation. Workers leave the meta-schema check to the host (they do not import
    jsonschema), so this is where a typo in a hand-written schema is found."""


class CatalogTooLarge(SchemaRejected):
    """More actions than :data:`MAX_ACTIONS`: a load error, like a rejected schema."""


@dataclass(frozen=True)
class ActionDescriptor:
    """What the catalog knows of one action. Plain data; validators are kept beside it."""

    name: str
    namespace: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    provider: str
    safe_rerun: bool = False
    #: Exception names the action raises on purpose (SDK ``raises=``): not fuzzing findings.
    raises: tuple[str, ...] = ()
    input_validator: SchemaValidator = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    output_validator: SchemaValidator = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    @property
    def full_name(self) -> str:
        return f"{self.namespace}.{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "full_name": self.full_name,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "provider": self.provider,
            "safe_rerun": self.safe_rerun,
        }


_SORTABLE = ("name", "namespace", "full_name", "description", "provider", "safe_rerun")


def descriptors_from_hello(
    provider: str,
    actions: Sequence[Mapping[str, Any]],
    *,
    ref: str = "",
    declared_namespace: object = None,
) -> list[ActionDescriptor]:
    """Check and convert the ``actions`` list of a HELLO. Raises :class:`CatalogInvalid`.

    ``provider`` is the name the engine gave the provider (or, if it gave none, the name the
    provider declared), and it is the provider's namespace: an action in any other namespace,
    or a ``declared_namespace`` other than it, is :class:`OutsideNamespace`. A provider owns its
    namespace and nothing else, so no HELLO can put an action under another provider's name.
    """
    who = f"provider {provider!r}" + (f" ({ref})" if ref else "")
    if len(actions) > MAX_ACTIONS:
        raise CatalogTooLarge(
            f"{who} announces {len(actions):,} actions; a provider may have at most "
            f"{MAX_ACTIONS:,}"
        )
    result = []
    seen = set()
    for raw in actions:
        time.sleep(0)  # (off the loop: its turn for the GIL comes between two actions)
        name, namespace = raw.get("name"), raw.get("namespace")
        if not is_name(name):
            raise CatalogInvalid(f"action name {str(name)[:60]!r} is not an identifier")
        if not is_name(namespace):
            raise CatalogInvalid(f"namespace {str(namespace)[:60]!r} is not an identifier")
        full = f"{namespace}.{name}"
        if namespace != provider:
            raise OutsideNamespace(
                f"{who} declares action {full!r} outside its namespace {provider!r}"
            )
        if full in seen:
            raise CatalogInvalid(f"action {full} is announced twice")
        seen.add(full)
        description = raw.get("description") or ""
        if not isinstance(description, str):
            raise CatalogInvalid(f"{full}: description must be a string")
        safe_rerun = raw.get("safe_rerun", False)
        if not isinstance(safe_rerun, bool):
            raise CatalogInvalid(f"{full}: safe_rerun must be a boolean")
        raises = raw.get("raises", [])
        if not (isinstance(raises, list) and len(raises) <= 64 and all(map(is_name, raises))):
            raise CatalogInvalid(f"{full}: raises must be a list of exception names")
        input_schema, output_schema = raw.get("input_schema"), raw.get("output_schema")
        try:
            input_validator = SchemaValidator(
                input_schema, what=f"action {full!r}: invalid input schema"
            )
            output_validator = SchemaValidator(
                output_schema, what=f"action {full!r}: invalid output schema"
            )
        except SchemaInvalid as exc:
            raise SchemaRejected(str(exc)) from None
        result.append(
            ActionDescriptor(
                name=name,
                namespace=namespace,
                description=description[:_MAX_DESCRIPTION],
                input_schema=input_schema,  # type: ignore[arg-type]
                output_schema=output_schema,  # type: ignore[arg-type]
                provider=provider,
                safe_rerun=safe_rerun,
                raises=tuple(raises),
                input_validator=input_validator,
                output_validator=output_validator,
            )
        )
    if declared_namespace is not None and declared_namespace != provider:
        raise OutsideNamespace(
            f"{who} declares the namespace {str(declared_namespace)[:60]!r} outside its "
            f"namespace {provider!r}"
        )
    return result


#: Catalogs already checked, by a hash of what decides the check's result, most recent last:
#: a respawned worker, or the same provider loaded again (even after its catalog was rejected),
#: costs a lookup, not a check. Values: the descriptors, or the rejection (type and message).
_CHECKED: OrderedDict[bytes, list[ActionDescriptor] | tuple[type[CatalogInvalid], str]] = (
    OrderedDict()
)
_CHECKED_MAX = 64
_CHECKED_LOCK = threading.Lock()
#: Catalog checks run in this process (not answered from the cache); read by tests.
checks_run = 0


def _catalog_key(provider: str, ref: str, signature: str) -> bytes:
    return hashlib.sha256(
        json.dumps([provider, ref, signature]).encode("utf-8", "surrogatepass")
    ).digest()


def cached_catalog(provider: str, signature: str, *, ref: str = "") -> bool:
    """Whether :func:`checked_catalog` would answer from its cache (cheap: a hash)."""
    with _CHECKED_LOCK:
        return _catalog_key(provider, ref, signature) in _CHECKED


def checked_catalog(
    provider: str,
    actions: Sequence[Mapping[str, Any]],
    signature: str,
    *,
    ref: str = "",
    declared_namespace: object = None,
) -> list[ActionDescriptor]:
    """:func:`descriptors_from_hello`, once per distinct catalog: ``signature`` is the canonical
    JSON of what the worker announced (name, namespace, actions). Raises as it does."""
    global checks_run
    key = _catalog_key(provider, ref, signature)
    with _CHECKED_LOCK:
        known = _CHECKED.get(key)
        if known is not None:
            _CHECKED.move_to_end(key)
    if known is None:
        checks_run += 1
        try:
            known = descriptors_from_hello(
                provider, actions, ref=ref, declared_namespace=declared_namespace
            )
        except CatalogInvalid as exc:
            known = (type(exc), str(exc))
        with _CHECKED_LOCK:
            _CHECKED[key] = known
            while len(_CHECKED) > _CHECKED_MAX:
                _CHECKED.popitem(last=False)
    if isinstance(known, tuple):
        raise known[0](known[1])
    return known


def _check_no_clash(new: ActionDescriptor, known: ActionDescriptor | None) -> None:
    """A full name belongs to one provider: ``new`` may not take ``known``'s from another."""
    if known is not None and known.provider != new.provider:
        raise CatalogInvalid(
            f"action {new.full_name} of provider {new.provider!r} clashes with "
            f"provider {known.provider!r}"
        )


class Catalog:
    """Every action of every provider the host has loaded. Thread-safe.

    Copy on write: a change builds a new mapping and swaps it in (under a lock, which only
    changes take), so a lookup takes no lock. A lookup that held one could be interrupted
    holding it by a signal handler on the main thread that calls the host; the loop, which
    looks up every call it queues, then waited for it while the handler waited for the loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actions: dict[str, ActionDescriptor] = {}

    def register(self, descriptors: Iterable[ActionDescriptor]) -> None:
        """Add a provider's actions; a full name that another provider owns is an error."""
        items = list(descriptors)
        with self._lock:
            actions = dict(self._actions)
            for d in items:
                _check_no_clash(d, actions.get(d.full_name))
            for d in items:
                actions[d.full_name] = d
            self._actions = actions

    def replace(self, descriptors: Iterable[ActionDescriptor]) -> None:
        """Make the catalog exactly ``descriptors`` at once (a remote server that came back
        with another configuration); a full name two providers own is an error, and then
        nothing changes."""
        items: dict[str, ActionDescriptor] = {}
        for d in descriptors:
            _check_no_clash(d, items.get(d.full_name))
            items[d.full_name] = d
        with self._lock:
            self._actions = items

    def remove_provider(self, provider: str) -> None:
        with self._lock:
            self._actions = {k: d for k, d in self._actions.items() if d.provider != provider}

    def find(self, name: str, namespace: str | None = None) -> ActionDescriptor | None:
        """Look up ``name`` (``"ns.name"``, or ``"name"`` with ``namespace``); None if absent."""
        if namespace is not None:
            return self._actions.get(f"{namespace}.{name}")
        return self._actions.get(name)

    def find_all(
        self,
        namespace: str | None = None,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        sort: str | Sequence[str] | None = None,
    ) -> list[ActionDescriptor]:
        """Actions in ``namespace`` (all when None) whose attributes equal ``filters``.

        ``sort`` names descriptor attributes (``"-name"`` sorts descending), default
        ``full_name``; ``limit`` keeps the first N after sorting. An unknown filter or sort key is
        a ``ValueError``, so a typo never silently returns everything.
        """
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
        keys = [sort] if isinstance(sort, str) else list(sort or ["full_name"])
        for key in keys:
            if key.lstrip("-") not in _SORTABLE:
                raise ValueError(f"cannot sort by {key!r}; known: {', '.join(_SORTABLE)}")
        for key in filters or {}:
            if key not in (*_SORTABLE, "input_schema", "output_schema"):
                raise ValueError(f"cannot filter by {key!r}; known: {', '.join(_SORTABLE)}")
        items = list(self._actions.values())
        if namespace is not None:
            items = [d for d in items if d.namespace == namespace]
        for key, wanted in (filters or {}).items():
            items = [d for d in items if getattr(d, key) == wanted]
        for key in reversed(keys):  # stable sorts, last key first
            attr = key.lstrip("-")
            items.sort(key=operator.attrgetter(attr), reverse=key.startswith("-"))
        return items if limit is None else items[:limit]

    def __len__(self) -> int:
        return len(self._actions)
