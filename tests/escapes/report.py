"""Print the escape matrix: every attack under the default policy and each degraded policy.

    python -m tests.escapes.report [--details]

Cells are "contained" or "ESCAPED" as observed (a cell that differs from what the layers lead
us to expect is marked with "!"); "unavailable" means the provider refused to start (a required
layer failed closed); "-" means the attack was not run in that column (slow attacks whose
stoppers do not depend on the layers are run under the default policy only); ``--details``
adds every verdict's evidence. The exit code is 1 when a cell differs from the expectation.
Run it as root to see the uid-drop layer; run it inside a pid namespace of its own when
developing (``unshare --pid --fork --mount-proc``).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable

from policies import Policy
from tests.escapes.catalog import (
    CATALOG,
    Arena,
    Verdict,
    applied_layers,
    degraded_policies,
    expected_contained,
    in_parallel,
    run_catalog,
    runtime_hidden_from_other_users,
)


def collect(arena: Arena) -> tuple[dict[str, Policy], dict[str, dict[str, Verdict]]]:
    """Run the whole catalog under the default policy and the fast part under each degraded
    policy, each column in its own host, columns in parallel."""
    columns = {"default": Policy(), **degraded_policies()}
    jobs: dict[str, Callable[[], dict[str, Verdict]]] = {}
    for label, policy in columns.items():
        attacks = CATALOG if label == "default" else tuple(a for a in CATALOG if not a.slow)
        jobs[label] = functools.partial(run_catalog, policy, label, attacks, arena)
    return columns, in_parallel(jobs)


def table(columns: dict[str, Policy], results: dict[str, dict[str, Verdict]]) -> str:
    head = ["attack", "threat", "layer expected to stop it", *columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for attack in CATALOG:
        cells = []
        for label, policy in columns.items():
            verdict = results[label].get(attack.name)
            if verdict is None:
                cells.append("-")
                continue
            cell = verdict.state
            if verdict.state != "unavailable":
                expected = expected_contained(attack, applied_layers(policy))
                if expected != verdict.contained:
                    cell += " !"
            cells.append(cell)
        layers = ", ".join(attack.layers).replace("+", " + ")
        name = attack.name + (" (guarded)" if attack.guarded else "")
        lines.append("| " + " | ".join([name, attack.threat, layers, *cells]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--details", action="store_true", help="print every verdict's detail")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with Arena() as arena:
        columns, results = collect(arena)
    print(table(columns, results))
    print()
    hidden = runtime_hidden_from_other_users()
    for label, policy in columns.items():
        skipped = ", ".join(policy.skip) or "nothing"
        print(f"- **{label}**: skips {skipped}")
    if hidden:
        print(
            f"- (the mount namespace is kept in 'no namespaces': Python lives below {hidden}, "
            "which a dedicated uid can only reach through the mount namespace's view)"
        )
    print(
        "- guarded attacks are not tried by a root/capable worker: 'ESCAPED' there means "
        "'the worker was privileged', not that the machine was changed"
    )
    mismatches = [
        (label, attack.name)
        for attack in CATALOG
        for label, policy in columns.items()
        if (v := results[label].get(attack.name)) is not None
        and v.state != "unavailable"
        and expected_contained(attack, applied_layers(policy)) != v.contained
    ]
    print(f"\n{len(mismatches)} cell(s) differ from the expectation"
          + (": " + ", ".join(f"{a} under {lab}" for lab, a in mismatches) if mismatches else "")
          + f"; {time.monotonic() - started:.1f}s")  # fmt: skip
    if args.details:
        for label, verdicts in results.items():
            print(f"\n## {label}")
            for name, verdict in verdicts.items():
                print(f"- {name}: {verdict.state}: {verdict.detail}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
