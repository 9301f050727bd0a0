"""The provider-author SDK: :class:`Provider`, :class:`Action` and the ``@action`` decorator.

A provider module creates one :class:`Provider` and decorates plain functions with
:meth:`Provider.action`. Registration does all the checking (names, schemas) eagerly, so a
broken provider fails at load time with a clear message instead of at call time inside a
sandboxed worker. The decorator returns the function unchanged, so authors can unit-test
their actions as ordinary functions.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from providers.errors import ProviderError
from providers.schemas import check_schema, derive_input_schema, derive_output_schema

__all__ = ["Action", "Provider", "ProviderError"]

F = TypeVar("F", bound=Callable[..., object])

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_name(kind: str, value: object) -> str:
    """Names end up in wire messages and ``namespace.action`` keys, so keep them simple."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ProviderError(f"invalid {kind} name {value!r}: must match [A-Za-z_][A-Za-z0-9_]*")
    return value


def _doc_summary(fn: Callable[..., object]) -> str | None:
    """First paragraph of the docstring, whitespace-collapsed into one line."""
    doc = inspect.getdoc(fn)
    if not doc:
        return None
    first = re.split(r"\n\s*\n", doc.strip(), maxsplit=1)[0]
    return " ".join(first.split()) or None


@dataclass(frozen=True)
class Action:
    """One registered action: its metadata, schemas and the Python function implementing it.

    ``input_schema``/``output_schema`` are owned copies (never the caller's dicts), checked
    against JSON Schema draft 2020-12 at registration. ``safe_rerun`` tells the host it may
    retry the action after a worker crash without risking duplicated side effects.
    """

    name: str
    namespace: str
    description: str | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    safe_rerun: bool
    function: Callable[..., object]
    #: Names of the exceptions the action raises on purpose (``raises=[ValueError]``): the
    #: fuzzer does not report them as failures; the host treats them as any ActionFailed.
    raises: tuple[str, ...] = ()
    #: The same, as classes: an exception of a subclass is declared too (``KeyError`` under
    #: ``raises=[LookupError]``), which only the worker, with the classes, can tell.
    raise_classes: tuple[type[BaseException], ...] = ()

    @property
    def full_name(self) -> str:
        """``namespace.name``, the key the host uses to route a call."""
        return f"{self.namespace}.{self.name}"

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description (no function), sent from the worker to the host."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "full_name": self.full_name,
            "description": self.description,
            "input_schema": copy.deepcopy(self.input_schema),
            "output_schema": copy.deepcopy(self.output_schema),
            "safe_rerun": self.safe_rerun,
            **({"raises": list(self.raises)} if self.raises else {}),
        }


