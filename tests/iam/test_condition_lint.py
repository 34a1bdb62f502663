"""The IAM condition linter behind iamPolicies.lintPolicy (issue #20): what setIamPolicy would refuse
is an ERROR, pitfalls Google documents are warnings, each placed at its character offset."""

from __future__ import annotations

import re

import pytest

from keyless.iam.condition_lint import lint_condition

pytestmark = pytest.mark.store_independent


def units(condition: dict[str, str]) -> list[tuple[str, str, int | None]]:
    return [(r["validationUnitName"].removeprefix("LintValidationUnits/"), r["severity"], r.get("locationOffset"))
            for r in lint_condition(condition)]


def test_a_sound_condition_has_no_findings() -> None:
    assert lint_condition({"title": "bucket", "expression":
                           'resource.name.startsWith("projects/_/buckets/b") && '
                           "request.time.getHours('Europe/Berlin') < 18"}) == []


def test_syntax_error_is_placed_where_the_compiler_says() -> None:
    expression = "request.time <\n  timestamp('2030-01-01T00:00:00Z') &&"
    (result,) = lint_condition({"title": "t", "expression": expression})
    assert result["severity"] == "ERROR" and result["fieldName"] == "condition.expression"
    assert result["level"] == "CONDITION" and "Syntax error" in result["debugMessage"]
    assert expression[result["locationOffset"]:].strip() == ""  # the end of the second line: nothing follows &&


def test_undeclared_names_and_missing_title() -> None:
    found = units({"expression": "request.time < deadline"})
    assert ("ConditionTitleCheck", "ERROR", None) in found
    assert [u for u, _, _ in found].count("ConditionCompileCheck") == 1


def test_more_than_twelve_logical_operators() -> None:
    expression = " || ".join(f"resource.name == 'r{i}'" for i in range(14))  # 13 operators
    found = units({"title": "t", "expression": expression})
    thirteenth = [m.start() for m in re.finditer(r"\|\|", expression)][12]
    assert found == [("ConditionComplexityCheck", "ERROR", thirteenth)]
    assert units({"title": "t", "expression": " || ".join(f"resource.name == 'r{i}'" for i in range(13))}) == []
    # operators inside string literals are not operators
    assert units({"title": "t", "expression": "resource.name == '" + "&&" * 20 + "'"}) == []


def test_timestamps_and_time_zones() -> None:
    expression = "request.time < timestamp('2030-13-01T00:00:00Z') && request.time.getDayOfWeek() < 5"
    found = units({"title": "t", "expression": expression})
    assert found == [("ConditionTimestampCheck", "ERROR", expression.index("'2030")),
                     ("ConditionTimeZoneCheck", "WARNING", expression.index("getDayOfWeek"))]
    assert units({"title": "t", "expression": "request.time < timestamp('2030-01-01T00:00:00.123456789+01:00')"}) == []
