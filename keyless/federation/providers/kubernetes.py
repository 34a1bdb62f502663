"""GKE clusters as identity providers of their project's pool `PROJECT_ID.svc.id.goog`: what the
GKE metadata server sends STS (`audience=identitynamespace:POOL:ISSUER_URL`, the pod's projected
service-account token as subject token) and how it is checked — signature against the cluster's
own key, `iss` = the cluster's issuer URL, `aud` = the pool, lifetime, `sub` =
`system:serviceaccount:NS:KSA` (https://cloud.google.com/kubernetes-engine/docs/concepts/workload-identity).
Only clusters with Workload Identity enabled (a workload pool) federate.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import select

from keyless.errors import InvalidArgument
from keyless.iam.members import gke_subject, member_keys_for_gke_workload
from keyless.iam.principal import Principal
from keyless.store.db import Database, RevisionCache
from keyless.store.models import GkeCluster, Project
from keyless.tokens import jws

AUDIENCE = re.compile(r"^identitynamespace:([a-z][a-z0-9-]{4,28}[a-z0-9])\.svc\.id\.goog:"
                      r"https://container\.googleapis\.com/v1/projects/([a-z][a-z0-9-]{4,28}[a-z0-9])/"
                      r"locations/([a-z0-9-]{1,64})/clusters/([a-z][-a-z0-9]{0,39})$")
SUBJECT = re.compile(r"^system:serviceaccount:([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?):"
                     r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)$")
MAX_TOKEN = 16 * 1024
SKEW = 60


class KubernetesTokenRejected(InvalidArgument):
    """The subject token is not a valid token of the named cluster (OAuth `invalid_grant`)."""

    oauth_error = "invalid_grant"


class UnknownCluster(InvalidArgument):
    oauth_error = "invalid_target"


@dataclass(frozen=True)
class ClusterIssuer:
    issuer: str
    pool: str
    project_id: str
    project_number: str
    cluster_path: str
    cluster_id: str
    kid: str
    key: rsa.RSAPublicKey


@dataclass(frozen=True)
class KsaIdentity:
    principal: Principal
    assertion: dict[str, Any]


class KubernetesVerifier:
    """Verifies clusters' KSA tokens for the identitynamespace audience, issuers cached per revision."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._issuers: RevisionCache[dict[str, ClusterIssuer | None]] = RevisionCache(db, dict)

    def _issuer(self, project_id: str, location: str, name: str) -> ClusterIssuer | None:
        cache = self._issuers.get()
        key = f"{project_id}/{location}/{name}"
        if key in cache:
            return cache[key]
        from keyless.gke.clusters import cluster_path
        from keyless.gke.issuer import issuer_url, key_id, public_key

        with self._db.read() as s:
            cluster = s.scalar(select(GkeCluster).where(GkeCluster.project_id == project_id,
                                                        GkeCluster.location == location, GkeCluster.name == name))
            number = s.scalar(select(Project.project_number).where(Project.project_id == project_id))
        found = None
        if cluster is not None and cluster.workload_pool and number:
            found = ClusterIssuer(issuer_url(cluster), cluster.workload_pool, project_id, number,
                                  cluster_path(cluster), cluster.id, key_id(cluster), public_key(cluster))
        if len(cache) < 10_000:
            cache[key] = found
        return found

    def verify(self, audience: str, token: str) -> KsaIdentity:
        m = AUDIENCE.match(audience)
        if m is None:
            raise UnknownCluster("The audience is not a valid identitynamespace audience.")
        pool_project, project_id, location, name = m.groups()
        pool = f"{pool_project}.svc.id.goog"
        issuer = self._issuer(project_id, location, name)
        if issuer is None or issuer.pool != pool:
            raise UnknownCluster(f"The cluster {name} does not exist or does not have Workload Identity "
                                 f"enabled with the pool {pool}.")
        claims = self._check(issuer, token)
        ns, ksa = claims["kubernetes.io"]["namespace"], claims["kubernetes.io"]["serviceaccount"]["name"]
        member = (f"principal://iam.googleapis.com/projects/{issuer.project_number}/locations/global/"
                  f"workloadIdentityPools/{pool}/subject/ns/{ns}/sa/{ksa}")
        uid = claims["kubernetes.io"]["serviceaccount"].get("uid")
        keys = member_keys_for_gke_workload(project_id, issuer.project_number, ns, ksa, issuer.cluster_path,
                                            uid if isinstance(uid, str) else None)
        # principalSubject as Google logs GKE identities (seed 001): serviceAccount:POOL[NS/KSA]
        return KsaIdentity(Principal(member=member, member_keys=keys, subject=gke_subject(pool, ns, ksa)), claims)

    @staticmethod
    def _check(issuer: ClusterIssuer, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 2:
            raise KubernetesTokenRejected("The subject token is not a Kubernetes service account token.")
        try:
            parsed = jws.parse(token, MAX_TOKEN)
        except jws.MalformedJws as exc:
            raise KubernetesTokenRejected("The subject token is malformed.") from exc
        header, claims = parsed.header, parsed.claims
        if header.get("alg") != "RS256" or header.get("kid") != issuer.kid:
            raise KubernetesTokenRejected("The subject token was not signed by the cluster's key.")
        try:
            issuer.key.verify(parsed.signature, parsed.signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise KubernetesTokenRejected("Invalid JWT signature.") from exc
        if not isinstance(claims, dict) or claims.get("iss") != issuer.issuer:
            raise KubernetesTokenRejected("The token's issuer is not the cluster's.")
        aud = claims.get("aud")
        if not (aud == issuer.pool or (isinstance(aud, list) and issuer.pool in aud)):
            raise KubernetesTokenRejected(f"The token's audience must be {issuer.pool}.")
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
        if not isinstance(exp, int | float) or exp < now - SKEW:
            raise KubernetesTokenRejected("The subject token has expired.")
        if isinstance(nbf, int | float) and nbf > now + SKEW:
            raise KubernetesTokenRejected("The subject token is not valid yet.")
        sub = claims.get("sub")
        k8s = claims.get("kubernetes.io")
        m = SUBJECT.match(sub) if isinstance(sub, str) else None
        if m is None or not isinstance(k8s, dict) or k8s.get("namespace") != m.group(1) \
                or not isinstance(k8s.get("serviceaccount"), dict) or k8s["serviceaccount"].get("name") != m.group(3):
            raise KubernetesTokenRejected("The token's subject is not a Kubernetes service account.")
        return claims
