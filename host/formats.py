"""Linear-time checkers of the ``iri``, ``iri-reference`` and ``uri-template`` formats.

jsonschema checks ``iri``/``iri-reference`` with ``rfc3987_syntax`` (a Lark parser: 6-10 s on
a 5,000-character string, and 1.2 s to import, as it compiles its grammar) and
``uri-template`` with ``uri_template`` (quadratic: 10 s at 80,000 characters). These checkers
are regular expressions written from the ABNF of RFC 3987 (section 2.2) and RFC 6570 (section
2, levels 1-4), run by RE2: RE2 compiles a pattern to an automaton and matches in time linear
in the subject (no backtracking), whatever the subject, so each check is O(n). Both grammars
are regular (no nesting: a URI template's expressions do not nest), so a regex is exact.

A string holding a lone surrogate (JSON allows ``"\\ud800"``) is not valid: no rule of either
grammar admits U+D800-U+DFFF.
"""

from __future__ import annotations

import re2

__all__ = ["is_iri", "is_iri_reference", "is_uri_template"]

# --- RFC 3987 section 2.2 (with RFC 3986's rules it reuses) ------------------------------------
# ABNF strings are case-insensitive ("v" of IPvFuture); ALPHA, DIGIT, HEXDIG are ASCII.
_HEX = "[0-9A-Fa-f]"
_PCT = f"%{_HEX}{_HEX}"
_SUB_DELIMS = "!$&'()*+,;="
_UCSCHAR = (
    r"\x{A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}"
    r"\x{10000}-\x{1FFFD}\x{20000}-\x{2FFFD}\x{30000}-\x{3FFFD}\x{40000}-\x{4FFFD}"
    r"\x{50000}-\x{5FFFD}\x{60000}-\x{6FFFD}\x{70000}-\x{7FFFD}\x{80000}-\x{8FFFD}"
    r"\x{90000}-\x{9FFFD}\x{A0000}-\x{AFFFD}\x{B0000}-\x{BFFFD}\x{C0000}-\x{CFFFD}"
    r"\x{D0000}-\x{DFFFD}\x{E1000}-\x{EFFFD}"
)
_IPRIVATE = r"\x{E000}-\x{F8FF}\x{F0000}-\x{FFFFD}\x{100000}-\x{10FFFD}"
_UNRESERVED = r"A-Za-z0-9\-._~"
_IUNRESERVED = _UNRESERVED + _UCSCHAR
# Character classes (without the brackets) of the single-character alternatives.
_ISUB = _IUNRESERVED + re2.escape(_SUB_DELIMS)
_IPCHAR = f"(?:[{_ISUB}:@]|{_PCT})"

_DEC_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = rf"{_DEC_OCTET}(?:\.{_DEC_OCTET}){{3}}"
_H16 = f"{_HEX}{{1,4}}"
_LS32 = f"(?:{_H16}:{_H16}|{_IPV4})"


def _h16s(count: int) -> str:
    """``count`` repetitions of ``h16 ":"``."""
    return f"(?:{_H16}:){{{count}}}" if count else ""


def _upto(count: int) -> str:
    """``[ *count( h16 ":" ) h16 ]``, the part before ``::``."""
    if count == 0:
        return f"(?:{_H16})?"
    return f"(?:(?:{_H16}:){{0,{count}}}{_H16})?"


_IPV6 = (
    "(?:"
    + "|".join(
        [
            f"{_h16s(6)}{_LS32}",
            f"::{_h16s(5)}{_LS32}",
            f"{_upto(0)}::{_h16s(4)}{_LS32}",
            f"{_upto(1)}::{_h16s(3)}{_LS32}",
            f"{_upto(2)}::{_h16s(2)}{_LS32}",
            f"{_upto(3)}::{_h16s(1)}{_LS32}",
            f"{_upto(4)}::{_LS32}",
            f"{_upto(5)}::{_H16}",
            f"{_upto(6)}::",
        ]
    )
    + ")"
)
_IPVFUTURE = rf"[vV]{_HEX}+\.[{_UNRESERVED}{re2.escape(_SUB_DELIMS)}:]+"
_IP_LITERAL = rf"\[(?:{_IPV6}|{_IPVFUTURE})\]"

