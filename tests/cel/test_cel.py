"""The CEL engine: Google's extract(), the functions IAM conditions and WIF use, errors, hostile input."""

from __future__ import annotations

import datetime
import json
import time

import pytest

from keyless.cel import (
    DEFAULT_VARIABLES,
    MAX_SOURCE_LENGTH,
    Activation,
    CelCompileError,
    CelEvaluationError,
    compile_expression,
    extract,
)

pytestmark = pytest.mark.store_independent  # runs on the SQLite leg only (tests/conftest.py)

OBJECT = "projects/_/buckets/acme-orders-aaa/objects/data_lake/orders/order_date=2019-11-03/aef87g87ae0876"


def ev(source: str, **activation: object) -> object:
    return compile_expression(source, variables=[*DEFAULT_VARIABLES, *activation]).evaluate(activation)


# --- extract(): the examples of Google's attribute reference --------------------------------------

@pytest.mark.parametrize(("template", "expected"), [
    ("/order_date={date}/", "2019-11-03"),
    ("buckets/{name}/", "acme-orders-aaa"),
    ("/orders/{empty}order_date", ""),
    ("{start}/data_lake", "projects/_/buckets/acme-orders-aaa/objects"),
    ("orders/{end}", "order_date=2019-11-03/aef87g87ae0876"),
    ("{all}", OBJECT),
    ("/orders/{none}/order_date=", ""),
    ("/topics/{name}", ""),
])
def test_extract_google_examples(template: str, expected: str) -> None:
    assert extract(OBJECT, template) == expected
    assert ev(f"resource.name.extract('{template}')", resource={"name": OBJECT}) == expected


def test_extract_in_wif_mapping_style() -> None:
    sub = "repo:my-org/my-repo:ref:refs/heads/main"
    assert ev("assertion.sub.extract('repo:{repo}:')", assertion={"sub": sub}) == "my-org/my-repo"
    assert ev('"projects/p/buckets/b/objects/o".extract("/buckets/{name}/")') == "b"


def test_extract_rejects_template_without_one_placeholder() -> None:
    with pytest.raises(CelEvaluationError, match="exactly one"):
        ev("'a/b'.extract('/b/')")
    with pytest.raises(CelEvaluationError, match="exactly one"):
        ev("'a/b'.extract('{x}/{y}')")


def test_extract_type_checked_at_compile_time() -> None:
    with pytest.raises(CelCompileError, match="found no matching overload for 'extract'"):
        compile_expression("'a'.extract(1)")


# --- the language IAM conditions and WIF use ---------------------------------------------------------

GITHUB = {
    "sub": "repo:my-org/my-repo:ref:refs/heads/main", "repository": "my-org/my-repo",
    "repository_owner": "my-org", "ref": "refs/heads/main", "groups": ["admins", "dev"],
    "https://aws.amazon.com/tags": {"principal_tags": {"team": ["infra"]}}, "run_number": "10",
}


@pytest.mark.parametrize(("source", "expected"), [
    ("assertion.repository_owner == 'my-org'", True),
    ("assertion.repository_owner != 'my-org'", False),
    ("assertion.repository_owner == 'my-org' && (assertion.ref == 'refs/heads/main' || "
     "assertion.ref.startsWith('refs/heads/release/'))", True),
    ("assertion['https://aws.amazon.com/tags'].principal_tags.team[0]", "infra"),
    ("has(assertion.sub)", True),
    ("has(assertion.environment)", False),
    ("'admins' in assertion.groups", True),
    ("'ref' in assertion", True),
    ("!('x' in assertion.groups)", True),
    ("assertion.ref.endsWith('/main') ? 'prod' : 'dev'", "prod"),
    ("assertion.repository + '@' + assertion.ref", "my-org/my-repo@refs/heads/main"),
    ("assertion.sub.contains('my-repo')", True),
    ("assertion.sub.matches('^repo:my-org/[a-z-]+:ref:refs/heads/(main|release/.*)$')", True),
    ("size(assertion.groups) == 2 && assertion.sub.size() > 5", True),
    ("assertion.repository_owner.upperAscii()", "MY-ORG"),
    ("'MiXeD'.lowerAscii()", "mixed"),
    ("assertion.repository.split('/')", ["my-org", "my-repo"]),
    ("assertion.repository.split('/')[1]", "my-repo"),
    ("int(assertion.run_number) + 1", 11),
    ("string(42)", "42"),
    ("bool('true')", True),
    ("[1, 2, 3].exists(x, x > 2)", True),
    ("{'a': 1}['a']", 1),
    ("1 < 2 && 2 > 1", True),
])
def test_expressions(source: str, expected: object) -> None:
    assert ev(source, assertion=GITHUB) == expected


