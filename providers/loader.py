"""Turn a provider reference string into a :class:`~providers.sdk.Provider`.

Accepted references::

    package.module               attribute "provider" (or attribute_default)
    package.module:attribute
    path/to/file.py
    path/to/file.py:attribute

Loading runs third-party code, so *every* failure while importing it, including
``SyntaxError``, ``SystemExit`` and other ``BaseException`` subclasses (anything except
``KeyboardInterrupt``), is converted into a single :class:`ProviderLoadError` that names the
reference and the exception. The worker can report that one line to the host instead of
dying with a traceback, and the full traceback is still available as ``traceback_text``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import traceback
from types import ModuleType
from typing import TYPE_CHECKING

from providers.errors import ProviderLoadError
from providers.sdk import Provider

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["load_provider", "module_name_for_path"]


def _fail(ref: str, message: str) -> ProviderLoadError:
    return ProviderLoadError(f"cannot load provider {ref!r}: {message}", ref=ref)


def _wrap(ref: str, exc: BaseException) -> ProviderLoadError:
    summary = " ".join(str(exc).split())
    detail = f"{type(exc).__name__}: {summary}" if summary else type(exc).__name__
    error = ProviderLoadError(
        f"cannot load provider {ref!r}: {detail}",
        ref=ref,
        traceback_text="".join(traceback.format_exception(exc)),
    )
    error.__cause__ = exc
    return error


def _is_dotted_identifier(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def module_name_for_path(path: Path) -> str:
    """Unique, import-safe module name for a provider file.

    The hash of the resolved path keeps two ``provider.py`` files in different directories
    apart, and the prefix keeps the name from ever shadowing a real module.
    """
    import hashlib  # file references only: hashlib (OpenSSL) is slow to import

    resolved = path.resolve()
    stem = re.sub(r"[^A-Za-z0-9_]", "_", resolved.stem) or "module"
    digest = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:12]
    return f"_sandbox_provider_{stem}_{digest}"


def _import_module(ref: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except KeyboardInterrupt:
        raise
    except ModuleNotFoundError as exc:
        # Distinguish "the reference points nowhere" from "the provider imports something
        # that is missing": only the former gets the short message.
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            error = _fail(ref, f"no module named {missing!r}")
            error.__cause__ = exc
            raise error from exc
        raise _wrap(ref, exc) from exc
    except BaseException as exc:
        raise _wrap(ref, exc) from exc


def _load_path(ref: str, path: Path) -> ModuleType:
    try:
        is_file = path.is_file()
    except OSError as exc:  # e.g. a directory on the way this process may not search
        raise _fail(ref, f"cannot open {str(path)!r}: {exc.strerror}") from exc
    if not is_file:
        raise _fail(ref, f"no such file: {str(path)!r}")
    module_name = module_name_for_path(path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise _fail(ref, f"cannot create an import spec for {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    # Registered before exec, like a normal import, so code that looks itself up in
    # sys.modules (dataclasses, pickling, typing.get_type_hints) works. Each call re-executes
    # the file: loading is explicit, and picks up edits.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        sys.modules.pop(module_name, None)
        raise
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        raise _wrap(ref, exc) from exc
    return module


def split_reference(ref: str) -> tuple[str, str | None]:
    """``(module or file, attribute or None)`` of a provider reference, as :func:`load_provider`
    reads it: a reference ending in ``.py`` is a file, whatever colons its path holds
    (``run 12:30/p.py``); otherwise the attribute follows the *last* colon
    (``run 12:30/p.py:provider``, ``pkg.mod:provider``). The host and the worker use this to
    find the same file the loader will load."""
    if not ref.endswith(".py") and ":" in ref:
        target, _, attribute = ref.rpartition(":")
        return target, attribute
    return ref, None


def load_provider(ref: str, *, attribute_default: str = "provider") -> Provider:
    """Import the module or file named by *ref* and return its :class:`Provider`.

    Raises :class:`ProviderLoadError` for malformed references, missing modules or files,
    any exception raised while importing, a missing attribute, or an attribute that is not a
    :class:`Provider`.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise ProviderLoadError(f"invalid provider reference {ref!r}: empty", ref=str(ref))
    ref = ref.strip()
    target, named = split_reference(ref)
    attribute = named if named is not None else attribute_default
    if not target:
        raise ProviderLoadError(f"invalid provider reference {ref!r}: no module or file", ref=ref)
    if not _is_dotted_identifier(attribute):
        raise ProviderLoadError(
            f"invalid provider reference {ref!r}: bad attribute name {attribute!r}", ref=ref
        )

    if target.endswith(".py"):
        from pathlib import Path  # file references only: a worker need not import pathlib

        module = _load_path(ref, Path(target))
    elif _is_dotted_identifier(target):
        module = _import_module(ref, target)
    else:
        raise ProviderLoadError(
            f"invalid provider reference {ref!r}: expected 'package.module[:attribute]' "
            "or 'path/to/file.py[:attribute]'",
            ref=ref,
        )

    value: object = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except KeyboardInterrupt:
            raise
        except AttributeError:
            raise _fail(ref, f"module has no attribute {attribute!r}") from None
        except BaseException as exc:  # a hostile module-level __getattr__ or property
            raise _wrap(ref, exc) from exc
    if not isinstance(value, Provider):
        raise _fail(
            ref, f"attribute {attribute!r} is a {type(value).__name__}, not a providers.Provider"
        )
    return value
