"""The host's check of a worker's Landlock rules before it spawns one (fail closed, and early).

The worker checks every rule it computes (:func:`sandbox.worker.layer_context`), but the host
knows its own state best and computes part of the rules itself: the launcher's ``sys.path``
(:func:`host.interpreter.launcher_path`, every entry a read rule) and the policy's ``read`` and
``write``. Checking them here as well means a rule that is ``/``, a home or a directory holding
the host's state (its ipc directory, its workers' workdirs, its cgroups) fails ``add_provider``
with the path, the rule and the reason, before any process starts.
"""

from __future__ import annotations

from collections.abc import Sequence

from host.interpreter import launcher_path
from policies import Policy
from policies.paths import check_rule_path


def check_worker_rules(policy: Policy, state: Sequence[str]) -> None:
    """Raise :class:`~policies.paths.UnsafeRulePath` for the first rule that must not be."""
    for path in launcher_path():
        check_rule_path(path, "runtime", state)
    for path in policy.read:
        check_rule_path(path, "policy.read", state)
    for path in policy.write:
        check_rule_path(path, "policy.write", state)