def test_iam_condition_attributes_and_time() -> None:
    now = datetime.datetime(2026, 6, 1, 8, 30, tzinfo=datetime.UTC)
    act = {"request": {"time": now},
           "resource": {"name": "projects/_/buckets/b/objects/logs/a.txt",
                        "type": "storage.googleapis.com/Object", "service": "storage.googleapis.com"}}
    program = compile_expression('request.time < timestamp("2030-01-01T00:00:00Z")')
    assert program.evaluate(act) is True
    assert ev('request.time < timestamp("2020-01-01T00:00:00Z")', **act) is False
    assert ev("request.time.getHours()", **act) == 8
    assert ev("request.time.getHours('Europe/Berlin')", **act) == 10
    assert ev("request.time", **act) == now
    assert ev("duration('90m')") == datetime.timedelta(minutes=90)
    assert ev("resource.name.startsWith('projects/_/buckets/b/objects/logs/')", **act) is True
    assert ev('resource.type == "storage.googleapis.com/Object"', **act) is True
    assert ev('resource.service == "storage.googleapis.com"', **act) is True


def test_activation_shared_across_programs() -> None:
    act = Activation({"assertion": GITHUB})
    assert compile_expression("assertion.ref").evaluate(act) == "refs/heads/main"
    assert compile_expression("assertion.repository").evaluate(act) == "my-org/my-repo"


# --- errors read like Google's ----------------------------------------------------------------------

def test_syntax_error_message() -> None:
    with pytest.raises(CelCompileError) as exc:
        compile_expression("assertion.sub ==")
    assert str(exc.value).startswith("ERROR: <input>:1:17: Syntax error: mismatched input '<EOF>' expecting")
    assert "\n | assertion.sub ==\n | ................^" in str(exc.value)


def test_undeclared_reference() -> None:
    with pytest.raises(CelCompileError, match=r"ERROR: <input>:1:1: undeclared reference to 'foo'"):
        compile_expression("foo == 1")
    with pytest.raises(CelCompileError, match="undeclared reference to 'google.subject'"):
        compile_expression("google.subject == 'x'", variables=["assertion"])


def test_runtime_errors() -> None:
    with pytest.raises(CelEvaluationError, match="no such key: environment"):
        ev("assertion.environment == 'prod'", assertion=GITHUB)
    with pytest.raises(CelEvaluationError, match="No matching overloads"):
        ev("assertion.sub + 1", assertion=GITHUB)
    with pytest.raises(CelEvaluationError, match="divide by zero"):
        ev("1 / 0")
    with pytest.raises(CelEvaluationError, match="invalid regular expression"):
        ev("'x'.matches('(')")
    with pytest.raises(CelEvaluationError):
        ev("timestamp('not a time')")
    with pytest.raises(CelEvaluationError, match="out of range"):
        ev("assertion.n == 1", assertion={"n": 2**80})


# --- hostile input ---------------------------------------------------------------------------------

def test_source_length_limit() -> None:
    compile_expression("'" + "a" * (MAX_SOURCE_LENGTH - 2) + "'")
    with pytest.raises(CelCompileError, match="code point size exceeds limit: size: 1048576, limit 4096"):
        compile_expression("a" * 1024 * 1024)
    with pytest.raises(CelCompileError, match="exceeds limit"):
        compile_expression("(" * 10_000 + "1" + ")" * 10_000)


