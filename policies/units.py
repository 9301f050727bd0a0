"""Durations, sizes and the error type every policy problem is reported with.

Policies are written by people in config files, so limits are accepted in the
units people think in ("2s", "256MiB") and normalised to plain numbers
(seconds as ``float``, bytes as ``int``) that the confinement layers consume.
The string grammars are also exported as JSON-Schema-compatible patterns so
the config schema and the parser can never disagree about what is valid.
"""

from __future__ import annotations

import json
import math
import re
from typing import Final

__all__ = [
    "DURATION_EXPECTED",
    "DURATION_PATTERN",
    "MAX_SIZE",
    "SIZE_EXPECTED",
    "SIZE_PATTERN",
    "GiB",
    "KiB",
    "MiB",
    "PolicyError",
    "TiB",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
    "show_value",
]

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB
TiB: Final = 1024 * GiB

DURATION_EXPECTED: Final = "a duration such as 2s, 500ms or a number of seconds"
SIZE_EXPECTED: Final = "a size such as 256MiB or a number of bytes"
#: The largest size a limit may have: the kernel's limits (setrlimit, cgroups) are 64-bit.
MAX_SIZE: Final = 2**63 - 1


def show_value(value: object) -> str:
    """Render a bad value the way the config author wrote it (TOML/JSON-ish), on one line.

    Error messages are read by people editing a config file, so ``true`` reads
    better than Python's ``True`` and a whole table is summarised rather than dumped.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, str | list | tuple):
        try:
            text = json.dumps(list(value) if isinstance(value, tuple) else value,
                              ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    else:
        text = f"{type(value).__name__} {value!r}"
    text = " ".join(text.split("\n"))
    return text if len(text) <= 80 else text[:77] + "..."


class PolicyError(ValueError):
    """A policy value is wrong; says where, what was expected and what was found.

    ``got`` is an already-rendered description of the bad value (see
    :func:`show_value`), so callers decide how to describe it.  The message is
    always a single line so it survives log collectors and CLI output intact.
    """

    def __init__(self, path: str, expected: str, got: str, file: str | None = None) -> None:
        self.path = path
        self.expected = expected
        self.got = got
        self.file = file
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [p for p in (self.file, self.path) if p]
        parts.append(f"expected {self.expected}, got {self.got}")
        return " ".join(": ".join(parts).splitlines())

    def __str__(self) -> str:
        return self._render()

    def __reduce__(self) -> tuple[object, ...]:
        # The custom signature would otherwise break pickling (errors cross process boundaries).
        return (type(self), (self.path, self.expected, self.got, self.file))

    def relocated(
        self,
        prefix: str = "",
        file: str | None = None,
        cls: type[PolicyError] | None = None,
    ) -> PolicyError:
        """Return a copy with ``prefix`` prepended to the path and ``file`` filled in.

        Lets low-level validation report field names while callers that know
        the position in a config file ("providers.text.policy") add context.
        """
        path = join_path(prefix, self.path)
        return (cls or type(self))(path, self.expected, self.got, file or self.file)


def join_path(prefix: str, key: str) -> str:
    """Join dotted key paths, keeping list indices (``read[0]``) attached."""
    if not prefix:
        return key
    if not key:
        return prefix
    return prefix + key if key.startswith("[") else f"{prefix}.{key}"


# --- grammars -------------------------------------------------------------------------------

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"


def _anycase(word: str) -> str:
    """Case-insensitive regex for ``word`` without flags (JSON Schema patterns have none)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


#: Seconds per unit as (numerator, denominator): exact, without importing ``fractions`` (and
#: ``decimal``) until a string is parsed; policies that travel as numbers never need them.
_DURATION_UNITS: Final[dict[str, tuple[int, int]]] = {
    "us": (1, 1_000_000),
    "ms": (1, 1000),
    "s": (1, 1),
    "m": (60, 1),
    "h": (3600, 1),
}

_SIZE_UNITS: Final[dict[str, int]] = {
    "b": 1,
    "kb": 1000,
    "kib": KiB,
    "mb": 1000**2,
    "mib": MiB,
    "gb": 1000**3,
    "gib": GiB,
    "tb": 1000**4,
    "tib": TiB,
}


def _grammar(units: dict[str, object]) -> str:
    # Longest suffixes first so alternation never settles on a prefix ("m" before "ms").
    alternatives = "|".join(_anycase(u) for u in sorted(units, key=len, reverse=True))
    return rf"^\s*({_NUMBER})\s*({alternatives})?\s*$"


DURATION_PATTERN: Final = _grammar(dict(_DURATION_UNITS))
SIZE_PATTERN: Final = _grammar(dict(_SIZE_UNITS))
_DURATION_RE: Final = re.compile(DURATION_PATTERN)
_SIZE_RE: Final = re.compile(SIZE_PATTERN)


