"""STS's two request encodings and its introspection (issue #19): `v1/token` takes the RFC 8693 form
and the discovery document's JSON (`GoogleIdentityStsV1ExchangeTokenRequest`) with the same
answers and OAuth-shaped refusals; hostile JSON is refused, never a 500; `v1/introspect` (RFC
7662) describes STS's tokens and nothing else; a universe's `//iam.D/...` audiences name the same
providers as `//iam.googleapis.com/...`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keyless.tokens import idp
from tests.api.helpers import server_state, token_for_service_account, token_for_user
from tests.conftest import KeylessServer, fresh_database_url
from tests.e2e.test_token_exchange import AUDIENCE, DEPLOY_SA, POOL, PROVIDER

UNIVERSE = "keyless.test"
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
JWT = "urn:ietf:params:oauth:token-type:jwt"
CLOUD = "https://www.googleapis.com/auth/cloud-platform"
SUBJECT = f"principal://iam.googleapis.com/{POOL}/subject/repo:my-org/my-repo:ref:refs/heads/main"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessServer]:
    """Seed 001's federation (`keyless quickstart`) on a server with a universe domain."""
    server = KeylessServer(tmp_path_factory.mktemp("sts-wire") / "data", fresh_database_url(),
                           "--allow-insecure-issuers", "--universe-domain", UNIVERSE)
    made = server.keyless("quickstart", "--output-file", str(server.data_dir.parent / "quickstart.json"))
    assert made.returncode == 0, made.stderr
    yield server
    server.stop()


def github_jwt(srv: KeylessServer, repository: str = "my-org/my-repo") -> str:
    return idp.github_token(server_state(srv).keys, srv.base_url, repository=repository, ref="refs/heads/main",
                            audience=f"https:{AUDIENCE}")


def camel(srv: KeylessServer, **over: Any) -> dict[str, Any]:
    """What google-github-actions/auth v3 posts (its WorkloadIdentityFederationClient.getToken)."""
    body = {"audience": AUDIENCE, "grantType": GRANT, "requestedTokenType": ACCESS, "scope": CLOUD,
            "subjectTokenType": JWT, "subjectToken": github_jwt(srv)}
    body.update(over)
    return {k: v for k, v in body.items() if v is not ...}


def post_json(srv: KeylessServer, body: Any, path: str = "/sts/v1/token",
              content_type: str = "application/json") -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(srv.base_url + path, content=raw, headers={"Content-Type": content_type}, timeout=30)


def refused(r: httpx.Response, error: str, fragment: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) == {"error", "error_description"} and body["error"] == error, body
    assert fragment in body["error_description"], body


def introspect(srv: KeylessServer, token: str, *, as_json: bool = False) -> dict[str, Any]:
    if as_json:
        r = post_json(srv, {"token": token, "tokenTypeHint": ACCESS}, "/sts/v1/introspect")
    else:  # gcloud's request: a form, its OAuth client in HTTP Basic (googlecloudsdk.core.credentials.introspect)
        r = httpx.post(f"{srv.base_url}/sts/v1/introspect", data={"token": token, "token_type_hint": ACCESS},
                       auth=("32555940559.apps.googleusercontent.com", "ZmssLNjJy2998hD4CTg2ejr2"), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_json_and_form_exchanges_give_the_same_answer(srv: KeylessServer) -> None:
    form = httpx.post(f"{srv.base_url}/sts/v1/token", timeout=30, data={
        "grant_type": GRANT, "audience": AUDIENCE, "scope": CLOUD, "requested_token_type": ACCESS,
        "subject_token": github_jwt(srv), "subject_token_type": JWT})
    answers = [form, post_json(srv, camel(srv)),
               post_json(srv, camel(srv), content_type="application/json; charset=utf-8"),
               # Google's JSON parser takes the proto names too
               post_json(srv, {"grant_type": GRANT, "audience": AUDIENCE, "subject_token": github_jwt(srv),
                               "subject_token_type": JWT, "scope": CLOUD, "options": None})]
    for r in answers:
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"access_token", "issued_token_type", "token_type", "expires_in"}
        assert body["issued_token_type"] == ACCESS and body["token_type"] == "Bearer"
        assert 3500 <= body["expires_in"] <= 3600
        info = introspect(srv, body["access_token"])
        assert info["active"] is True and info["username"] == SUBJECT and info["scope"] == CLOUD


