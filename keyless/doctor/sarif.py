"""Lint findings as SARIF 2.1.0 (https://docs.oasis-open.org/sarif/sarif/v2.1.0/), the format
code-scanning tools ingest: one run, the rule catalogue in tool.driver.rules, one result per
finding; manifest findings carry a physicalLocation (file URI and start line), store findings a
logicalLocation naming the offending resource."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keyless.doctor.rules import RULES, Finding

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"error": "error", "warning": "warning", "info": "note"}
INFORMATION_URI = "https://github.com/keyless-dev/keyless/blob/main/docs/doctor.md"


def _uri(path: str) -> str:
    p = Path(path)
    return p.as_posix() if not p.is_absolute() else p.as_uri()


def sarif_log(findings: list[Finding]) -> dict[str, Any]:
    rules = list(RULES.values())
    index = {r.id: i for i, r in enumerate(rules)}
    results = []
    for f in findings:
        result: dict[str, Any] = {
            "ruleId": f.rule.id, "ruleIndex": index[f.rule.id], "level": LEVELS[f.level],
            "message": {"text": f"{f.object}: {f.message}. Fix: {f.fix}"},
        }
        if f.path:
            result["locations"] = [{"physicalLocation": {
                "artifactLocation": {"uri": _uri(f.path)}, "region": {"startLine": max(1, f.line or 1)}}}]
        else:
            result["locations"] = [{"logicalLocations": [{"fullyQualifiedName": f.object, "kind": "resource"}]}]
        results.append(result)
    return {
        "$schema": SCHEMA, "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "keyless-doctor", "informationUri": INFORMATION_URI, "version": "1.0.0",
                "rules": [{"id": r.id, "name": r.title, "shortDescription": {"text": r.title},
                           "fullDescription": {"text": r.why},
                           "help": {"text": r.why},
                           "defaultConfiguration": {"level": LEVELS[r.severity]}} for r in rules],
            }},
            "results": results,
        }],
    }


def render_sarif(findings: list[Finding]) -> str:
    return json.dumps(sarif_log(findings), indent=2)
