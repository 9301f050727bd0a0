"""Confinement layers, one module each, applied inside the worker before provider code loads.

Every layer module has ``NAME``, ``probe() -> Probe`` (can this machine apply it, and why not) and
``apply(policy) -> str`` (apply it to the calling process, return a one-line detail, raise
:class:`LayerError` with the reason when it cannot). :func:`apply_layers` runs them in the order
DESIGN.md fixes and turns a failure of a *required* layer into :class:`RequiredLayerMissing`,
which stops the worker: a required layer is never skipped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

from policies import Policy


class LayerError(Exception):
    """A layer could not be applied; the message is the reason, for the layer report."""


class RequiredLayerMissing(Exception):
    """A layer the policy requires could not be applied; the worker must not run provider code."""

    def __init__(self, layer: str, reason: str) -> None:
        super().__init__(f"required layer {layer!r} could not be applied: {reason}")
        self.layer = layer
        self.reason = reason


@dataclass(frozen=True)
class Probe:
    """Whether a layer can be applied on this machine, and why (not)."""

    available: bool
    reason: str
    version: str = ""


@dataclass(frozen=True)
class LayerContext:
    """What a layer needs to know beyond the policy, gathered by the worker before confinement.

    Paths are absolute. ``read_paths`` already includes the Python runtime, the installed
    packages, the provider's own files and ``policy.read``; ``write_paths`` the private workdir,
    the private ``/tmp`` when there is one, and ``policy.write``.
    """

    workdir: str
    read_paths: tuple[str, ...] = ()
    write_paths: tuple[str, ...] = ()
    #: The uid/gid the worker drops to (when the host is root); None to keep the current ones.
    uid: int | None = None
    gid: int | None = None
    #: ``controller:path`` lines of the cgroup(s) the host put this worker in, or why none.
    cgroup: tuple[str, ...] = ()
    cgroup_error: str = ""
    #: The host's own places (see :mod:`policies.paths`) the rule paths were checked against,
    #: or None when they were not checked (a layer test's hand-made context). When set, the
    #: Landlock layer checks again what each rule's opened inode resolves to: a path swapped
    #: for a symlink after the check would otherwise be granted where it now points.
    state: tuple[str, ...] | None = None


@dataclass(frozen=True)
class LayerReport:
    """What happened to one layer in one worker; travels in HELLO."""

    name: str
    applied: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _modules() -> list[ModuleType]:
    """Every layer module in application order (imported here: the host imports this package)."""
    from sandbox.layers import (
        cgroups,
        ipc_uts_namespace,
        landlock,
        mount_namespace,
        network_namespace,
        no_new_privileges,
        pdeathsig,
        pid_namespace,
        rlimits,
        seccomp,
        uid_drop,
        user_namespace,
    )

    return [
        # In the launcher, before it forks the init process: new namespaces.
        user_namespace,
        pid_namespace,
        mount_namespace,
        network_namespace,
        ipc_uts_namespace,
        # In the worker, before any provider code: DESIGN.md's order, seccomp last.
        pdeathsig,
        rlimits,
        cgroups,
        no_new_privileges,
        uid_drop,
        landlock,
        seccomp,
    ]


def layer_names() -> list[str]:
    """Names of the layers this build implements, in application order."""
    return [m.NAME for m in _modules()]


def probe_all() -> dict[str, Probe]:
    """Probe every implemented layer (used by ``sandbox doctor``)."""
    return {m.NAME: m.probe() for m in _modules()}


def apply_layers(
    stage: str,
    policy: Policy,
    context: LayerContext,
    *,
    required: Sequence[str],
    skip: Sequence[str] = (),
) -> list[LayerReport]:
    """Apply the layers of ``stage`` ("launcher" or "worker") in order.

    A layer in ``skip`` is not attempted (the policy opted out explicitly). A layer that fails
    is reported with ``applied=False`` and its reason, unless it is in ``required``: then
    :class:`RequiredLayerMissing` stops everything, and provider code never runs.
    """
    implemented = layer_names()
    for name in required:
        if name not in implemented:
            raise RequiredLayerMissing(name, "not implemented by this version of the sandbox")
    modules = [m for m in _modules() if stage == m.STAGE and m.NAME not in skip]
    for module in modules:
        # Load what a later layer needs while the earlier ones still allow it (a library that
        # Landlock would later hide, say). Failures surface in that layer's apply.
        prepare = getattr(module, "prepare_stage", None)
        if prepare is not None:
            prepare()
    reports: list[LayerReport] = []
    for module in _modules():
        if stage != module.STAGE:
            continue
        if module.NAME in skip:
            reports.append(LayerReport(module.NAME, False, "skipped by the policy"))
            continue
        try:
            detail = module.apply(policy, context)
        except LayerError as exc:
            if module.NAME in required:
                raise RequiredLayerMissing(module.NAME, str(exc)) from None
            reports.append(LayerReport(module.NAME, False, str(exc)))
        else:
            reports.append(LayerReport(module.NAME, True, detail))
    return reports