def test_json_refusals_are_the_forms(srv: KeylessServer) -> None:
    refused(post_json(srv, camel(srv, grantType=...)), "unsupported_grant_type", "Unsupported grant_type: ''")
    refused(post_json(srv, camel(srv, audience=AUDIENCE.replace("github-provider", "nope-provider"))),
            "invalid_target", 'The target service indicated by the "audience" parameters is invalid')
    refused(post_json(srv, camel(srv, subjectToken=github_jwt(srv, "evil-org/my-repo"))),
            "unauthorized_client", "rejected by the attribute condition")
    refused(post_json(srv, camel(srv, subjectToken=...)), "invalid_request", 'Missing required parameter: "subject_token"')
    # the Content-Type decides: the same JSON sent as a form is a form without a grant type
    refused(post_json(srv, camel(srv), content_type="application/x-www-form-urlencoded"),
            "unsupported_grant_type", "Unsupported grant_type: ''")


@pytest.mark.parametrize("body, fragment", [
    ({"grantType": GRANT, "subject_token_kind": "x"},
     'Invalid JSON payload received. Unknown name "subject_token_kind": Cannot find field.'),
    ({"grantType": GRANT, "audience": 123}, "Invalid value at 'audience' (TYPE_STRING), 123"),
    ({"grantType": GRANT, "options": {"accessBoundary": {}}}, "Invalid value at 'options' (TYPE_STRING), {"),
    ([{"grantType": GRANT}], "Invalid JSON payload received. Root element must be a message."),
    (b'{"grantType": "' + GRANT.encode() + b'",', "Invalid JSON payload received. Unexpected token"),
    (b"\xff\xfe{}", "Invalid JSON payload received."),
    # nesting past the parser's recursion limit, inside the size bound
    (b'{"audience":' + b"[" * 30000 + b"]" * 30000 + b"}", "Invalid JSON payload received. The JSON is nested"),
])
def test_hostile_json_is_refused_and_the_server_carries_on(srv: KeylessServer, body: Any, fragment: str) -> None:
    refused(post_json(srv, body), "invalid_request", fragment)
    if isinstance(body, bytes) or isinstance(body, list):  # no message at all: introspect refuses it alike
        refused(post_json(srv, body, "/sts/v1/introspect"), "invalid_request", fragment)
    assert post_json(srv, camel(srv)).status_code == 200


def test_oversized_bodies_are_refused_before_parsing(srv: KeylessServer) -> None:
    huge = json.dumps(camel(srv, subjectToken="x" * (70 * 1024))).encode()
    refused(post_json(srv, huge), "invalid_request", "too large")
    refused(post_json(srv, huge, "/sts/v1/introspect"), "invalid_request", "too large")


def test_json_options_string_is_accepted(srv: KeylessServer) -> None:
    """`options` is a JSON string in the schema (Credential Access Boundaries travel in it)."""
    r = post_json(srv, camel(srv, options=json.dumps({"userProject": "my-project"})))
    assert r.status_code == 200, r.text


def test_introspect_describes_sts_tokens_only(srv: KeylessServer) -> None:
    token = post_json(srv, camel(srv)).json()["access_token"]
    before = int(time.time())
    for as_json in (False, True):
        info = introspect(srv, token, as_json=as_json)
        assert set(info) == {"active", "iss", "sub", "username", "scope", "iat", "exp"}
        assert info["active"] is True and info["iss"] == "https://sts.googleapis.com"
        assert info["username"] == info["sub"] == SUBJECT and info["scope"] == CLOUD
        assert int(info["iat"]) <= before + 1 and 3500 <= int(info["exp"]) - before <= 3601
    # not STS's tokens, forged or garbage ones: inactive, and nothing else said
    owner, account = srv.owner_token, token_for_service_account(srv, DEPLOY_SA)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for other in (owner, account, token_for_user(srv, "alice@example.com"), tampered, "not-a-token",
                  github_jwt(srv), "ya29." + "x" * 20000):
        assert introspect(srv, other) == {"active": False}
    refused(httpx.post(f"{srv.base_url}/sts/v1/introspect", data={"token_type_hint": ACCESS}), "invalid_request",
            'Missing required parameter: "token"')
    refused(post_json(srv, {"token": token, "tokenType": ACCESS}, "/sts/v1/introspect"), "invalid_request",
            'Unknown name "tokenType"')