_IUSERINFO = f"(?:[{_ISUB}:]|{_PCT})*"
_IREG_NAME = f"(?:[{_ISUB}]|{_PCT})*"
# ihost = IP-literal / IPv4address / ireg-name (an IPv4address is also an ireg-name).
_IHOST = f"(?:{_IP_LITERAL}|{_IREG_NAME})"
_IAUTHORITY = f"(?:{_IUSERINFO}@)?{_IHOST}(?::[0-9]*)?"

_ISEGMENT = f"{_IPCHAR}*"
_ISEGMENT_NZ = f"{_IPCHAR}+"
_ISEGMENT_NZ_NC = f"(?:[{_ISUB}@]|{_PCT})+"
_IPATH_ABEMPTY = f"(?:/{_ISEGMENT})*"
_IPATH_ABSOLUTE = f"/(?:{_ISEGMENT_NZ}(?:/{_ISEGMENT})*)?"
_IPATH_ROOTLESS = f"{_ISEGMENT_NZ}(?:/{_ISEGMENT})*"
_IPATH_NOSCHEME = f"{_ISEGMENT_NZ_NC}(?:/{_ISEGMENT})*"

_IQUERY = rf"(?:[{_ISUB}:@{_IPRIVATE}/?]|{_PCT})*"
_IFRAGMENT = rf"(?:[{_ISUB}:@/?]|{_PCT})*"
_SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"

_IHIER_PART = f"(?://{_IAUTHORITY}{_IPATH_ABEMPTY}|{_IPATH_ABSOLUTE}|{_IPATH_ROOTLESS}|)"
_IRELATIVE_PART = f"(?://{_IAUTHORITY}{_IPATH_ABEMPTY}|{_IPATH_ABSOLUTE}|{_IPATH_NOSCHEME}|)"
_TAIL = f"(?:\\?{_IQUERY})?(?:#{_IFRAGMENT})?"
_IRI = f"{_SCHEME}:{_IHIER_PART}{_TAIL}"
_IRELATIVE_REF = f"{_IRELATIVE_PART}{_TAIL}"

# --- RFC 6570 section 2 -------------------------------------------------------------------------
# literals: %x21 / %x23-24 / %x26 / %x28-3B / %x3D / %x3F-5B / %x5D / %x5F / %x61-7A / %x7E
#           / ucschar / iprivate / pct-encoded
_LITERALS = (
    r"(?:[\x{21}\x{23}-\x{24}\x{26}\x{28}-\x{3B}\x{3D}\x{3F}-\x{5B}\x{5D}\x{5F}\x{61}-\x{7A}"
    rf"\x{{7E}}{_UCSCHAR}{_IPRIVATE}]|{_PCT})"
)
_VARCHAR = f"(?:[A-Za-z0-9_]|{_PCT})"
_VARNAME = rf"{_VARCHAR}(?:\.?{_VARCHAR})*"
_VARSPEC = f"{_VARNAME}(?::[1-9][0-9]{{0,3}}|\\*)?"
_EXPRESSION = rf"\{{[+#./;?&=,!@|]?{_VARSPEC}(?:,{_VARSPEC})*\}}"
_URI_TEMPLATE = f"(?:{_LITERALS}|{_EXPRESSION})*"

_OPTIONS = re2.Options()
_OPTIONS.max_mem = 64 << 20  # the Unicode classes make big automata; RE2 stays linear anyway
_OPTIONS.never_capture = True
_IRI_RE = re2.compile(_IRI, _OPTIONS)
_IRI_REFERENCE_RE = re2.compile(f"{_IRI}|{_IRELATIVE_REF}", _OPTIONS)
_URI_TEMPLATE_RE = re2.compile(_URI_TEMPLATE, _OPTIONS)


def _matches(pattern: re2._Regexp, instance: str) -> bool:
    try:
        instance.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: admitted by no rule
        return False
    return pattern.fullmatch(instance) is not None


def is_iri(instance: object) -> bool:
    """``format: iri``: RFC 3987's ``IRI``. A non-string passes (the format does not apply)."""
    return not isinstance(instance, str) or _matches(_IRI_RE, instance)


def is_iri_reference(instance: object) -> bool:
    """``format: iri-reference``: RFC 3987's ``IRI-reference``."""
    return not isinstance(instance, str) or _matches(_IRI_REFERENCE_RE, instance)


def is_uri_template(instance: object) -> bool:
    """``format: uri-template``: RFC 6570's ``URI-Template`` (levels 1-4)."""
    return not isinstance(instance, str) or _matches(_URI_TEMPLATE_RE, instance)
