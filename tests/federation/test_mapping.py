"""Attribute mappings and conditions: validated like Google's API, applied like Google's STS."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyless.errors import InvalidArgument, PermissionDenied
from keyless.federation.mapping import (
    CONDITION_REJECTED,
    DEFAULT_AWS_ATTRIBUTE_MAPPING,
    apply,
    compile_mapping,
)

pytestmark = pytest.mark.store_independent  # runs on the SQLite leg only (tests/conftest.py)

SEED_MAPPING = {
    "google.subject": "assertion.sub",
    "attribute.repository": "assertion.repository",
    "attribute.ref": "assertion.ref",
}
ORG_CONDITION = "assertion.repository_owner == 'my-org'"
BRANCH_CONDITION = ("assertion.repository_owner == 'my-org' && (assertion.ref == 'refs/heads/main' || "
                    "assertion.ref.startsWith('refs/heads/release/'))")
AWS_CONDITION = "assertion.arn.startsWith('arn:aws:sts::123456789012:assumed-role/allowed-role/')"


def github(ref: str = "refs/heads/main", owner: str = "my-org") -> dict[str, object]:
    return {"iss": "https://token.actions.githubusercontent.com", "sub": f"repo:{owner}/app:ref:{ref}",
            "repository": f"{owner}/app", "repository_owner": owner, "ref": ref, "exp": 1_900_000_000}


def test_seed_mapping_and_org_condition() -> None:
    compiled = compile_mapping(SEED_MAPPING, ORG_CONDITION, provider_type="oidc")
    identity = apply(compiled, github())
    assert identity.subject == "repo:my-org/app:ref:refs/heads/main"
    assert identity.attributes == {"repository": "my-org/app", "ref": "refs/heads/main"}
    assert identity.groups == ()
    with pytest.raises(PermissionDenied) as exc:
        apply(compiled, github(owner="evil-org"))
    assert exc.value.message == "The given credential is rejected by the attribute condition."


@pytest.mark.parametrize(("ref", "allowed"), [
    ("refs/heads/main", True), ("refs/heads/release/1.2", True),
    ("refs/heads/feature", False), ("refs/tags/v1", False),
])
def test_branch_condition(ref: str, allowed: bool) -> None:
    compiled = compile_mapping(SEED_MAPPING, BRANCH_CONDITION, provider_type="oidc")
    if allowed:
        assert apply(compiled, github(ref)).attributes["ref"] == ref
    else:
        with pytest.raises(PermissionDenied, match=CONDITION_REJECTED):
            apply(compiled, github(ref))


def test_aws_defaults_and_role_condition() -> None:
    compiled = compile_mapping({}, AWS_CONDITION, provider_type="aws")
    assert compiled.attribute_mapping == DEFAULT_AWS_ATTRIBUTE_MAPPING
    arn = "arn:aws:sts::123456789012:assumed-role/allowed-role/i-0abc"
    identity = apply(compiled, {"arn": arn, "account": "123456789012"})
    assert identity.subject == arn
    assert identity.attributes == {"aws_role": "arn:aws:sts::123456789012:assumed-role/allowed-role"}
    with pytest.raises(PermissionDenied, match=CONDITION_REJECTED):
        apply(compiled, {"arn": "arn:aws:sts::123456789012:assumed-role/other-role/i-0abc"})
    user = apply(compile_mapping(None, None, provider_type="aws"), {"arn": "arn:aws:iam::123456789012:user/bob"})
    assert user.attributes["aws_role"] == "arn:aws:iam::123456789012:user/bob"


def test_condition_may_read_google_and_attribute() -> None:
    compiled = compile_mapping({**SEED_MAPPING, "google.groups": "assertion.groups"},
                               "'admins' in google.groups && attribute.repository == 'my-org/app'",
                               provider_type="oidc")
    assert apply(compiled, {**github(), "groups": ["admins"]}).groups == ("admins",)
    with pytest.raises(PermissionDenied, match=CONDITION_REJECTED):
        apply(compiled, {**github(), "groups": ["dev"]})


def test_condition_error_or_non_bool_rejects() -> None:
    missing = compile_mapping(SEED_MAPPING, "assertion.environment == 'prod'", provider_type="oidc")
    with pytest.raises(PermissionDenied, match=CONDITION_REJECTED):
        apply(missing, github())
    not_bool = compile_mapping(SEED_MAPPING, "assertion.ref", provider_type="oidc")
    with pytest.raises(PermissionDenied, match=CONDITION_REJECTED):
        apply(not_bool, github())


def test_extract_in_mapping() -> None:
    compiled = compile_mapping({"google.subject": "assertion.sub",
                                "attribute.repo": "assertion.sub.extract('repo:{repo}:')"}, None,
                               provider_type="oidc")
    assert apply(compiled, github()).attributes["repo"] == "my-org/app"


# --- validation on create/patch ---------------------------------------------------------------------

def test_oidc_requires_google_subject() -> None:
    with pytest.raises(InvalidArgument, match="google.subject"):
        compile_mapping({}, None, provider_type="oidc")
    with pytest.raises(InvalidArgument, match="google.subject"):
        compile_mapping({"attribute.repository": "assertion.repository"}, None, provider_type="oidc")
    with pytest.raises(InvalidArgument, match="google.subject"):
        compile_mapping({"attribute.x": "assertion.x"}, None, provider_type="aws")


@pytest.mark.parametrize("key", [
    "attribute.Repo", "attribute.", "attribute.a-b", "attribute." + "a" * 101, "google.email", "repository",
    "subject",
])
def test_bad_attribute_names(key: str) -> None:
    with pytest.raises(InvalidArgument, match="Invalid attribute mapping key"):
        compile_mapping({"google.subject": "assertion.sub", key: "assertion.x"}, None, provider_type="oidc")


def test_good_attribute_names_and_custom_limit() -> None:
    ok = {"google.subject": "assertion.sub", "attribute." + "a" * 100: "assertion.x",
          "google.display_name": "assertion.name", "google.posix_username": "assertion.u"}
    compile_mapping(ok, None, provider_type="oidc")
    many = {"google.subject": "assertion.sub"} | {f"attribute.a{i}": "assertion.sub" for i in range(50)}
    compile_mapping(many, None, provider_type="oidc")
    with pytest.raises(InvalidArgument, match="at most 50"):
        compile_mapping(many | {"attribute.a50": "assertion.sub"}, None, provider_type="oidc")


def test_compile_errors_surface_the_compiler_message() -> None:
    with pytest.raises(InvalidArgument) as exc:
        compile_mapping({"google.subject": "assertion.sub +"}, None, provider_type="oidc")
    assert exc.value.message.startswith("Invalid attribute mapping expression for 'google.subject': "
                                        "ERROR: <input>:1:16: Syntax error:")
    with pytest.raises(InvalidArgument, match=r"Invalid attribute condition: ERROR: <input>:1:8: undeclared reference to 'request.time'"):
        compile_mapping(SEED_MAPPING, "request.time > 0", provider_type="oidc")
    with pytest.raises(InvalidArgument, match="undeclared reference to 'google.subject'"):
        compile_mapping({"google.subject": "google.subject"}, None, provider_type="oidc")


def test_length_limits() -> None:
    with pytest.raises(InvalidArgument, match="2048"):
        compile_mapping({"google.subject": "assertion.sub + '" + "a" * 2048 + "'"}, None, provider_type="oidc")
    with pytest.raises(InvalidArgument, match="4096"):
        compile_mapping(SEED_MAPPING, "true || " * 600 + "true", provider_type="oidc")
    with pytest.raises(InvalidArgument, match="must not be empty"):
        compile_mapping({"google.subject": " "}, None, provider_type="oidc")


# --- the subject and the mapped values --------------------------------------------------------------

def test_subject_limits() -> None:
    compiled = compile_mapping({"google.subject": "assertion.sub"}, None, provider_type="oidc")
    assert apply(compiled, {"sub": "x" * 127}).subject == "x" * 127
    with pytest.raises(InvalidArgument) as exc:
        apply(compiled, {"sub": "é" * 64})  # 128 bytes
    assert exc.value.message == "The size of mapped attribute google.subject exceeds the 127 bytes limit."
    with pytest.raises(InvalidArgument, match="non-empty"):
        apply(compiled, {"sub": ""})


def test_mapping_errors_are_clear() -> None:
    compiled = compile_mapping({**SEED_MAPPING, "attribute.env": "assertion.environment"}, None,
                               provider_type="oidc")
    with pytest.raises(InvalidArgument, match="attribute.env.*no such key: environment"):
        apply(compiled, github())
    numeric = compile_mapping({"google.subject": "assertion.exp"}, None, provider_type="oidc")
    with pytest.raises(InvalidArgument, match="must be a string"):
        apply(numeric, github())


def test_total_mapped_size_limit() -> None:
    compiled = compile_mapping({"google.subject": "assertion.sub", "attribute.big": "assertion.big"}, None,
                               provider_type="oidc")
    assert apply(compiled, {"sub": "s", "big": "b" * 8000}).attributes["big"] == "b" * 8000
    with pytest.raises(InvalidArgument, match="8KB"):
        apply(compiled, {"sub": "s", "big": "b" * 9000})


def test_hostile_claims() -> None:
    compiled = compile_mapping(SEED_MAPPING, "assertion.sub.matches('^(a+)+$')", provider_type="oidc")
    with pytest.raises(PermissionDenied):
        apply(compiled, {**github(), "sub": "a" * 100_000 + "!"})
    deep: dict[str, object] = {}
    cur = deep
    for _ in range(10_000):
        cur["k"] = {}
        cur = cur["k"]  # type: ignore[assignment]
    with pytest.raises(InvalidArgument, match="nests deeper"):
        apply(compiled, {**github(), "x": deep})


_VALUES = st.one_of(st.text(max_size=6), st.sampled_from(["x", "é", "\ud800", "", "a b"]), st.integers(), st.none(),
                    st.booleans(), st.lists(st.text(max_size=3), max_size=3), st.floats(allow_nan=False))


def _outcome(compiled, assertion: dict[str, object]) -> object:  # type: ignore[no-untyped-def]
    try:
        return apply(compiled, assertion)
    except (InvalidArgument, PermissionDenied) as exc:
        return type(exc), exc.message


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(st.sampled_from(["sub", "repo", "org"]), _VALUES, max_size=3))
def test_claim_selections_read_directly_give_what_cel_gives(assertion: dict[str, object]) -> None:
    """`assertion.NAME` mappings skip the CEL runtime for ASCII strings: same identity, same errors."""
    compiled = compile_mapping({"google.subject": "assertion.sub", "attribute.repo": " assertion . repo ",
                                "google.groups": "assertion.org"}, None, provider_type="oidc")
    assert [claim for _, _, claim in compiled.programs] == ["sub", "repo", "org"]
    through_cel = dataclasses.replace(compiled, programs=tuple((k, p, None) for k, p, _ in compiled.programs))
    assert _outcome(compiled, assertion) == _outcome(through_cel, assertion)


def test_only_bare_claim_selections_are_read_directly() -> None:
    compiled = compile_mapping({"google.subject": "assertion.sub", "attribute.a": "assertion.sub + 'x'",
                                "attribute.b": "assertion['sub']", "attribute.c": "assertion.sub.lowerAscii()"},
                               None, provider_type="oidc")
    assert [claim for _, _, claim in compiled.programs] == ["sub", None, None, None]
    assert apply(compiled, {"sub": "ABC"}).attributes == {"a": "ABCx", "b": "ABC", "c": "abc"}