def test_introspect_answers_as_sts_googleapis_com(srv: KeylessServer) -> None:
    """gcloud's default introspection URL is https://sts.googleapis.com/v1/introspect."""
    token = post_json(srv, camel(srv)).json()["access_token"]
    r = httpx.post(f"{srv.base_url}/v1/introspect", data={"token": token}, headers={"Host": "sts.googleapis.com"})
    assert r.status_code == 200 and r.json()["username"] == SUBJECT, r.text


@pytest.mark.parametrize("audience", [f"//iam.{UNIVERSE}/{PROVIDER}", f"//iam.{UNIVERSE}:8443/{PROVIDER}"])
def test_universe_audiences_name_the_same_provider(srv: KeylessServer, audience: str) -> None:
    r = post_json(srv, camel(srv, audience=audience))
    assert r.status_code == 200, r.text
    assert introspect(srv, r.json()["access_token"])["username"] == SUBJECT


@pytest.mark.parametrize("audience", [
    f"//iam.other.test/{PROVIDER}",  # another universe
    f"//iam.{UNIVERSE}x/{PROVIDER}",  # a longer host that starts like ours
    f"//iam.{UNIVERSE}:/{PROVIDER}", f"//iam.{UNIVERSE}:99999x/{PROVIDER}", f"//iam.{UNIVERSE}:１２/{PROVIDER}",
    f"//iam.{UNIVERSE}:443", f"//iam.{UNIVERSE}{PROVIDER}",
])
def test_other_hosts_are_not_audiences(srv: KeylessServer, audience: str) -> None:
    refused(post_json(srv, camel(srv, audience=audience)), "invalid_request", 'Invalid value for "audience"')


def test_discovery_client_exchanges_with_json(srv: KeylessServer) -> None:
    """googleapiclient's `sts.v1.token` from its bundled discovery document: it joins the method's
    path (`v1/token`) onto `api_endpoint` with urljoin, so the endpoint ends in `/sts/`; it posts the
    request message as JSON (with `?alt=json`), and its refusals surface as HttpError."""
    from google.auth.credentials import AnonymousCredentials
    from googleapiclient.discovery import build
    from googleapiclient.errors import HttpError

    sts = build("sts", "v1", static_discovery=True, credentials=AnonymousCredentials(),
                client_options={"api_endpoint": f"{srv.base_url}/sts/"})
    body = camel(srv)
    answer = sts.v1().token(body=body).execute()
    assert answer["issued_token_type"] == ACCESS and answer["token_type"] == "Bearer"
    assert introspect(srv, answer["access_token"])["username"] == SUBJECT
    with pytest.raises(HttpError) as refusal:
        sts.v1().token(body={**body, "audience": AUDIENCE.replace("github-provider", "nope-provider")}).execute()
    assert refusal.value.resp.status == 400
    assert json.loads(refusal.value.content)["error"] == "invalid_target"


def test_universe_scopes_are_named_as_googles(srv: KeylessServer) -> None:
    """google-github-actions/auth asks for `{www endpoint}/auth/cloud-platform`, its universe's
    name for cloud-platform; the token carries Google's name (what every API checks). Other scopes,
    and look-alikes of the universe's host, pass through as they came."""
    asked = [f"https://www.{UNIVERSE}/auth/cloud-platform", f"https://www.{UNIVERSE}:8443/auth/devstorage.read_only",
             f"https://www.{UNIVERSE}x/auth/iam", f"https://www.{UNIVERSE}:80x/auth/iam",
             f"https://www.{UNIVERSE}/other", "https://www.googleapis.com/auth/userinfo.email"]
    r = post_json(srv, camel(srv, scope=" ".join(asked)))
    assert r.status_code == 200, r.text
    assert introspect(srv, r.json()["access_token"])["scope"].split() == [
        CLOUD, "https://www.googleapis.com/auth/devstorage.read_only", f"https://www.{UNIVERSE}x/auth/iam",
        f"https://www.{UNIVERSE}:80x/auth/iam", f"https://www.{UNIVERSE}/other",
        "https://www.googleapis.com/auth/userinfo.email"]