def test_deep_nesting_within_length_limit() -> None:
    with pytest.raises(CelCompileError, match="recursion"):
        compile_expression("(" * 2000 + "1" + ")" * 2000)
    with pytest.raises(CelCompileError, match="recursion"):
        compile_expression("[" * 2000 + "]" * 2000)
    with pytest.raises(CelCompileError, match="recursion"):
        compile_expression("+".join(["'x'"] * 500))
    # Long && / || chains are balanced by the parser, as in cel-go.
    assert ev(" || ".join(["false"] * 400) + " || true") is True


def test_catastrophic_regex_is_linear() -> None:
    start = time.perf_counter()
    assert ev("s.matches('(a+)+$')", s="a" * 50_000 + "!") is False
    assert ev("s.matches('^(a|aa)+$')", s="a" * 50_000 + "b") is False
    assert time.perf_counter() - start < 1.0


def test_comprehension_budget() -> None:
    big = "[" + ",".join(str(i) for i in range(300)) + "]"
    with pytest.raises(CelEvaluationError, match="cost limit"):
        ev(f"{big}.all(x, {big}.all(y, {big}.all(z, true)))")


def test_string_growth_is_bounded() -> None:
    with pytest.raises(CelEvaluationError, match="exceeds the limit"):
        ev("s.replace('a', s).replace('a', s)", s="a" * 1000)


def test_deep_activation_is_rejected_not_crashing() -> None:
    deep: dict[str, object] = {}
    cur = deep
    for _ in range(100_000):
        cur["k"] = {}
        cur = cur["k"]  # type: ignore[assignment]
    with pytest.raises(CelEvaluationError, match="nests deeper"):
        ev("assertion == assertion", assertion=deep)


def test_compile_rejects_non_string_and_bad_unicode() -> None:
    with pytest.raises(CelCompileError):
        compile_expression(None)  # type: ignore[arg-type]
    with pytest.raises(CelCompileError):
        compile_expression("'\ud800'")


@pytest.mark.parametrize("data", [{"a": "\ud800"}, {"a": {"\udfff": "x"}}, {"a": [["ok", "\ud83d"]]}])
def test_strings_that_are_not_unicode_are_refused_before_evaluation(data: dict) -> None:
    """JSON's `\\ud800` escape yields a lone surrogate, which is no CEL string."""
    with pytest.raises(CelEvaluationError, match="not valid Unicode"):
        compile_expression("true", variables=["a"]).evaluate(data)
    paired = json.loads('"\\ud83d\\ude00 \\u00e9"')  # an escaped surrogate pair is one code point
    assert compile_expression("a", variables=["a"]).evaluate({"a": paired}) == "\U0001F600 é"


@pytest.mark.parametrize("data", [{"a": 1 << 63}, {"a": {"k": -(1 << 63) - 1}}, {"a": [[1 << 70]]}])
def test_integers_wider_than_int64_are_refused_before_evaluation(data: dict) -> None:
    with pytest.raises(CelEvaluationError, match="out of range"):
        compile_expression("true", variables=["a"]).evaluate(data)
    assert compile_expression("a", variables=["a"]).evaluate({"a": (1 << 63) - 1}) == (1 << 63) - 1


def test_strings_with_nul_are_refused_not_cut_short() -> None:
    """cel-expr-python hands strings to cel-cpp as C strings: 'my-org\\x00evil' compared equal to
    'my-org', so a claim could pass a condition written for another value."""
    for data in ({"a": "my-org\x00evil"}, {"a": {"k": "my-org\x00evil"}}, {"a": {"k\x00": "v"}}):
        with pytest.raises(CelEvaluationError, match="NUL"):
            compile_expression("a == 'my-org' || true", variables=["a"]).evaluate(data)
