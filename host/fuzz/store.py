"""Failures kept between ``sandbox fuzz`` runs: each finding's shrunk input, as JSON, tried
first next time.

Why not Hypothesis's own example database: given one, Hypothesis also keeps a Pareto front of
every ``target()`` observation and compares each new example against it (``pareto.py``'s
``dominance``, which computes the shrink order of both sides, expensive for strings). Our
targets are measured wall time, CPU and memory, noisy enough that most examples join the
front, and ``python -m benchmarks.fuzz 500`` (its version of that day) measured 90 examples/s
with the database against 590 without it. Keeping the inputs ourselves costs nothing per
example, and the entries are the inputs themselves (readable, and still valid when
Hypothesis's choice encoding or the strategy changes), not choice sequences.

Layout: ``ROOT/<key>/<hash of the entry>.json``, one directory per (providers, action, mode),
one file per failure: ``{"positive": bool, "check": str, "outcome": str, "input": ...}``.
Files are written to a temporary name and renamed, so a reader never sees half of one; a file
that cannot be read or is not such an object is ignored (and left alone).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

#: A saved entry larger than this is not read (an input is at most the policy's ``input``
#: limit, 1 MiB by default; this leaves room for a larger policy's).
MAX_ENTRY_BYTES = 64 * 2**20


@dataclass(frozen=True)
class SavedFailure:
    """One failing input from an earlier run."""

    positive: bool
    check: str
    outcome: str
    input: Any
    path: str


class FailureStore:
    """The saved failures of one (providers, action, mode)."""

    def __init__(self, root: str, key: bytes) -> None:
        self.directory = os.path.join(root, hashlib.sha256(key).hexdigest()[:32])

    def load(self) -> list[SavedFailure]:
        """Every readable entry, oldest first (by name: any fixed order would do)."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        saved = []
        for name in names:
            if not name.endswith(".json"):
                continue
            entry = _read(os.path.join(self.directory, name))
            if entry is not None:
                saved.append(entry)
        return saved

    def save(self, positive: bool, check: str, outcome: str, value: Any) -> None:
        """Keep one failure (the same one twice is one file)."""
        body = json.dumps(
            {"positive": positive, "check": check, "outcome": outcome, "input": value},
            sort_keys=True, ensure_ascii=False,
        ).encode()
        os.makedirs(self.directory, exist_ok=True)
        name = hashlib.sha256(body).hexdigest()[:32] + ".json"
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(body)
            os.replace(temporary, os.path.join(self.directory, name))
        except BaseException:
            _unlink(temporary)
            raise

    def discard(self, entry: SavedFailure) -> None:
        """Forget a failure that no longer fails."""
        _unlink(entry.path)


def _read(path: str) -> SavedFailure | None:
    try:
        with open(path, "rb") as source:
            raw = source.read(MAX_ENTRY_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_ENTRY_BYTES:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not (
        isinstance(data, dict)
        and isinstance(data.get("positive"), bool)
        and isinstance(data.get("check"), str)
        and isinstance(data.get("outcome"), str)
        and "input" in data
    ):
        return None
    return SavedFailure(data["positive"], data["check"], data["outcome"], data["input"], path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
