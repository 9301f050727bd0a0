"""``--report junit=PATH``: one test case per action, one failure element per finding."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from host.fuzz.runner import ActionReport


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
            ET.SubElement(case, "error", type="InputSchema", message=r.error)
        if r.note:
            ET.SubElement(case, "skipped", message=r.note)
        for f in r.findings:
            failure = ET.SubElement(
                case, "failure", type=f.outcome, message=f"{f.check}: {f.message}"
            )
            failure.text = f"Input: {json.dumps(f.input)}\nReproduce with: {f.reproduce}\n"
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
