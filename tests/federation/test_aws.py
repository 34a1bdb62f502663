"""The AWS subject-token verifier, driven as STS drives it: google-auth signs, moto plays AWS STS.

moto runs in-process with request authentication on, so it really checks SigV4 signatures. Stock moto
hashes an empty body as its parsed query parameters (research/google-auth-clients.md section 2), so
every valid GetCallerIdentity that google-auth builds would fail; the fixture patches that one method.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
import requests
from botocore.awsrequest import AWSRequest
from google.auth import aws
from google.auth.transport.requests import Request
from moto.iam import access_control
from moto.server import ThreadedMotoServer

from keyless.errors import InvalidArgument
from keyless.federation.providers.aws import MAX_TOKEN_BYTES, AwsVerifier, parse_caller_identity
from keyless.federation.providers.oidc import SubjectTokenRejected

pytestmark = pytest.mark.store_independent  # no store: the SQLite leg only (tests/conftest.py)

ACCOUNT = "123456789012"  # moto's default account
AUDIENCE = "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/aws-pool/providers/aws-prov"
REGION = "us-east-1"
VERIFY_URL = "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"

# -- moto as AWS STS -------------------------------------------------------------------------------


def _create_aws_request_raw_body(self: Any) -> AWSRequest:
    """moto's IAMRequestBase._create_aws_request, hashing the raw body (empty) rather than the query."""
    signed = self._get_string_between("SignedHeaders=", ",", self._headers["Authorization"]).split(";")
    headers = self._create_headers_for_aws_request(signed, self._headers)
    request = AWSRequest(method=self._method, url=self._path, data=self._body, headers=headers)
    request.context["timestamp"] = headers["X-Amz-Date"]
    return request


@dataclass(frozen=True)
class Aws:
    endpoint: str
    user_key: tuple[str, str]  # access key id, secret
    user_id: str
    session: tuple[str, str, str]  # id, secret, session token of ci-role/build-42


@pytest.fixture(scope="module")
def moto() -> Iterator[Aws]:
    patch = pytest.MonkeyPatch()
    patch.setattr(access_control.IAMRequestBase, "_create_aws_request", _create_aws_request_raw_body)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto's backends are process-global: start from empty even if another module used them
    requests.post(f"{endpoint}/moto-api/reset", timeout=5).raise_for_status()
    try:
        admin = {"endpoint_url": endpoint, "region_name": REGION, "aws_access_key_id": "testing",
                 "aws_secret_access_key": "testing"}
        iam = boto3.client("iam", **admin)
        user_id = iam.create_user(UserName="gha-runner")["User"]["UserId"]
        key = iam.create_access_key(UserName="gha-runner")["AccessKey"]
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                          "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]}
        role = iam.create_role(RoleName="ci-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
        sts = boto3.client("sts", endpoint_url=endpoint, region_name=REGION,
                           aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
        creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="build-42")["Credentials"]
        # From here on moto authenticates every request (research doc: POST /moto-api/reset-auth, body 0).
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=5).raise_for_status()
        yield Aws(endpoint, (key["AccessKeyId"], key["SecretAccessKey"]), user_id,
                  (creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]))
    finally:
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=5)
        server.stop()
        patch.undo()


class RecordingTransport(httpx.BaseTransport):
    """Counts requests; forwards them to a real transport, or refuses when there is none."""

    def __init__(self, forward: bool = True) -> None:
        self.requests: list[httpx.Request] = []
        self._inner = httpx.HTTPTransport() if forward else None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self._inner is None:
            raise AssertionError(f"unexpected request to {request.url}")
        return self._inner.handle_request(request)


@pytest.fixture
def verifier(moto: Aws) -> Iterator[tuple[AwsVerifier, RecordingTransport]]:
    transport = RecordingTransport()
    v = AwsVerifier(sts_endpoint=moto.endpoint, timeout=5.0, trust_env=False, transport=transport)
    yield v, transport
    v.close()


@pytest.fixture
def offline() -> Iterator[tuple[AwsVerifier, RecordingTransport]]:
    """A verifier whose every network call fails the test."""
    transport = RecordingTransport(forward=False)
    v = AwsVerifier(sts_endpoint="http://127.0.0.1:9", trust_env=False, transport=transport)
    yield v, transport
    assert transport.requests == []
    v.close()


