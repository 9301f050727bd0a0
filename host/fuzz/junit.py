"""``--report junit=PATH``: one test case per action, one failure element per finding."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from host.fuzz.runner import ActionReport

#: Characters XML 1.0 cannot hold at all, not even escaped (C0 controls but tab, newline and
#: carriage return; lone surrogates; U+FFFE and U+FFFF): a worker's message with a NUL or an
#: ESC made the report ill-formed. Written as ``\xNN`` / ``\uNNNN`` instead.
_NOT_XML = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20))}
_NOT_XML.update({c: f"\\u{c:04x}" for c in (*range(0xD800, 0xE000), 0xFFFE, 0xFFFF)})


def _xml_text(text: str) -> str:
    return text.translate(_NOT_XML)


def write_junit(path: str, reports: list[ActionReport]) -> None:
    suite = ET.Element(
        "testsuite", name="sandbox fuzz", tests=str(len(reports)),
        failures=str(sum(1 for r in reports if r.findings)),
        errors=str(sum(1 for r in reports if r.error)),
        skipped=str(sum(1 for r in reports if r.note)),
        time=f"{sum(r.seconds for r in reports):.3f}",
    )
    for r in reports:
        case = ET.SubElement(
            suite, "testcase", classname=r.action.partition(".")[0], name=r.action,
            time=f"{r.seconds:.3f}",
        )
        if r.error:
            ET.SubElement(case, "error", type="InputSchema", message=_xml_text(r.error))
        if r.note:
            ET.SubElement(case, "skipped", message=_xml_text(r.note))
        for f in r.findings:
            failure = ET.SubElement(
                case, "failure", type=f.outcome, message=_xml_text(f"{f.check}: {f.message}")
            )
            failure.text = _xml_text(
                f"Input: {json.dumps(f.input)}\nReproduce with: {f.reproduce}\n"
            )
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
