"""Confinement layers, one module each, applied inside the worker before provider code loads.

Every layer module has ``NAME``, ``probe() -> Probe`` (can this machine apply it, and why not) and
``apply(policy) -> str`` (apply it to the calling process, return a one-line detail, raise
:class:`LayerError` with the reason when it cannot). :func:`apply_layers` runs them in the order
DESIGN.md fixes and turns a failure of a *required* layer into :class:`RequiredLayerMissing`,
which stops the worker: a required layer is never skipped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
class LayerReport:
    """What happened to one layer in one worker; travels in HELLO."""

    name: str
    applied: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _modules() -> list[ModuleType]:
    # Imported here so that ``import sandbox.layers`` stays cheap for the host.
    from sandbox.layers import pdeathsig, rlimits

    return [pdeathsig, rlimits]


def layer_names() -> list[str]:
    """Names of the layers this build implements, in application order."""
    return [m.NAME for m in _modules()]


def probe_all() -> dict[str, Probe]:
    """Probe every implemented layer (used by ``sandbox doctor`` and the host's checks)."""
    return {m.NAME: m.probe() for m in _modules()}


def apply_layers(
    policy: Policy, *, on_applied: Callable[[LayerReport], None] | None = None
) -> list[LayerReport]:
    """Apply every implemented layer in order; stop at the first *required* one that fails.

    A layer that is not required and fails is reported with ``applied=False`` and its reason.
    A required layer this build does not implement at all is also a :class:`RequiredLayerMissing`.
    """
    reports: list[LayerReport] = []
    required: Sequence[str] = policy.require
    implemented = layer_names()
    for name in required:
        if name not in implemented:
            raise RequiredLayerMissing(name, "not implemented by this version of the sandbox")
    for module in _modules():
        try:
            detail = module.apply(policy)
        except LayerError as exc:
            if module.NAME in required:
                raise RequiredLayerMissing(module.NAME, str(exc)) from None
            report = LayerReport(module.NAME, False, str(exc))
        else:
            report = LayerReport(module.NAME, True, detail)
        reports.append(report)
        if on_applied is not None:
            on_applied(report)
    return reports