def parse_duration(value: object, *, where: str) -> float:
    """Parse seconds from a number or a string like "2s", "500ms", "1.5m", "250us", "3".

    Negative, non-finite and boolean values are rejected: ``true`` is almost
    always a typo for a different key, and an infinite limit must be explicit
    elsewhere rather than smuggled in as ``inf``.
    """
    seconds: float
    if isinstance(value, bool):
        raise PolicyError(where, DURATION_EXPECTED, show_value(value))
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise PolicyError(where, DURATION_EXPECTED, show_value(value)) from None
    elif isinstance(value, str):
        match = _DURATION_RE.fullmatch(value)
        if match is None:
            raise PolicyError(where, DURATION_EXPECTED, show_value(value))
        number, unit = match.groups()
        from fractions import Fraction

        try:
            seconds = float(Fraction(number) * Fraction(*_DURATION_UNITS[(unit or "s").lower()]))
        except (OverflowError, ValueError):  # ValueError: more digits than int() converts
            raise PolicyError(where, DURATION_EXPECTED, show_value(value)) from None
    else:
        raise PolicyError(where, DURATION_EXPECTED, show_value(value))
    if not math.isfinite(seconds) or seconds < 0:
        raise PolicyError(where, DURATION_EXPECTED, show_value(value))
    return seconds


def parse_size(value: object, *, where: str) -> int:
    """Parse bytes from an integer or a string like "256MiB", "1GB", "64KiB", "512".

    SI suffixes are powers of 1000 and IEC suffixes powers of 1024, whatever the
    letter case, because confusing the two silently changes a memory limit by ~7%.
    Fractional amounts of a larger unit are rounded down; fractional bytes are an error.
    """
    if isinstance(value, bool):
        raise PolicyError(where, SIZE_EXPECTED, show_value(value))
    if isinstance(value, int):
        result = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise PolicyError(where, SIZE_EXPECTED, show_value(value))
        result = int(value)
    elif isinstance(value, str):
        match = _SIZE_RE.fullmatch(value)
        if match is None:
            raise PolicyError(where, SIZE_EXPECTED, show_value(value))
        number, unit = match.groups()
        multiplier = _SIZE_UNITS[(unit or "b").lower()]
        from fractions import Fraction

        try:
            amount = Fraction(number)
        except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
            raise PolicyError(where, SIZE_EXPECTED, show_value(value)) from None
        if multiplier == 1 and amount.denominator != 1:
            raise PolicyError(where, "a whole number of bytes", show_value(value))
        result = math.floor(amount * multiplier)
    else:
        raise PolicyError(where, SIZE_EXPECTED, show_value(value))
    if result < 0:
        raise PolicyError(where, SIZE_EXPECTED, show_value(value))
    return result


# --- display --------------------------------------------------------------------------------


def _trim(number: float, decimals: int) -> str:
    text = f"{number:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_duration(seconds: float) -> str:
    """Human form of a duration: "2s", "500ms", "1.5m", "250us".

    Picks the largest unit giving a short exact-looking number; the result is
    accepted by :func:`parse_duration` (exactly, or to within a microsecond's millionth).
    """
    if seconds == 0:
        return "0s"
    units: list[tuple[str, float]] = [("h", 3600.0), ("m", 60.0), ("s", 1.0),
                                      ("ms", 1e-3), ("us", 1e-6)]
    for name, scale in units:
        q = seconds / scale
        if q >= 1 and abs(round(q, 3) - q) <= 1e-9 * q:
            return f"{_trim(q, 3)}{name}"
    for name, scale in units:
        q = seconds / scale
        if q >= 1:
            return f"{_trim(q, 6)}{name}"
    return f"{_trim(seconds / 1e-6, 6)}us"


def format_size(n: int) -> str:
    """Human form of a byte count: "256MiB", "1.5GiB", "1GB", "512B".

    Only representations that :func:`parse_size` maps back to exactly ``n`` are
    used (at most two decimals of the unit), falling back to plain bytes.
    """
    units = [("TiB", TiB), ("TB", 1000**4), ("GiB", GiB), ("GB", 1000**3),
             ("MiB", MiB), ("MB", 1000**2), ("KiB", KiB), ("kB", 1000)]
    for name, scale in units:
        if n >= scale and (n * 100) % scale == 0:
            whole, hundredths = divmod(n * 100 // scale, 100)  # integer maths: exact for any n
            fraction = f".{hundredths:02d}".rstrip("0") if hundredths else ""
            return f"{whole}{fraction}{name}"
    return f"{n}B"