# -- the workload side: real google-auth ---------------------------------------------------------------


@pytest.fixture
def sign(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Build a subject token exactly as google-auth's aws.Credentials does, from env credentials."""

    def build(key_id: str, secret: str, session_token: str | None = None, *, audience: str = AUDIENCE,
              url: str = VERIFY_URL, region: str = REGION) -> str:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
                     "AWS_DEFAULT_REGION"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        monkeypatch.setenv("AWS_REGION", region)
        if session_token:
            monkeypatch.setenv("AWS_SESSION_TOKEN", session_token)
        credentials = aws.Credentials(
            audience=audience, subject_token_type="urn:ietf:params:aws:token-type:aws4_request",
            token_url="https://sts.googleapis.com/v1/token",
            credential_source={"environment_id": "aws1", "regional_cred_verification_url": url})
        token: str = credentials.retrieve_subject_token(Request())
        return token

    return build


def decode(token: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(urllib.parse.unquote(token))
    return result


def encode(obj: dict[str, Any]) -> str:
    return urllib.parse.quote(json.dumps(obj, separators=(",", ":"), sort_keys=True))


def with_header(token: str, name: str, value: str | None) -> str:
    """Replace (or with None drop) one header of a serialized request."""
    obj = decode(token)
    headers = [h for h in obj["headers"] if h["key"].lower() != name.lower()]
    if value is not None:
        headers.append({"key": name, "value": value})
    obj["headers"] = headers
    return encode(obj)


def rejected(excinfo: pytest.ExceptionInfo[SubjectTokenRejected], reason: str,
             oauth_error: str = "invalid_grant") -> str:
    exc = excinfo.value
    assert isinstance(exc, InvalidArgument) and exc.http_status == 400
    assert (exc.reason, exc.oauth_error) == (reason, oauth_error), exc.detail
    return exc.message


# -- accepted ----------------------------------------------------------------------------------------


def test_iam_user_credentials_yield_the_user_identity(moto: Aws, verifier: Any, sign: Any) -> None:
    v, transport = verifier
    token = sign(*moto.user_key)
    assert "SignedHeaders=host;x-amz-date," in decode(token)["headers"][0]["value"]

    assertion = v.verify(token, account_id=ACCOUNT, audience=AUDIENCE)

    assert assertion["arn"] == f"arn:aws:iam::{ACCOUNT}:user/gha-runner"
    assert assertion["account"] == ACCOUNT
    assert assertion["userid"] == moto.user_id
    assert set(assertion) == {"arn", "account", "userid"}
    (sent,) = transport.requests
    assert sent.headers["host"] == "sts.us-east-1.amazonaws.com"  # the signed host, not moto's address
    assert sent.url.query == b"Action=GetCallerIdentity&Version=2011-06-15"


def test_assumed_role_session_yields_the_assumed_role_arn(moto: Aws, verifier: Any, sign: Any) -> None:
    v, _ = verifier
    token = sign(*moto.session)
    assert any(h["key"] == "x-amz-security-token" for h in decode(token)["headers"])

    assertion = v.verify(token, account_id=ACCOUNT, audience=AUDIENCE)

    assert assertion["arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/ci-role/build-42"
    assert assertion["userid"].endswith(":build-42")
    assert assertion["account"] == ACCOUNT


def test_target_resource_may_carry_the_https_prefix(moto: Aws, verifier: Any, sign: Any) -> None:
    v, _ = verifier
    token = sign(*moto.user_key, audience="https:" + AUDIENCE)
    assert v.verify(token, account_id=ACCOUNT, audience=AUDIENCE)["account"] == ACCOUNT


def test_global_sts_host_is_accepted(moto: Aws, verifier: Any, sign: Any) -> None:
    v, _ = verifier
    token = sign(*moto.user_key, url="https://sts.amazonaws.com?Version=2011-06-15&Action=GetCallerIdentity")
    assert v.verify(token, account_id=ACCOUNT, audience=AUDIENCE)["arn"].endswith(":user/gha-runner")


def test_unencoded_json_token_is_accepted(moto: Aws, verifier: Any, sign: Any) -> None:
    v, _ = verifier
    raw = urllib.parse.unquote(sign(*moto.user_key))
    assert v.verify(raw, account_id=ACCOUNT, audience=AUDIENCE)["account"] == ACCOUNT


# -- refused by AWS (moto) -------------------------------------------------------------------------


def test_wrong_account_is_rejected_after_aws_answers(moto: Aws, verifier: Any, sign: Any) -> None:
    v, transport = verifier
    with pytest.raises(SubjectTokenRejected) as excinfo:
        v.verify(sign(*moto.user_key), account_id="210987654321", audience=AUDIENCE)
    assert rejected(excinfo, "account") == (f"The AWS account [{ACCOUNT}] of the credential does not match "
                                            "the expected account.")
    assert len(transport.requests) == 1


def test_tampered_signature_is_rejected_by_aws(moto: Aws, verifier: Any, sign: Any) -> None:
    v, transport = verifier
    obj = decode(sign(*moto.user_key))
    auth = next(h for h in obj["headers"] if h["key"] == "Authorization")
    auth["value"] = auth["value"][:-1] + ("0" if auth["value"][-1] != "0" else "1")
    with pytest.raises(SubjectTokenRejected) as excinfo:
        v.verify(encode(obj), account_id=ACCOUNT, audience=AUDIENCE)
    message = rejected(excinfo, "aws_rejected")
    assert message.startswith("Received invalid AWS response of type SignatureDoesNotMatch with error message: "
                              "The request signature we calculated does not match the signature you provided.")
    assert len(transport.requests) == 1


def test_wrong_secret_is_rejected_by_aws(moto: Aws, verifier: Any, sign: Any) -> None:
    v, _ = verifier
    with pytest.raises(SubjectTokenRejected) as excinfo:
        v.verify(sign(moto.user_key[0], "not-the-secret"), account_id=ACCOUNT, audience=AUDIENCE)
    assert "SignatureDoesNotMatch" in rejected(excinfo, "aws_rejected")


def test_unknown_access_key_is_rejected_by_aws(moto: Aws, verifier: Any, sign: Any) -> None:
    v, _ = verifier
    with pytest.raises(SubjectTokenRejected) as excinfo:
        v.verify(sign("AKIAIOSFODNN7EXAMPLE", "secret"), account_id=ACCOUNT, audience=AUDIENCE)
    assert rejected(excinfo, "aws_rejected").startswith("Received invalid AWS response of type InvalidClientTokenId")


def test_unreachable_sts_is_rejected(moto: Aws, sign: Any) -> None:
    v = AwsVerifier(sts_endpoint="http://127.0.0.1:9", timeout=1.0, trust_env=False)
    with pytest.raises(SubjectTokenRejected) as excinfo:
        v.verify(sign(*moto.user_key), account_id=ACCOUNT, audience=AUDIENCE)
    assert rejected(excinfo, "aws_unreachable") == "Error connecting to AWS STS to verify the AWS credential."


# -- refused before any network call --------------------------------------------------------------------

GOOD_QUERY = "Action=GetCallerIdentity&Version=2011-06-15"


@pytest.mark.parametrize("url", [
    f"https://evil.example.com?{GOOD_QUERY}",
    f"https://sts.us-east-1.amazonaws.com.evil.example.com?{GOOD_QUERY}",
    f"https://evil.example.com#@sts.us-east-1.amazonaws.com?{GOOD_QUERY}",
    f"https://user@sts.us-east-1.amazonaws.com?{GOOD_QUERY}",
    f"https://sts.us-east-1.amazonaws.com:8443?{GOOD_QUERY}",
    f"https://sts.us-east-1.amazonaws.com/other?{GOOD_QUERY}",
    f"https://STS.us-east-1.amazonaws.com?{GOOD_QUERY}",
    f"http://sts.us-east-1.amazonaws.com?{GOOD_QUERY}",
    f"https://sts.us-east-1.amazonaws.com?{GOOD_QUERY}&Extra=1",
    f"https://sts.us-east-1.amazonaws.com?{GOOD_QUERY}&Action=AssumeRole",
    "https://sts.us-east-1.amazonaws.com?Action=AssumeRole&Version=2011-06-15",
    "https://sts.us-east-1.amazonaws.com?Action=GetCallerIdentity",
    f"https://sts.us-east-1.amazonaws.com?{GOOD_QUERY}\n",
])
def test_urls_other_than_aws_sts_are_rejected_offline(moto: Aws, offline: Any, sign: Any, url: str) -> None:
    v, _ = offline
    obj = decode(sign(*moto.user_key))
    obj["url"] = url
    with pytest.raises(SubjectTokenRejected) as excinfo:
        v.verify(encode(obj), account_id=ACCOUNT, audience=AUDIENCE)
    assert rejected(excinfo, "malformed") == "AWS request has invalid format."


def test_evil_host_signed_by_google_auth_is_rejected_offline(moto: Aws, offline: Any, sign: Any) -> None:
    v, _ = offline
    token = sign(*moto.user_key, url=f"https://evil.example.com?{GOOD_QUERY}")
    assert decode(token)["url"].startswith("https://evil.example.com")
    with pytest.raises(SubjectTokenRejected) as excinfo:
        v.verify(token, account_id=ACCOUNT, audience=AUDIENCE)
    rejected(excinfo, "malformed")


@pytest.mark.parametrize("mutate", [
    pytest.param(lambda o: o.update(method="GET"), id="method-get"),
    pytest.param(lambda o: o.update(body="Action=AssumeRole"), id="body"),
    pytest.param(lambda o: o.update(extra=1), id="extra-key"),
    pytest.param(lambda o: o.pop("headers"), id="no-headers"),
    pytest.param(lambda o: o["headers"].append({"key": "X-Forwarded-For", "value": "1.2.3.4"}), id="unknown-header"),
    pytest.param(lambda o: o["headers"].append({"key": "HOST", "value": "sts.us-east-1.amazonaws.com"}),
                 id="duplicate-host"),
    pytest.param(lambda o: o["headers"].append({"key": "Transfer-Encoding", "value": "chunked"}),
                 id="transfer-encoding"),
    pytest.param(lambda o: [h.update(value="sts.us-west-2.amazonaws.com") for h in o["headers"] if h["key"] == "host"],
                 id="host-mismatch"),
    pytest.param(lambda o: [h.update(value=h["value"] + "\r\nX-Injected: 1") for h in o["headers"]
                            if h["key"] == "x-amz-date"], id="crlf"),
    pytest.param(lambda o: [h.update(value=h["value"].replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"))
                            for h in o["headers"] if h["key"] == "Authorization"], id="algorithm"),
    pytest.param(lambda o: [h.update(value=h["value"].replace("SignedHeaders=host;", "SignedHeaders="))
                            for h in o["headers"] if h["key"] == "Authorization"], id="host-not-signed"),
    pytest.param(lambda o: [h.update(value=h["value"].replace("/us-east-1/", "/eu-west-1/"))
                            for h in o["headers"] if h["key"] == "Authorization"], id="scope-region"),
    pytest.param(lambda o: [h.update(value=h["value"].replace("/sts/", "/iam/"))
                            for h in o["headers"] if h["key"] == "Authorization"], id="scope-service"),
    pytest.param(lambda o: o.update(headers=[h for h in o["headers"] if h["key"] != "x-amz-date"]), id="no-date"),
])
def test_malformed_requests_are_rejected_offline(moto: Aws, offline: Any, sign: Any,
                                                 mutate: Callable[[dict[str, Any]], Any]) -> None:
    v, _ = offline
    obj = decode(sign(*moto.user_key))
    mutate(obj)
    with pytest.raises(SubjectTokenRejected) as excinfo:
        v.verify(encode(obj), account_id=ACCOUNT, audience=AUDIENCE)
    assert rejected(excinfo, "malformed") == "AWS request has invalid format."


def test_wrong_target_resource_is_rejected_offline(moto: Aws, offline: Any, sign: Any) -> None:
    v, _ = offline
    other = AUDIENCE.replace("aws-prov", "other-prov")
    with pytest.raises(SubjectTokenRejected) as excinfo:
        v.verify(sign(*moto.user_key, audience=other), account_id=ACCOUNT, audience=AUDIENCE)
    assert rejected(excinfo, "target_resource") == (
        f"The x-goog-cloud-target-resource header [{other}] does not match the audience [{AUDIENCE}].")
    with pytest.raises(SubjectTokenRejected) as excinfo:
        v.verify(with_header(sign(*moto.user_key), "x-goog-cloud-target-resource", None),
                 account_id=ACCOUNT, audience=AUDIENCE)
    rejected(excinfo, "malformed")


def test_stale_and_future_dates_are_rejected_offline(moto: Aws, offline: Any, sign: Any) -> None:
    v, _ = offline
    token = sign(*moto.user_key)
    amz_date = next(h["value"] for h in decode(token)["headers"] if h["key"] == "x-amz-date")
    with pytest.raises(SubjectTokenRejected) as excinfo:
        v.verify(token, account_id=ACCOUNT, audience=AUDIENCE, now=time.time() + 16 * 60)
    assert rejected(excinfo, "expired").startswith(
        "Received invalid AWS response of type SignatureDoesNotMatch with error message: "
        f"Signature expired: {amz_date} is now earlier than ")
    with pytest.raises(SubjectTokenRejected) as excinfo:
        v.verify(token, account_id=ACCOUNT, audience=AUDIENCE, now=time.time() - 16 * 60)
    assert "Signature not yet current" in rejected(excinfo, "not_yet_valid")


def test_date_within_fifteen_minutes_is_forwarded(moto: Aws, verifier: Any, sign: Any) -> None:
    v, transport = verifier
    token = sign(*moto.user_key)
    v.verify(token, account_id=ACCOUNT, audience=AUDIENCE, now=time.time() + 14 * 60)
    assert len(transport.requests) == 1


@pytest.mark.parametrize("token", [
    pytest.param("", id="empty"),
    pytest.param("garbage", id="garbage"),
    pytest.param("%FF%FE", id="bad-utf8"),
    pytest.param("%7B%7D", id="empty-object"),
    pytest.param("[" * 10_000, id="deep-nesting"),
    pytest.param(urllib.parse.quote(json.dumps(["url", "method", "headers"])), id="array"),
    pytest.param("eyJhbGciOiJSUzI1NiJ9.e30.c2ln", id="a-jwt"),
])
def test_garbage_is_rejected_quickly(offline: Any, token: str) -> None:
    v, _ = offline
    started = time.perf_counter()
    with pytest.raises(SubjectTokenRejected) as excinfo:
        v.verify(token, account_id=ACCOUNT, audience=AUDIENCE)
    assert rejected(excinfo, "malformed") == "AWS request has invalid format."
    assert time.perf_counter() - started < 0.5


def test_oversized_token_is_rejected_before_parsing(offline: Any) -> None:
    v, _ = offline
    started = time.perf_counter()
    with pytest.raises(SubjectTokenRejected) as excinfo:
        v.verify("{" + "a" * MAX_TOKEN_BYTES, account_id=ACCOUNT, audience=AUDIENCE)
    assert rejected(excinfo, "too_large", "invalid_request") == (
        "The subject token is too large (at most 16384 bytes).")
    assert time.perf_counter() - started < 0.1


# -- AWS's reply, parsed defensively --------------------------------------------------------------------


def test_reply_with_doctype_or_huge_entities_is_refused() -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
            b"<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>&b;</Arn></GetCallerIdentityResult>"
            b"</GetCallerIdentityResponse>")
    with pytest.raises(SubjectTokenRejected) as excinfo:
        parse_caller_identity(200, bomb)
    assert excinfo.value.reason == "aws_response"


def test_reply_whose_arn_names_another_account_is_refused() -> None:
    body = (b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>'
            b"<Arn>arn:aws:iam::999999999999:user/x</Arn><UserId>AIDAX</UserId><Account>123456789012</Account>"
            b"</GetCallerIdentityResult></GetCallerIdentityResponse>")
    with pytest.raises(SubjectTokenRejected) as excinfo:
        parse_caller_identity(200, body)
    assert excinfo.value.reason == "aws_response"


def test_oversized_reply_is_refused(moto: Aws, sign: Any) -> None:
    def huge(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(b"<a>" + b"x" * (128 * 1024) + b"</a>"))

    v = AwsVerifier(sts_endpoint="http://127.0.0.1:9", transport=httpx.MockTransport(huge), trust_env=False)
    with pytest.raises(SubjectTokenRejected) as excinfo:
        v.verify(sign(*moto.user_key), account_id=ACCOUNT, audience=AUDIENCE)
    assert excinfo.value.reason == "aws_response"
