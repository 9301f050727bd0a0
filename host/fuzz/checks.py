"""The named checks and modes (no imports: the CLI's parser reads them at start-up)."""

from __future__ import annotations

#: Check name -> the outcome types it reports (positive data); see the README.
CHECKS: dict[str, frozenset[str]] = {
    "not_a_crash": frozenset({"WorkerCrashed", "ProtocolViolation", "ProviderUnavailable"}),
    "no_action_failure": frozenset({"ActionFailed"}),
    "output_conformance": frozenset({"OutputInvalid"}),
    "no_timeout": frozenset({"Timeout", "CpuExceeded"}),
    "no_resource_exhaustion": frozenset({"MemoryExceeded", "OutputTooLarge"}),
    "positive_data_acceptance": frozenset({"InputInvalid"}),
    "negative_data_rejection": frozenset(),
    "determinism": frozenset(),
}
#: On unless asked for: running every example twice halves the rate.
OPT_IN = frozenset({"determinism"})
MODES = ("positive", "negative", "all")
