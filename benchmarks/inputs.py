"""What preparing an engine's input costs in the caller's thread, next to encoding it alone.

    python -m benchmarks.inputs [--repeat N]

For a small input (``{"value": "hello"}``, the round-trip benchmark's) and a medium one (100
records, ~4 KB encoded), prints the best thread CPU time of the host's preparation (the plain
copy, its encoding and the CALL splice of ``host.inputs``, plus validation) next to the floor it
replaced: ``protocol.encode`` of the whole CALL plus validation of the engine's own object (which
validated one object and sent another). Thread CPU time, best of N, because this machine is
shared: wall-clock figures move by 2x between minutes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from host.inputs import encode_input
from host.validation import SchemaValidator
from sandbox import protocol

_SCHEMA = {"type": "object", "properties": {"value": {}}, "required": ["value"],
           "additionalProperties": False}  # fmt: skip
_RECORDS = [{"id": i, "name": f"n{i}", "tags": ["a", "b"], "score": i * 0.5} for i in range(100)]
#: label: (input, calls per series)
CASES: dict[str, tuple[dict[str, Any], int]] = {
    "small": ({"value": "hello"}, 20_000),
    "medium": ({"value": _RECORDS}, 300),
}


def _best_cpu_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        for _ in range(number):
            fn()
        best = min(best, (time.thread_time() - start) / number)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9, help="series per figure (best is kept)")
    args = parser.parse_args()
    validator = SchemaValidator(_SCHEMA, what="benchmark")

    def prepared(value: dict[str, Any]) -> list[bytes]:
        plain, encoded = encode_input(value, limit=1 << 20)
        validator.problem(plain)
        return protocol.encode_call("c1", "echo", encoded)

    def encoded_only(value: dict[str, Any]) -> list[bytes]:
        frames = protocol.encode(protocol.Call("c1", "echo", value))
        validator.problem(value)
        return frames

    for label, (value, number) in CASES.items():
        assert prepared(value) == encoded_only(value)
        ours = _best_cpu_us(lambda v=value: prepared(v), number, args.repeat)  # type: ignore[misc]
        floor = _best_cpu_us(lambda v=value: encoded_only(v), number, args.repeat)  # type: ignore[misc]
        print(f"{label:<7} prepared {ours:8.2f} us   encode+validate only {floor:8.2f} us"
              f"   ratio {ours / floor:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
