"""``sandbox doctor``: which confinement layers this machine supports, and why not.

Layer probes are the sandbox's own (each layer module's ``probe()``), except cgroups, which the
host creates and so are probed from the host's side: can this process create worker cgroups?
"""

from __future__ import annotations

import os
import platform
from typing import Any

from host import cgroups
from host.usage import lost_guarantees
from policies import Policy


def diagnose() -> dict[str, Any]:
    """The doctor's report: one row per layer, and whether the default policy can run here."""
    from sandbox.layers import probe_all

    root = os.geteuid() == 0
    support = cgroups.probe()
    required = set(
        Policy().required_layers(host_is_root=root, cgroups_available=support.version > 0)
    )
    rows = []
    for name, probe in probe_all().items():
        available, reason, version = probe.available, probe.reason, probe.version
        row: dict[str, Any] = {}
        if name == "cgroups":
            available = support.version > 0
            reason = support.reason
            version = f"v{support.version}" if support.version else version
            # Without them the host cannot measure or enforce the tree's CPU and memory itself.
            row["lost"] = list(lost_guarantees(support))
        rows.append(
            {
                "layer": name,
                "available": available,
                "required": name in required,
                "reason": reason,
                "version": version,
                **row,
            }
        )
    ok = all(row["available"] for row in rows if row["required"])
    return {
        "kernel": platform.release(),
        "python": platform.python_version(),
        "root": root,
        "layers": rows,
        "ok": ok,
    }
