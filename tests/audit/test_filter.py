"""The Logging query language parser and evaluator (keyless.audit.filter), against LogEntry JSON
shaped as Keyless writes it, and fuzzed: any text either parses or is refused with InvalidArgument."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyless.audit import filter as lq
from keyless.errors import InvalidArgument

pytestmark = pytest.mark.store_independent  # runs on the SQLite leg only (tests/conftest.py)

SUBJECT = ("principal://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/github-pool/"
           "subject/repo:my-org/my-repo:ref:refs/heads/main")
ENTRY: dict[str, Any] = {
    "logName": "projects/my-project/logs/cloudaudit.googleapis.com%2Fdata_access",
    "insertId": "abc123",
    "timestamp": "2026-11-23T05:00:00.250000Z",
    "severity": "INFO",
    "resource": {"type": "service_account", "labels": {"project_id": "my-project",
                                                      "email_id": "deploy-sa@my-project.iam.gserviceaccount.com"}},
    "protoPayload": {
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "methodName": "GenerateAccessToken",
        "serviceName": "iam.googleapis.com",
        "authenticationInfo": {"principalSubject": SUBJECT},
        "authorizationInfo": [{"permission": "iam.serviceAccounts.getAccessToken", "granted": True},
                              {"permission": "iam.serviceAccounts.get", "granted": False}],
        "status": {"code": 7, "message": "Denied"},
        "requestMetadata": {"callerIp": "127.0.0.1"},
    },
}


def ok(text: str) -> bool:
    return lq.matches(lq.parse(text), ENTRY)


@pytest.mark.parametrize("text, want", [
    ("", True),
    ('resource.type="service_account"', True),
    ('resource.type = "service_account"', True),
    ("resource.type=service_account", True),
    ('resource.type="SERVICE_ACCOUNT"', False),  # = is exact
    ('resource.type:"SERVICE"', True),  # : is a case-insensitive substring
    ('resource.type!="gcs_bucket"', True),
    ('resource.type!="service_account"', False),
    ("resource.labels.missing!=x", False),  # a missing field is not unequal...
    ("NOT resource.labels.missing=x", True),  # ...but NOT = includes it
    ("resource.labels.project_id:*", True),
    ("resource.labels.missing:*", False),
    ("-resource.labels.missing:*", True),
    # the seed 001 query, lines implicitly ANDed
    ('resource.type="service_account"\nprotoPayload.methodName="GenerateAccessToken"\n'
     'protoPayload.authenticationInfo.principalSubject=~"workloadIdentityPools/github-pool/subject/repo:my-org/my-repo"',
     True),
    ('resource.type="service_account"\nprotoPayload.methodName="GenerateAccessToken"\n'
     'protoPayload.authenticationInfo.principalSubject=~"attribute.repository/my-org/my-repo"', False),
    ('protoPayload.authenticationInfo.principalSubject=~"^principal://"', True),
    ('protoPayload.authenticationInfo.principalSubject!~"^principalSet://"', True),
    ('protoPayload.authenticationInfo.principalSubject=~"(?i)REPO:MY-ORG"', True),
    ('protoPayload.authenticationInfo.principalSubject=~"REPO:MY-ORG"', False),
    # repeated fields: any element
    ('protoPayload.authorizationInfo.permission="iam.serviceAccounts.get"', True),
    ("protoPayload.authorizationInfo.granted=false", True),
    # numbers
    ("protoPayload.status.code=7", True),
    ("protoPayload.status.code>=7 AND protoPayload.status.code<8", True),
    ("protoPayload.status.code>7", False),
    # severity by rank, names case-insensitive, numbers too
    ("severity>=INFO", True), ("severity>=warning", False), ("severity<NOTICE", True), ("severity=200", True),
    ("severity=INFO", True), ("severity!=INFO", False),
    # timestamps compare as time, whatever the offset or precision
    ('timestamp>="2026-11-23T05:00:00Z"', True),
    ('timestamp>"2026-11-23T05:00:00.25Z"', False),
    ('timestamp="2026-11-23T05:00:00.250Z"', True),
    ('timestamp<"2026-11-23T06:00:00.300+01:00"', True),
    ('timestamp<"2026-11-23T06:00:00.200+0100"', False),
    ('timestamp>="2026-11-23"', True),
    # logName, with or without %2F; log_id()
    ('logName="projects/my-project/logs/cloudaudit.googleapis.com%2Fdata_access"', True),
    ('logName="projects/my-project/logs/cloudaudit.googleapis.com/data_access"', True),
    ('logName="projects/my-project/logs/cloudaudit.googleapis.com/activity"', False),
    ('log_id("cloudaudit.googleapis.com/data_access")', True),
    ('NOT log_id("cloudaudit.googleapis.com/activity")', True),
    ('insertId="abc123"', True),
    # quoted segments, snake_case names
    ('protoPayload."@type"="type.googleapis.com/google.cloud.audit.AuditLog"', True),
    ('resource.labels."email_id":"deploy-sa@"', True),
    ('proto_payload.method_name="GenerateAccessToken"', True),
    # global restrictions
    ("GenerateAccessToken", True), ('"my-org/my-repo"', True), ("generateaccesstoken", True), ("unicorn", False),
    ("NOT unicorn", True), ("127.0.0.1", True),
    # boolean structure: NOT binds tightest, then OR, then AND
    ("unicorn OR GenerateAccessToken", True),
    ("unicorn OR GenerateAccessToken AND unicorn", False),  # (unicorn OR G) AND unicorn
    ("GenerateAccessToken AND unicorn OR GenerateAccessToken", True),  # G AND (unicorn OR G)
    ("NOT unicorn OR unicorn", True),
    ("(unicorn OR severity=INFO) AND (NOT (resource.type=x))", True),
    # value groups
    ('resource.type=("gcs_bucket" OR "service_account")', True),
    ('resource.type=("gcs_bucket" OR "project")', False),
    ('protoPayload.authorizationInfo.permission:("getAccessToken" AND "serviceAccounts.get")', True),
])
def test_matches(text: str, want: bool) -> None:
    assert ok(text) is want


@pytest.mark.parametrize("text, fragment", [
    ('a="b" AND', "unexpected end of filter at line 1, column 10"),
    ("a=", "expected a value at line 1, column 3"),
    ("(a=1", "missing ')'"),
    ("a=1)", "unexpected ')' at line 1, column 4"),
    ("()", "empty parentheses"),
    ('"unterminated', "unterminated string at line 1, column 1"),
    ("x=1\n  OR OR y=2", "unexpected OR at line 2, column 6"),
    ("=1", "expected a field name"),
    ('x=~"(a)\\1"', "backreferences"),
    ('x=~"(?=a)"', "lookaround"),
    ('x=~"["', "invalid regular expression"),
    ('x=~"' + "a" * 1001 + '"', "longer than"),
    ("severity>=LOUD", "invalid severity"),
    ('timestamp>="yesterday"', "invalid timestamp"),
    ('sample(insertId, 0.1)', "unsupported function 'sample'"),
    ("log_id(foo)", "log_id() takes one quoted log ID"),
    ("(" * 65 + "a" + ")" * 65, "nested more than 64"),
    ("NOT " * 65 + "a", "nested more than 64"),
    (" ".join(["a"] * 1001), "more than 1000"),
    ("a" * 20_001, "too long"),
    (" OR ".join(['x=~"a"'] * 21), "more than 20 regular expressions"),
])
def test_malformed_filters_say_where(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        lq.parse(text)
    assert fragment in err.value.message
    assert err.value.message.startswith("Unparseable filter:") or "too long" in fragment


def test_seed_002_query_and_conjuncts() -> None:
    tree = lq.parse('timestamp>="2026-11-22T02:38:58.989784Z" AND '
                    'protoPayload.authenticationInfo.principalEmail="app-gsa@PROJECT_ID.iam.gserviceaccount.com"')
    terms = lq.conjuncts(tree)
    assert [t.path for t in terms if isinstance(t, lq.Compare)] == [
        ("timestamp",), ("protoPayload", "authenticationInfo", "principalEmail")]
    assert lq.conjuncts(lq.parse("")) == []


def test_catastrophic_patterns_run_in_linear_time() -> None:
    import time

    tree = lq.parse('protoPayload.methodName=~"^(a+)+$"')
    entry = {"protoPayload": {"methodName": "a" * 50_000 + "!"}}
    start = time.monotonic()
    assert lq.matches(tree, entry) is False
    assert time.monotonic() - start < 1.0


# -- fuzzing -------------------------------------------------------------------------------------

ALPHABET = st.sampled_from(list('abcAND OR NOT()"=!<>:~*-.\\\n\t0123456789xyz_@/%^$[]{}+?|') + ["AND", "OR", "NOT",
                                                                                           "severity", "timestamp",
                                                                                           "log_id(", "protoPayload."])


@settings(max_examples=1500, deadline=None)
@given(st.lists(ALPHABET, max_size=40).map("".join))
def test_fuzz_parser_only_refuses_with_invalid_argument(text: str) -> None:
    try:
        tree = lq.parse(text)
    except InvalidArgument as exc:
        assert "line " in exc.message or "too long" in exc.message
        return
    lq.matches(tree, ENTRY)  # whatever parsed evaluates without error


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_arbitrary_unicode(text: str) -> None:
    try:
        tree = lq.parse(text)
    except InvalidArgument:
        return
    lq.matches(tree, ENTRY)


@settings(max_examples=300, deadline=None)
@given(st.recursive(
    st.sampled_from(['resource.type="service_account"', "severity>=INFO", "unicorn", 'insertId="zzz"',
                     'protoPayload.methodName:"token"', "protoPayload.status.code<3"]),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda t: f"({t[0]} OR {t[1]})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]} AND {t[1]})"),
        inner.map(lambda t: f"NOT {t}")),
    max_leaves=12))
def test_fuzz_boolean_structure_agrees_with_python(text: str) -> None:
    """Fully parenthesised filters evaluate as the same expression written in Python."""
    leaf = {'resource.type="service_account"': True, "severity>=INFO": True, "unicorn": False,
            'insertId="zzz"': False, 'protoPayload.methodName:"token"': True, "protoPayload.status.code<3": False}
    expr = text
    for k, v in leaf.items():
        expr = expr.replace(k, str(v))
    expr = expr.replace("NOT", "not").replace("AND", "and").replace("OR", "or")
    assert ok(text) is eval(expr)  # noqa: S307 - built only from the literals above
