"""Seed 001's two principalSubject queries: why they find nothing and the filter that does
(keyless.audit.subject_hint), checked by running every suggested filter with the real filter
language over entries written as Keyless writes them."""

from __future__ import annotations

from typing import Any

from keyless.audit import filter as logging_filter
from keyless.audit.subject_hint import Provider, hint, misplaced, replacements, suggested_filters

POOL = "projects/123456789/locations/global/workloadIdentityPools/github-pool"
GITHUB = Provider(pool=POOL, mapping={"google.subject": "assertion.sub", "attribute.repository": "assertion.repository",
                                      "attribute.ref": "assertion.ref"})
AWS = Provider(pool="projects/123456789/locations/global/workloadIdentityPools/aws-pool",
               mapping={"google.subject": "assertion.arn", "attribute.role": "assertion.arn.extract('/{role}/')",
                        "attribute.account": "assertion.account"})
GAT = 'resource.type="service_account"\nprotoPayload.methodName="GenerateAccessToken"\n'
SEED_POOL = GAT + f'protoPayload.authenticationInfo.principalSubject=~"principalSet://iam.googleapis.com/{POOL}"'
SEED_REPO = GAT + 'protoPayload.authenticationInfo.principalSubject=~"attribute.repository/my-org/my-repo"'


def _entry(subject: str) -> dict[str, Any]:
    return {"resource": {"type": "service_account"},
            "protoPayload": {"methodName": "GenerateAccessToken", "authenticationInfo": {"principalSubject": subject}}}


LOG = [_entry(f"principal://iam.googleapis.com/{POOL}/subject/repo:my-org/my-repo:ref:refs/heads/main"),
       _entry(f"principal://iam.googleapis.com/{POOL}/subject/repo:my-org/my-repo:ref:refs/heads/dev"),
       _entry(f"principal://iam.googleapis.com/{POOL}/subject/repo:my-org/my-repo-2:ref:refs/heads/main"),
       _entry("serviceAccount:my-project.svc.id.goog[production/my-app-ksa]")]


def count(text: str) -> int:
    node = logging_filter.parse(text)
    return sum(logging_filter.matches(node, e) for e in LOG)


def test_the_seed_queries_find_nothing_and_the_rewritten_ones_find_their_calls() -> None:
    assert count(SEED_POOL) == 0 and count(SEED_REPO) == 0
    pool_hint = hint(SEED_POOL, lambda: [GITHUB], count)
    assert pool_hint is not None and "attributes are not logged" in pool_hint
    [suggested] = suggested_filters(pool_hint)
    assert suggested == GAT + ('protoPayload.authenticationInfo.principalSubject=~"^principal://iam.googleapis.com/'
                               f'{POOL}/subject/"')
    assert "finds 3 entries" in pool_hint and count(suggested) == 3
    repo_hint = hint(SEED_REPO, lambda: [GITHUB, AWS], count)
    assert repo_hint is not None
    [suggested] = suggested_filters(repo_hint)
    assert suggested.endswith(f'principalSubject=~"^principal://iam.googleapis.com/{POOL}/subject/repo:my-org/my-repo:"')
    assert count(suggested) == 2  # my-repo's two branches, not my-repo-2


def test_ref_and_same_claim_attributes_and_snake_case_fields() -> None:
    text = GAT + f'proto_payload.authentication_info.principal_subject:"principalSet://iam.googleapis.com/{POOL}/' \
                 'attribute.ref/refs/heads/dev"'
    [m] = misplaced(text)
    assert (m.pool_id, m.attribute) == ("github-pool", ("ref", "refs/heads/dev"))
    [rewritten] = replacements(m, lambda: [GITHUB, AWS])  # the pool named narrows to its providers
    assert count(text.replace(m.text, rewritten)) == 1
    same = Provider(pool=POOL, mapping={"google.subject": "assertion.sub", "attribute.sub": "assertion.sub"})
    [m] = misplaced(GAT + 'protoPayload.authenticationInfo.principalSubject="attribute.sub/repo:my-org/my-repo-2:'
                          'ref:refs/heads/main"')
    [rewritten] = replacements(m, lambda: [same])
    assert rewritten.endswith('/subject/repo:my-org/my-repo-2:ref:refs/heads/main$"')


def test_no_hint_for_queries_that_are_not_of_that_kind_and_none_invented() -> None:
    assert hint(GAT + 'protoPayload.authenticationInfo.principalSubject=~"/subject/repo:x"', lambda: [GITHUB],
                count) is None
    assert hint('protoPayload.resourceName=~"principalSet://x"', lambda: [GITHUB], count) is None
    # an attribute no provider puts into google.subject: said so, no filter offered
    text = GAT + 'protoPayload.authenticationInfo.principalSubject=~"attribute.account/1234"'
    said = hint(text, lambda: [GITHUB, AWS], count)
    assert said is not None and "maps attribute.account into google.subject" in said and "finds" not in said
    # a rewritten query that still finds nothing says so
    text = GAT + 'protoPayload.authenticationInfo.principalSubject=~"attribute.repository/other/repo"'
    said = hint(text, lambda: [GITHUB], count)
    assert said is not None and said.endswith("still finds nothing.")


def test_values_are_never_spliced_into_a_regex_unescaped() -> None:
    """A value with regex syntax (or a quote) would change what the suggested filter means:
    such values get no rewrite rather than a wrong one."""
    for value in ("(a+)+", "x|.*", 'x\\" OR resource.type:\\"'):
        text = GAT + f'protoPayload.authenticationInfo.principalSubject=~"attribute.repository/{value}"'
        for m in misplaced(text):
            assert replacements(m, lambda: [GITHUB]) == []


def test_a_long_filter_costs_a_bounded_number_of_queries() -> None:
    """Each rewritten filter is a query: a filter made of many such comparisons is not an amplifier."""
    many = " OR ".join(f'protoPayload.authenticationInfo.principalSubject=~"attribute.ref/refs/heads/b{i}"'
                       for i in range(200))
    runs: list[str] = []
    provider = Provider(pool=POOL, mapping={f"attribute.{n}": "assertion.sub" for n in ("ref", "x", "y")}
                        | {"google.subject": "assertion.sub"})
    said = hint(many, lambda: [provider, GITHUB] * 20, lambda text: runs.append(text) or 0)
    assert said is not None and 0 < len(runs) <= 4 * 8
