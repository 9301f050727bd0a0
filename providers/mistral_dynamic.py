"""Mistral dynamic actions, confined: a sandbox provider made of dynamic-action source.

Mistral's dynamic actions are Python modules uploaded through its API (``code_sources``) whose
classes subclass ``mistral_lib.actions.Action``; Mistral ``exec()``s them inside its own service.
Here the same source is executed only inside a confined worker::

    # dyn.py, a sandbox provider file named in SANDBOX_CONFIG
    from providers.mistral_dynamic import dynamic_provider
    provider = dynamic_provider("dyn", "hello_actions.py", ["Hello"])

Each class becomes the action ``dyn.<class name in lower case>``; its input schema comes from
the class's ``__init__`` parameters (without defaults: required); the action instantiates the
class with the input and returns ``run(None)`` (a ``Result``'s ``data``; its ``error`` raises).
The source path is relative to the provider file. The class gets no Mistral context.
"""

from __future__ import annotations

import inspect
import sys
import types
from pathlib import Path
from typing import Any

from providers import Provider


class DynamicActionError(Exception):
    """The dynamic action returned ``Result(error=...)``."""


def _load(path: Path, module_name: str) -> types.ModuleType:
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    code = compile(path.read_text(), str(path), "exec")
    sys.modules[module_name] = module
    exec(code, module.__dict__)  # inside the confined worker only
    return module


def _schema(cls: type) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required: list[str] = []
    closed = True
    for param in inspect.signature(cls).parameters.values():
        if param.kind is param.VAR_KEYWORD:
            closed = False
            continue
        if param.kind is param.VAR_POSITIONAL:
            continue
        props[param.name] = {}
        if param.default is param.empty:
            required.append(param.name)
        elif param.default is None or isinstance(param.default, (str, int, float, bool)):
            props[param.name] = {"default": param.default}
    schema: dict[str, Any] = {"type": "object", "properties": props, "required": required}
    if closed:
        schema["additionalProperties"] = False
    return schema


def dynamic_provider(
    name: str, source: str, classes: list[str], *, version: str = "1.0"
) -> Provider:
    """A provider named ``name`` whose actions are the ``classes`` of the dynamic-action
    module ``source`` (a path relative to the calling provider file)."""
    caller = Path(inspect.stack()[1].filename).resolve().parent
    module = _load(caller / source, f"_mistral_dynamic_{name}")
    provider = Provider(name, version=version)
    for class_name in classes:
        cls = getattr(module, class_name)

        def call(_cls: type = cls, **params: Any) -> Any:
            result = _cls(**params).run(None)
            if hasattr(result, "data") and hasattr(result, "error"):
                if result.error is not None:
                    raise DynamicActionError(str(result.error))
                return result.data
            return result

        doc = inspect.getdoc(cls) or f"Mistral dynamic action {class_name}"
        provider.action(name=class_name.lower(), input=_schema(cls), output={},
                        description=doc)(call)
    return provider
