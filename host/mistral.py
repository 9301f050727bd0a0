"""OpenStack Mistral integration: sandboxed providers as a mistral-lib ``ActionProvider``.

Enabled by configuration only: install ``actionsandbox[mistral]`` (entry point
``mistral.action.providers`` name ``sandbox``) and point ``SANDBOX_CONFIG`` at a sandbox
config file. Every provider of that file appears in Mistral under ``namespace.name``.

- ``find``/``find_all`` never start a worker in the API or engine processes once the catalog
  is cached: the catalog is computed once per content hash of the config file and its provider
  source files, stored on disk, and recomputed when one of them changes.
- The ``Host`` is created lazily, only where an action runs (the executor), closed at exit.
- An action that declares an input property ``mistral_execution`` receives the non-secret
  execution context (workflow/task/action execution ids, workflow name); the security context
  (auth token, trust id, service catalog) is never forwarded.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from mistral_lib import actions as ml_actions
from mistral_lib import exceptions as ml_exc
from mistral_lib.actions.providers import base as ml_base
from mistral_lib.utils import get_dict_from_string

from host.calling import wait_for_outcome
from policies import load_config

#: The input property through which an action asks for the non-secret execution context.
CONTEXT_PARAM = "mistral_execution"
_CONTEXT_FIELDS = ("workflow_execution_id", "task_execution_id", "action_execution_id",
                   "workflow_name")

_HOST_LOCK = threading.Lock()
_HOST: Any = None
_HOST_CONFIG: str | None = None


def _config_path() -> Path:
    value = os.environ.get("SANDBOX_CONFIG", "")
    if not value:
        raise ml_exc.ActionException("SANDBOX_CONFIG is not set: no sandbox providers")
    return Path(value).resolve()


def _sources(config: Path) -> list[Path]:
    """The config file, every provider source that is a file and the ``.py`` files beside it
    (a module ref has none: reinstalling a package does not invalidate; restart Mistral)."""
    paths = [config]
    for entry in load_config(config).providers:
        src = Path(entry.source)
        if src.suffix == ".py" and src.is_file():
            # The provider file and its sibling modules (e.g. dynamic-action source it loads).
            src = src.resolve()
            paths.append(src)
            paths.extend(p for p in sorted(src.parent.glob("*.py")) if p != src)
    return list(dict.fromkeys(paths))


def _content_key(config: Path) -> str:
    digest = hashlib.sha256()
    for path in _sources(config):
        digest.update(str(path).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _stamp(config: Path) -> tuple[tuple[str, int, int], ...]:
    out = []
    for path in _sources(config):
        st = path.stat()
        out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "actionsandbox" / "mistral"


def _compute_catalog(config: Path) -> list[dict[str, Any]]:
    from host.host import Host

    with Host() as host:
        host.load_config(config)
        return [d.to_dict() for d in host.catalog.find_all()]


def load_catalog(config: Path) -> list[dict[str, Any]]:
    """The catalog of ``config``: from the disk cache keyed by content hash, else computed."""
    key = _content_key(config)
    cache = _cache_dir() / f"{key}.json"
    try:
        return list(json.loads(cache.read_text()))
    except (OSError, ValueError):
        pass
    catalog = _compute_catalog(config)
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(catalog, fh)
    os.replace(tmp, cache)
    return catalog


def _shared_host(config: str) -> Any:
    """The process's one Host, created at the first run and closed at exit."""
    global _HOST, _HOST_CONFIG
    with _HOST_LOCK:
        if _HOST is not None and config != _HOST_CONFIG:
            _HOST.close()
            _HOST = None
        if _HOST is None:
            from host.host import Host

            host = Host()
            try:
                host.load_config(config)
            except BaseException:
                host.close()
                raise
            _HOST, _HOST_CONFIG = host, config
            atexit.register(host.close)
        return _HOST


def _spec_default_ok(name: str, default: Any) -> bool:
    try:
        text = json.dumps(default)
    except (TypeError, ValueError):
        return False
    parsed = get_dict_from_string(f"{name}={text}")
    return bool(parsed == {name: default})


def params_spec(schema: dict[str, Any]) -> str:
    """Mistral's ``params_spec`` for an input schema: required names first, then the optional
    ones with their default when it survives Mistral's parser (else ``=null``), then ``**kwargs``
    unless ``additionalProperties`` is false."""
    props: dict[str, Any] = schema.get("properties") or {}
    required = [n for n in schema.get("required") or [] if n != CONTEXT_PARAM]
    parts = list(required)
    for name, sub in props.items():
        if name in required or name == CONTEXT_PARAM:
            continue
        default = sub.get("default") if isinstance(sub, dict) else None
        if default is not None and _spec_default_ok(name, default):
            parts.append(f"{name}={json.dumps(default)}")
        else:
            parts.append(f"{name}=null")
    if schema.get("additionalProperties") is not False:
        parts.append("**kwargs")
    return ", ".join(parts)


def _json_path(path: Any) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _project_of(context: Any) -> str | None:
    """The OpenStack project a call runs for (the security context's ``project_id``, which is
    never forwarded to the action): the tenant of the providers' fair queues, so one project's
    burst of workflow actions makes another project's action wait for one of its calls, not
    for all of them (see ``host.fairqueue``)."""
    security = getattr(context, "security", None)
    if isinstance(security, dict):  # (mistral-lib keeps whatever it was given)
        project = security.get("project_id")
    else:
        project = getattr(security, "project_id", None)
    return str(project) if project else None


