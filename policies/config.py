"""Loading the provider policy config file (TOML, or JSON).

Loading is two-phase on purpose: the raw document is first checked against
:data:`policies.schema.SCHEMA` so shape mistakes get an exact key path, then
the model builds :class:`~policies.model.Policy` objects, which catches the
semantic mistakes.  Every problem surfaces as one :class:`ConfigError` whose
one-line message names the file, the key path and what was expected.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from .model import Policy
from .schema import NAME_EXPECTED, NAME_PATTERN, SCHEMA, SOURCE_EXPECTED
from .units import PolicyError, join_path, show_value

__all__ = ["Config", "ConfigError", "ProviderConfig", "load_config", "parse_config"]


class ConfigError(PolicyError):
    """A problem with a config file: unreadable, unparsable, or an invalid value in it.

    File-level problems use an empty ``path``; the message then reads
    ``"<file>: expected valid TOML, got syntax error: ..."``.
    """


@dataclass(frozen=True)
class ProviderConfig:
    """One ``[providers.NAME]`` entry with its effective (defaults-merged) policy."""

    name: str
    source: str
    policy: Policy


@dataclass(frozen=True)
class Config:
    """A loaded config file: the defaults and every provider, in file order."""

    path: str
    defaults: Policy
    providers: tuple[ProviderConfig, ...]

    def provider(self, name: str) -> ProviderConfig:
        """The provider called ``name``; ``KeyError`` if the file does not define it."""
        for entry in self.providers:
            if entry.name == name:
                return entry
        raise KeyError(name)


_VALIDATOR: Final = Draft202012Validator(SCHEMA)
_NAME_RE: Final = re.compile(NAME_PATTERN)
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE_REF_RE: Final = re.compile(rf"{_IDENT}(?:\.{_IDENT})*(?::{_IDENT}(?:\.{_IDENT})*)?")

_TYPE_PHRASES: Final[dict[str, str]] = {
    "object": "a table",
    "array": "a list",
    "string": "a string",
    "boolean": "a boolean (true or false)",
    "integer": "an integer",
    "number": "a number",
    "null": "null",
}


#: Largest config file read (a config of thousands of providers is a few hundred KiB).
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, parse and validate the config file at ``path``.

    TOML unless the name ends in ``.json``; a ``.toml``-named file that is
    really JSON (starts with ``{``) is accepted too, since JSON is what tools emit.
    """
    file = os.fspath(path)
    try:
        # Bounded: ``--config /dev/zero`` (or a huge file) read until memory ran out.
        with open(file, "rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                "", f"a config file of at most {MAX_CONFIG_BYTES // 1024 // 1024} MiB",
                "a bigger one", file,
            )
    except FileNotFoundError:
        raise ConfigError("", "an existing config file", "no such file", file) from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError("", "a readable config file", reason, file) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError("", "UTF-8 text", f"an undecodable byte at offset {error.start}",
                          file) from None
    data = _parse_text(text, file)
    if not isinstance(data, Mapping):  # e.g. a JSON array; TOML always yields a table
        raise ConfigError("", "a table with defaults and providers", show_value(data), file)
    base_dir = os.path.dirname(os.path.abspath(file))
    return parse_config(data, file=file, base_dir=base_dir)


#: What a document nested deeper than the parsers' recursion allows is said to be.
_TOO_DEEP: Final = "values nested too deeply to parse"


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object, refusing a key given twice (``json`` keeps the last silently, so the
    first of two ``"defaults"`` tables would be ignored; TOML refuses it too)."""
    table: dict[str, object] = {}
    for key, value in pairs:
        if key in table:
            raise _DuplicateKey(key)
        table[key] = value
    return table


def _parse_json(text: str, file: str) -> object:
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as error:
        twice = f"the key {show_value(error.args[0])} twice in one object"
        raise ConfigError("", "valid JSON with each key once", twice, file) from None
    except json.JSONDecodeError as error:
        got = f"syntax error: {error.msg} (at line {error.lineno}, column {error.colno})"
        raise ConfigError("", "valid JSON", got, file) from None
    except ValueError as error:  # an integer longer than int() converts (4300 digits)
        raise ConfigError("", "valid JSON", str(error), file) from None
    except RecursionError:  # the decoder recurses
        raise ConfigError("", "valid JSON", _TOO_DEEP, file) from None


def _parse_text(text: str, file: str) -> object:
    if file.lower().endswith(".json"):
        return _parse_json(text, file)
    try:
        return tomllib.loads(text)
    except RecursionError:  # the parser recurses into nested arrays and inline tables
        if text.lstrip().startswith("{"):
            return _parse_json(text, file)
        raise ConfigError("", "valid TOML", _TOO_DEEP, file) from None
    except tomllib.TOMLDecodeError as error:
        if text.lstrip().startswith("{"):
            return _parse_json(text, file)
        raise ConfigError("", "valid TOML", f"syntax error: {error}", file) from None


def parse_config(data: Mapping[str, object], *, file: str, base_dir: str) -> Config:
    """Validate an already-parsed document and build the :class:`Config`.

    ``file`` is only used in messages; relative provider sources are resolved
    against ``base_dir`` (the config file's directory), not the process cwd.
    """
    error = best_match(_VALIDATOR.iter_errors(data))
    if error is not None:
        raise _schema_error(error, file)
    try:
        defaults = Policy.from_mapping(_table(data, "defaults"), path="defaults", file=file)
        providers: list[ProviderConfig] = []
        for name, entry in _table(data, "providers").items():
            where = join_path("providers", name)
            if not _NAME_RE.fullmatch(name):  # also in the schema; kept for direct callers
                raise ConfigError(where, NAME_EXPECTED, show_value(name), file)
            table = entry if isinstance(entry, Mapping) else {}
            policy = defaults.merged(_table(table, "policy"), path=f"{where}.policy", file=file)
            source = _resolve_source(table.get("source"), base_dir, f"{where}.source", file)
            providers.append(ProviderConfig(name=name, source=source, policy=policy))
    except ConfigError:
        raise
    except PolicyError as problem:
        raise problem.relocated(file=file, cls=ConfigError) from None
    return Config(path=file, defaults=defaults, providers=tuple(providers))


def _table(data: Mapping[str, object], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    return value if isinstance(value, Mapping) else {}


def _resolve_source(source: object, base_dir: str, where: str, file: str) -> str:
    """Anchor file references at the config's directory; leave module references alone."""
    if not isinstance(source, str) or not source:
        raise ConfigError(where, SOURCE_EXPECTED, show_value(source), file)
    if source.endswith(".py") or "/" in source:
        if os.path.isabs(source):
            return source
        return os.path.normpath(os.path.join(base_dir, source))
    if _MODULE_REF_RE.fullmatch(source):
        return source
    raise ConfigError(where, SOURCE_EXPECTED, show_value(source), file)


def _dotted(parts: Iterable[str | int]) -> str:
    path = ""
    for part in parts:
        path = join_path(path, f"[{part}]" if isinstance(part, int) else str(part))
    return path


def _schema_error(error: ValidationError, file: str) -> ConfigError:
    """Turn a jsonschema error into a one-line message a config author can act on."""
    path = _dotted(error.absolute_path)
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    instance = error.instance
    keyword = error.validator
    description = schema.get("description")

    if "propertyNames" in error.schema_path:
        return ConfigError(join_path(path, str(instance)), NAME_EXPECTED, show_value(instance),
                           file)
    if keyword == "additionalProperties" and isinstance(instance, Mapping):
        known = list(schema.get("properties", {}))
        unknown = [key for key in instance if key not in known]
        key = str(unknown[0]) if unknown else ""
        return ConfigError(join_path(path, key), "one of the known keys: " + ", ".join(known),
                           f"unknown key {show_value(key)}", file)
    if keyword == "required" and isinstance(instance, Mapping):
        missing = [key for key in schema.get("required", []) if key not in instance]
        key = missing[0] if missing else ""
        wanted = schema.get("properties", {}).get(key, {}).get("description", "a value")
        return ConfigError(join_path(path, key), wanted, "nothing (the key is missing)", file)
    if keyword in ("minimum", "exclusiveMinimum"):
        bound = error.validator_value
        relation = ">=" if keyword == "minimum" else ">"
        noun = "an integer" if schema.get("type") == "integer" else "a number"
        return ConfigError(path, f"{noun} {relation} {bound}", show_value(instance), file)
    if isinstance(description, str) and keyword in ("type", "pattern", "enum", "minLength"):
        return ConfigError(path, description, show_value(instance), file)
    if keyword == "type":
        types = error.validator_value
        names = [types] if isinstance(types, str) else list(types)
        expected = " or ".join(_TYPE_PHRASES.get(str(name), str(name)) for name in names)
        return ConfigError(path, expected, show_value(instance), file)
    if keyword == "enum":
        options = ", ".join(str(option) for option in error.validator_value)
        return ConfigError(path, f"one of: {options}", show_value(instance), file)
    if keyword == "minLength":
        return ConfigError(path, "a non-empty string", show_value(instance), file)
    return ConfigError(path, " ".join(error.message.split()), show_value(instance), file)
