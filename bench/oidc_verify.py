"""µs per OIDC subject-token verification (keyless.federation.providers.oidc) with a cached key.

Run: .venv/bin/python bench/oidc_verify.py [iterations]. Prints the median of five runs per
algorithm; the key set is parsed once, as in the server, so this is signature + claims checks.
"""

from __future__ import annotations

import base64
import json
import statistics
import sys
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from keyless.federation.providers.oidc import OidcVerifier

ISSUER = "https://token.actions.githubusercontent.com"
PROVIDER = "projects/123456789/locations/global/workloadIdentityPools/github-pool/providers/github"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def n2b(n: int, size: int | None = None) -> bytes:
    return n.to_bytes(size or (n.bit_length() + 7) // 8, "big")


def github_like_claims(now: int) -> dict[str, Any]:
    """The claims of a GitHub Actions ID token (about two dozen)."""
    return {
        "jti": "5c1d4e3f-0000-4000-8000-000000000000", "sub": "repo:my-org/my-repo:ref:refs/heads/main",
        "aud": f"https://iam.googleapis.com/{PROVIDER}", "ref": "refs/heads/main", "sha": "a" * 40,
        "repository": "my-org/my-repo", "repository_owner": "my-org", "repository_owner_id": "1234567",
        "run_id": "9876543210", "run_number": "42", "run_attempt": "1", "repository_visibility": "private",
        "repository_id": "7654321", "actor_id": "111", "actor": "octocat", "workflow": "deploy",
        "head_ref": "", "base_ref": "", "event_name": "push", "ref_protected": "true", "ref_type": "branch",
        "workflow_ref": "my-org/my-repo/.github/workflows/deploy.yml@refs/heads/main",
        "job_workflow_ref": "my-org/my-repo/.github/workflows/deploy.yml@refs/heads/main",
        "runner_environment": "github-hosted", "iss": ISSUER, "nbf": now - 5, "exp": now + 300, "iat": now,
    }


def make(alg: str) -> tuple[str, str]:
    header = {"typ": "JWT", "alg": alg, "kid": "k1"}
    now = int(time.time())
    signing_input = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(github_like_claims(now)).encode())).encode()
    if alg == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sig = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        pub = key.public_key().public_numbers()
        jwk = {"kty": "RSA", "kid": "k1", "n": b64(n2b(pub.n)), "e": b64(n2b(pub.e))}
    else:
        eckey = ec.generate_private_key(ec.SECP256R1())
        r, s = decode_dss_signature(eckey.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = n2b(r, 32) + n2b(s, 32)
        epub = eckey.public_key().public_numbers()
        jwk = {"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(n2b(epub.x, 32)), "y": b64(n2b(epub.y, 32))}
    return signing_input.decode() + "." + b64(sig), json.dumps({"keys": [jwk]})


def bench(alg: str, iterations: int) -> tuple[float, float]:
    token, keys = make(alg)
    verifier = OidcVerifier()
    kwargs: dict[str, Any] = {"issuer_uri": ISSUER, "allowed_audiences": [], "provider_resource_name": PROVIDER,
                              "jwks_json": keys}
    verifier.verify(token, **kwargs)  # parses and caches the key set
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(iterations):
            verifier.verify(token, **kwargs)
        runs.append((time.perf_counter() - start) / iterations * 1e6)
    return statistics.median(runs), min(runs)


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(f"OIDC verify with a cached key ({iterations} iterations x 5 runs, {len(github_like_claims(0))} claims)")
    for alg in ("RS256", "ES256"):
        median, best = bench(alg, iterations)
        print(f"  {alg}: {median:7.1f} µs/verify median, {best:7.1f} best, {1e6 / median:8,.0f} verifies/s/core")


if __name__ == "__main__":
    main()
