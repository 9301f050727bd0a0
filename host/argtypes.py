"""Argument types the CLI's commands share (here, not in ``host.cli``, which imports them)."""

from __future__ import annotations

import argparse


def seconds(text: str) -> float:
    """An argparse type: a number of seconds (checked for range where it is used), or a
    duration as the policy flags take it (``5s``, ``500ms``, ``1.5m``)."""
    try:
        return float(text)
    except ValueError:
        pass
    from policies import PolicyError
    from policies.units import parse_duration

    try:
        return parse_duration(text, where="it")
    except PolicyError:
        raise argparse.ArgumentTypeError(
            f"expected seconds or a duration such as 5s or 500ms, got {text!r}"
        ) from None
