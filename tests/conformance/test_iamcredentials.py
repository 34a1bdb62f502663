"""IAM Service Account Credentials (iamcredentials.googleapis.com v1) through Google's
discovery-based client: each served method called and its answer checked against its response
schema (issue #19). STS (sts.googleapis.com v1 token) is driven with the discovery client by
tests of its own (tests/e2e)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance import harness
from tests.conformance.harness import Flow, Step

DOC = "iamcredentials.v1"
PROJECT = "conformance-creds"
EMAIL = f"creds-target@{PROJECT}.iam.gserviceaccount.com"
NAME = f"projects/-/serviceAccounts/{EMAIL}"


def claims(jwt: str) -> dict[str, Any]:
    part = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


FLOW = Flow(DOC, [
    Step("iamcredentials.projects.serviceAccounts.generateAccessToken", lambda c: {"name": NAME, "body": {
        "scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "600s", "delegates": []}},
         present=["accessToken", "expireTime"]),
    Step("iamcredentials.projects.serviceAccounts.generateIdToken", lambda c: {"name": NAME, "body": {
        "audience": "https://example.com", "includeEmail": True, "delegates": []}}, present=["token"],
         check=lambda c, a: claims(a["token"])["email"] == EMAIL or pytest.fail(str(a))),
    Step("iamcredentials.projects.serviceAccounts.signBlob", lambda c: {"name": NAME, "body": {
        "payload": base64.b64encode(b"conformance").decode()}}, present=["keyId", "signedBlob"]),
    Step("iamcredentials.projects.serviceAccounts.signJwt", lambda c: {"name": NAME, "body": {
        "payload": json.dumps({"sub": EMAIL, "aud": "https://example.com", "iat": 2_000_000_000})}},
         present=["keyId", "signedJwt"], check=lambda c, a: claims(a["signedJwt"])["sub"] == EMAIL
         or pytest.fail(str(a))),
    # no account is bound to locations here: the no-op boundary google-auth knows (its "0x0")
    Step("iamcredentials.projects.serviceAccounts.getAllowedLocations", lambda c: {"name": NAME},
         present=["encodedLocations"], check=lambda c, a: a == {"encodedLocations": "0x0"} or pytest.fail(str(a))),
    Step("iamcredentials.projects.serviceAccounts.getAllowedLocations",
         lambda c: {"name": f"projects/-/serviceAccounts/nobody@{PROJECT}.iam.gserviceaccount.com"}, error=404),
], not_yet={})


@pytest.fixture(scope="module")
def flowed(client: Callable[[str], Any]) -> dict[str, Any]:
    crm, iam = client("cloudresourcemanager.v1"), client("iam.v1")
    crm.projects().create(body={"projectId": PROJECT}).execute()
    iam.projects().serviceAccounts().create(name=f"projects/{PROJECT}", body={"accountId": "creds-target"}).execute()
    # roles/owner does not mint tokens for a service account (as on Google): Token Creator does
    iam.projects().serviceAccounts().setIamPolicy(resource=f"projects/{PROJECT}/serviceAccounts/{EMAIL}", body={
        "policy": {"bindings": [{"role": "roles/iam.serviceAccountTokenCreator",
                                 "members": ["user:owner@keyless.dev"]}]}}).execute()
    return harness.run(client(DOC), FLOW, {})


def test_every_served_method_has_a_step() -> None:
    assert not FLOW.unflowed(harness.served_methods(DOC))


def test_flow(flowed: dict[str, Any]) -> None:
    assert flowed["called"] == [s.method for s in FLOW.steps]


@pytest.mark.parametrize("method_id", harness.body_methods(FLOW))
def test_every_defined_request_field_is_known(client: Callable[[str], Any], flowed: dict[str, Any],
                                              method_id: str) -> None:
    harness.probe_fields(client(DOC), FLOW, method_id, flowed)