class SandboxAction(ml_actions.Action):  # type: ignore[misc]
    """One call of a sandboxed action. Plain attributes only (``ActionSerializer``)."""

    def __init__(self, full_name: str, input: dict[str, Any], config: str,
                 wants_context: bool = False) -> None:
        self.full_name = full_name
        self.input = input
        self.config = config
        self.wants_context = wants_context

    def run(self, context: Any) -> Any:
        data = dict(self.input)
        if self.wants_context:
            execution = getattr(context, "execution", None)
            data[CONTEXT_PARAM] = {f: getattr(execution, f, None) for f in _CONTEXT_FIELDS}
        try:
            host = _shared_host(self.config)
            outcome = wait_for_outcome(
                host.submit(self.full_name, data, tenant=_project_of(context))
            )
        except Exception as exc:  # the host could not start: still a Mistral error result
            return ml_actions.Result(error={"type": type(exc).__name__, "message": str(exc)})
        if outcome.error is None:
            return ml_actions.Result(data=outcome.value)
        return ml_actions.Result(error=outcome.error.to_dict())

    def is_sync(self) -> bool:
        return True


class SandboxActionDescriptor(ml_base.ActionDescriptorBase):  # type: ignore[misc]
    def __init__(self, entry: dict[str, Any], config: str, namespace: str | None) -> None:
        schema = entry.get("input_schema") or {}
        super().__init__(entry["full_name"], entry.get("description", ""), params_spec(schema),
                         namespace=namespace)
        self._entry = entry
        self._config = config
        self._validator = Draft202012Validator(schema)

    @property
    def safe_rerun(self) -> bool:
        return bool(self._entry.get("safe_rerun"))

    @property
    def provider(self) -> str:
        return str(self._entry.get("provider", ""))

    def check_parameters(self, params: Any) -> None:
        errors = sorted(self._validator.iter_errors(params or {}), key=lambda e: list(e.path))
        if errors:
            err = errors[0]
            raise ml_exc.ActionException(
                f"Invalid input [name={self.name}] at {_json_path(err.absolute_path)}: "
                f"{err.message}"
            )

    def instantiate(self, input_dict: Any, wf_ctx: Any) -> SandboxAction:
        props = (self._entry.get("input_schema") or {}).get("properties") or {}
        return SandboxAction(self.name, dict(input_dict or {}), self._config,
                             wants_context=CONTEXT_PARAM in props)


_SORT_KEYS = {"name", "description", "namespace", "params_spec", "safe_rerun", "provider"}


class SandboxActionProvider(ml_actions.ActionProvider):  # type: ignore[misc]
    """Mistral's view of the providers in ``SANDBOX_CONFIG``: constructed with ``(name)``."""

    def __init__(self, name: str = "sandbox") -> None:
        super().__init__(name)
        self._lock = threading.Lock()
        self._stamp: Any = None
        self._entries: list[dict[str, Any]] = []

    def _catalog(self) -> tuple[str, list[dict[str, Any]]]:
        config = _config_path()
        stamp = _stamp(config)
        with self._lock:
            if stamp != self._stamp:
                self._entries = load_catalog(config)
                self._stamp = stamp
            return str(config), self._entries

    def find(self, action_name: str, namespace: str | None = None) -> Any:
        config, entries = self._catalog()
        for entry in entries:
            if entry["full_name"] == action_name:
                return SandboxActionDescriptor(entry, config, namespace or None)
        return None

    def find_all(self, namespace: str | None = None, limit: int | None = None,
                 sort_fields: Any = None, sort_dirs: Any = None,
                 filters: Any = None, **more_filters: Any) -> list[Any]:
        """The actions, filtered, sorted and limited the way Mistral asks.

        Mistral's ``CompositeActionProvider`` passes filters as keyword arguments, in its API's
        form ``{attribute: {op: value}}`` (or a plain value for equality); as in Mistral's own
        filtering, an attribute the descriptors do not have (``created_at``, ``tags``, ...)
        filters and sorts nothing, so the API's default sort keys do not break a listing."""
        config, entries = self._catalog()
        found = [SandboxActionDescriptor(e, config, namespace or None) for e in entries]
        for key, condition in {**(filters or {}), **more_filters}.items():
            if key in _SORT_KEYS:
                found = [d for d in found if _matches(getattr(d, key), condition)]
        fields = [f for f in (sort_fields or ["name"]) if f in _SORT_KEYS]
        dirs = list(sort_dirs or [])
        for i in reversed(range(len(fields))):
            key = fields[i]
            desc = i < len(dirs) and dirs[i] == "desc"
            found.sort(key=lambda d, k=key: (getattr(d, k) is None, getattr(d, k)), reverse=desc)
        return found[:limit] if limit else found


#: Mistral's filter operations (mistral.utils.filter_utils): name -> test(actual, wanted).
_OPS: dict[str, Any] = {
    "eq": lambda a, w: a == w,
    "neq": lambda a, w: a != w,
    "in": lambda a, w: a in w,
    "nin": lambda a, w: a not in w,
    "gt": lambda a, w: a is not None and a > w,
    "gte": lambda a, w: a is not None and a >= w,
    "lt": lambda a, w: a is not None and a < w,
    "lte": lambda a, w: a is not None and a <= w,
    "has": lambda a, w: isinstance(a, str) and str(w) in a,
}


def _matches(actual: Any, condition: Any) -> bool:
    """A plain value means equality; ``{op: value, ...}`` every op must hold."""
    if not (isinstance(condition, dict) and condition and set(condition) <= set(_OPS)):
        return bool(actual == condition)
    try:
        return all(_OPS[op](actual, wanted) for op, wanted in condition.items())
    except TypeError:  # an order between types that have none: no match
        return False


def close_shared_host() -> None:
    """Close this process's Host now (it is closed at exit anyway); the next run makes a new one."""
    global _HOST, _HOST_CONFIG
    with _HOST_LOCK:
        host, _HOST, _HOST_CONFIG = _HOST, None, None
    if host is not None:
        host.close()