class Provider:
    """A named, versioned collection of actions sharing a namespace.

    ``namespace`` defaults to ``name``. The host binds a provider to one namespace: the name the
    engine loads it as (``add_provider(..., name=...)``, a config's ``[providers.NAME]``), else
    the ``name`` declared here; a provider announcing an action in any other namespace fails to
    load. A ``namespace`` other than ``name`` (a fork loaded beside the original, say) therefore
    loads when the engine gives it that name.
    """

    def __init__(
        self,
        name: str,
        version: str = "0.0",
        description: str | None = None,
        namespace: str | None = None,
    ) -> None:
        self.name = _check_name("provider", name)
        if not isinstance(version, str) or not version:
            raise ProviderError(f"provider {name!r}: version must be a non-empty string")
        if description is not None and not isinstance(description, str):
            raise ProviderError(f"provider {name!r}: description must be a string or None")
        self.version = version
        self.description = description
        self.namespace = _check_name("namespace", name if namespace is None else namespace)
        self.actions: dict[str, Action] = {}

    def __repr__(self) -> str:
        return (
            f"Provider(name={self.name!r}, version={self.version!r}, "
            f"namespace={self.namespace!r}, actions={list(self.actions)!r})"
        )

    @overload
    def action(self, function: F, /) -> F: ...

    @overload
    def action(
        self,
        function: None = None,
        /,
        *,
        name: str | None = None,
        input: dict[str, Any] | None = None,
        output: dict[str, Any] | None = None,
        description: str | None = None,
        safe_rerun: bool = False,
        raises: Sequence[type[BaseException]] = (),
    ) -> Callable[[F], F]: ...

    def action(
        self,
        function: F | None = None,
        /,
        *,
        name: str | None = None,
        input: dict[str, Any] | None = None,
        output: dict[str, Any] | None = None,
        description: str | None = None,
        safe_rerun: bool = False,
        raises: Sequence[type[BaseException]] = (),
    ) -> F | Callable[[F], F]:
        """Register a function as an action; usable bare (``@p.action``) or called.

        ``input``/``output`` override the schemas derived from annotations (an explicit
        schema always wins, and lets authors express what annotations cannot).
        ``description`` defaults to the first docstring paragraph. The function is returned
        unchanged. ``raises`` lists exception classes the action raises on purpose (bad input
        it cannot describe in a schema): ``sandbox fuzz`` does not count them as failures.
        """
        if function is not None and not callable(function):
            raise ProviderError(
                f"provider {self.name!r}: @action expects a function, got {function!r}; "
                "pass the action name as name=..."
            )

        def register(fn: F) -> F:
            self._register(
                fn,
                name=name,
                input_schema=input,
                output_schema=output,
                description=description,
                safe_rerun=safe_rerun,
                raises=raises,
            )
            return fn

        if function is not None:
            return register(function)
        return register

    def _register(
        self,
        fn: Callable[..., object],
        *,
        name: str | None,
        input_schema: dict[str, Any] | None,
        output_schema: dict[str, Any] | None,
        description: str | None,
        safe_rerun: bool,
        raises: Sequence[type[BaseException]] = (),
    ) -> Action:
        if not callable(fn):
            raise ProviderError(f"provider {self.name!r}: cannot register non-callable {fn!r}")
        action_name = _check_name(
            "action", name if name is not None else getattr(fn, "__name__", None)
        )
        full_name = f"{self.namespace}.{action_name}"
        if action_name in self.actions:
            raise ProviderError(f"action {full_name!r} is already registered")
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise ProviderError(
                f"action {full_name!r}: async functions are not supported; "
                "workers call actions synchronously"
            )
        if inspect.isgeneratorfunction(fn):
            raise ProviderError(
                f"action {full_name!r}: generator functions are not supported (a generator is "
                "not a JSON value, so every call would end OutputInvalid); return a list"
            )
        if description is not None and not isinstance(description, str):
            raise ProviderError(f"action {full_name!r}: description must be a string")
        if not isinstance(safe_rerun, bool):
            raise ProviderError(f"action {full_name!r}: safe_rerun must be a bool")
        if isinstance(raises, (str, type)) or not all(
            isinstance(e, type) and issubclass(e, BaseException) for e in raises
        ):
            raise ProviderError(
                f"action {full_name!r}: raises must be a list of exception classes"
            )

        if input_schema is None:
            in_schema = derive_input_schema(fn, full_name)
            check_schema(in_schema, full_name, "input")
        else:
            # Check before copying: deepcopy of a non-dict could fail with a confusing error.
            check_schema(input_schema, full_name, "input")
            in_schema = copy.deepcopy(input_schema)
        if in_schema.get("type") != "object":
            raise ProviderError(
                f'action {full_name!r}: invalid input schema: must have "type": "object" '
                "because actions receive keyword arguments"
            )

        if output_schema is None:
            out_schema = derive_output_schema(fn, full_name)
            check_schema(out_schema, full_name, "output")
        else:
            check_schema(output_schema, full_name, "output")
            out_schema = copy.deepcopy(output_schema)

        action = Action(
            name=action_name,
            namespace=self.namespace,
            description=description if description is not None else _doc_summary(fn),
            input_schema=in_schema,
            output_schema=out_schema,
            safe_rerun=safe_rerun,
            function=fn,
            raises=tuple(e.__name__ for e in raises),
            raise_classes=tuple(raises),
        )
        self.actions[action_name] = action
        return action

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description of the provider and all its actions."""
        return {
            "name": self.name,
            "version": self.version,
            "namespace": self.namespace,
            "description": self.description,
            "actions": [action.describe() for action in self.actions.values()],
        }
