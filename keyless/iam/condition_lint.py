"""The IAM condition linter (iamPolicies.lintPolicy, https://cloud.google.com/iam/docs/linting-policies):
a binding's condition checked before setIamPolicy sees it, answered as Google's LintResults.

The checks are the ones setIamPolicy itself applies (keyless.iam.policy: a title, an expression the
CEL compiler of keyless.cel accepts) plus Google's documented limits and pitfalls of conditions
(https://cloud.google.com/iam/docs/conditions-overview#limitations): at most 12 logical operators,
timestamp literals in RFC 3339, date/time functions that fall back to UTC without a time zone.
`validationUnitName` follows Google's form (`LintValidationUnits/ConditionComplexityCheck` is the
name its reference cites; the other names are Keyless's, in the same form).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from keyless.cel import MAX_SOURCE_LENGTH, CelCompileError, compile_expression

MAX_LOGICAL_OPERATORS = 12
SEVERITY_ORDER = ("ERROR", "WARNING", "NOTICE", "INFO", "DEPRECATED")
UNIT = "LintValidationUnits/"
_POSITION = re.compile(r"<input>:(\d+):(\d+):")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_LOGICAL = re.compile(r"&&|\|\||!(?!=)")
_TIMESTAMP = re.compile(r"\btimestamp\(\s*('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\s*\)")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_NO_ZONE = re.compile(r"\.(getDayOfWeek|getHours|getMinutes|getDate|getDayOfMonth|getDayOfYear|getMonth|"
                      r"getFullYear)\(\s*\)")


def _result(unit: str, severity: str, message: str, field: str = "condition.expression",
            offset: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"level": "CONDITION", "validationUnitName": UNIT + unit, "severity": severity,
                           "fieldName": field, "debugMessage": message}
    if offset is not None:
        out["locationOffset"] = offset
    return out


def _offset(expression: str, message: str) -> int:
    """The 0-based character offset of a compiler message's `<input>:LINE:COLUMN:` (1-based)."""
    m = _POSITION.search(message)
    if m is None:
        return 0
    line, column = int(m.group(1)), int(m.group(2))
    if line < 1:
        return 0
    lines = expression.split("\n")
    start = sum(len(x) + 1 for x in lines[:line - 1])
    return max(0, min(len(expression), start + column - 1))


def _outside_strings(expression: str) -> str:
    """The expression with string literals' characters replaced (same length), so operators inside
    them do not count; an argument stays an argument."""
    return _STRING.sub(lambda m: "_" * len(m.group(0)), expression)


def lint_condition(condition: dict[str, Any]) -> list[dict[str, Any]]:
    """The LintResults of a google.type.Expr, most severe first; [] when nothing is wrong."""
    results: list[dict[str, Any]] = []
    title = condition.get("title")
    if not isinstance(title, str) or not title.strip():
        results.append(_result("ConditionTitleCheck", "ERROR", "A condition must have a title.", "condition.title"))
    elif len(title) > 100:
        results.append(_result("ConditionTitleCheck", "ERROR", "A condition title must be at most 100 characters.",
                               "condition.title"))
    expression = condition.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        results.append(_result("ConditionCompileCheck", "ERROR", "A condition must have an expression.", offset=0))
        return _sorted(results)
    if len(expression) > MAX_SOURCE_LENGTH:
        results.append(_result("ConditionCompileCheck", "ERROR",
                               f"The expression is longer than {MAX_SOURCE_LENGTH} characters.", offset=0))
        return _sorted(results)
    try:
        compile_expression(expression)
    except CelCompileError as exc:
        results.append(_result("ConditionCompileCheck", "ERROR", str(exc), offset=_offset(expression, str(exc))))
    code = _outside_strings(expression)
    operators = list(_LOGICAL.finditer(code))
    if len(operators) > MAX_LOGICAL_OPERATORS:
        results.append(_result("ConditionComplexityCheck", "ERROR",
                               f"The expression has {len(operators)} logical operators; a condition may have at "
                               f"most {MAX_LOGICAL_OPERATORS}.", offset=operators[MAX_LOGICAL_OPERATORS].start()))
    for m in _TIMESTAMP.finditer(expression):
        literal = m.group(1)[1:-1]
        if not _RFC3339.match(literal) or not _parses(literal):
            results.append(_result("ConditionTimestampCheck", "ERROR",
                                   f"timestamp('{literal}') is not an RFC 3339 time such as "
                                   "'2030-01-01T00:00:00Z': the condition would fail to evaluate.",
                                   offset=m.start(1)))
    for m in _NO_ZONE.finditer(code):
        results.append(_result("ConditionTimeZoneCheck", "WARNING",
                               f"{m.group(1)}() without a time zone uses UTC; pass one, e.g. "
                               f"{m.group(1)}('Europe/Berlin').", offset=m.start() + 1))
    return _sorted(results)


def _parses(literal: str) -> bool:
    try:
        # Python reads microseconds at most: RFC 3339 allows nanoseconds
        datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", literal).replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _sorted(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(results, key=lambda r: SEVERITY_ORDER.index(r["severity"]))
