"""Who a pod is, and what identity GKE's metadata server gives it (domain only, no HTTP).

https://cloud.google.com/kubernetes-engine/docs/concepts/workload-identity#metadata_server:
the caller is identified by its source IP alone. On a GKE_METADATA node pool a pod's KSA
annotated with `iam.gke.io/gcp-service-account` gets that GSA (an STS exchange of a KSA token,
then generateAccessToken, which needs roles/iam.workloadIdentityUser for
`serviceAccount:PROJECT.svc.id.goog[NS/KSA]`); without the annotation it gets the federated
token itself and the email `PROJECT.svc.id.goog`; on a GCE_METADATA pool it gets the node's
Compute Engine service account. Tokens are cached per identity and refreshed before expiry.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

from sqlalchemy import select

from keyless.errors import KeylessError
from keyless.federation.exchange import ACCESS_TOKEN_TYPE, GRANT_TYPE, OAuthError
from keyless.gke.clusters import node_service_account, oauth_scopes
from keyless.iam.directory import AccountInfo
from keyless.iam.members import gke_subject, member_keys_for_gke_workload, member_keys_for_service_account
from keyless.iam.principal import Principal
from keyless.projects import find_project
from keyless.state import ServerState, service_account_principal
from keyless.store.db import RevisionCache
from keyless.store.models import GkeCluster, GkeNode, GkeNodePool, K8sObject
from keyless.tokens.access import CLOUD_PLATFORM, AccessToken

ANNOTATION = "iam.gke.io/gcp-service-account"
GKE_METADATA = "GKE_METADATA"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_LIFETIME = 3600
REFRESH_MARGIN = 300  # hand out a new token once the cached one has less than this left
GSA_EMAIL = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}@(?:[a-z0-9.:-]+\.iam|appspot|developer)\.gserviceaccount\.com$")
ANNOTATION_FORMAT = ("Annotated service account must be in format of '[SA-NAME]@[PROJECT-ID].iam.gserviceaccount.com', "
                     "'[SA_NAME]@appspot.gserviceaccount.com' or '[SA_NAME]@developer.gserviceaccount.com'")
BINDING_HINT = ("This error could be caused by a missing IAM policy binding on the target IAM service account.\n"
                "For more information, refer to the Workload Identity documentation:\n"
                "\thttps://cloud.google.com/kubernetes-engine/docs/how-to/workload-identity#authenticating_to\n\n")


class MetadataError(Exception):
    """An answer of the metadata server other than 200: a status and a text body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class PodIdentity:
    """Everything the metadata server knows about one calling pod."""

    pod_name: str
    pod_uid: str
    namespace: str
    ksa: str
    annotation: str | None  # the raw iam.gke.io/gcp-service-account value, if any
    cluster_id: str
    cluster_name: str
    location: str
    workload_pool: str
    project_id: str
    project_number: str
    node_name: str
    node_id: str
    zone: str
    mode: str  # the node pool's workloadMetadataConfig.mode
    node_service_account: str
    node_scopes: tuple[str, ...]

    @property
    def gke_metadata(self) -> bool:
        return self.mode == GKE_METADATA and bool(self.workload_pool)

    @property
    def gsa(self) -> str | None:
        """The annotated GSA (when it is a well-formed email); MetadataError when malformed."""
        if not self.gke_metadata or self.annotation is None:
            return None
        if not GSA_EMAIL.match(self.annotation):
            raise MetadataError(400, ANNOTATION_FORMAT)
        return self.annotation

    @property
    def email(self) -> str:
        if not self.gke_metadata:
            return self.node_service_account
        return self.gsa or self.workload_pool

    @property
    def ksa_member(self) -> str:
        return f"serviceAccount:{self.workload_pool}[{self.namespace}/{self.ksa}]"


class Auditor(Protocol):
    """How issued tokens reach the audit log (implemented by the HTTP layer)."""

    def exchanged(self, form: dict[str, str], principal: Principal | None, error: KeylessError | None) -> None: ...

    def impersonated(self, method: str, target: AccountInfo, principal: Principal,
                     error: KeylessError | None = None) -> None: ...


def zone_of(location: str) -> str:
    """Nodes of a regional cluster sit in its zones; Keyless places them in the first."""
    return location if location.count("-") >= 2 else f"{location}-a"


def ksa_annotation(body: dict[str, Any]) -> str | None:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ANNOTATION) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) else None


def load_pod_identity(s: Any, node_name: str, address: str) -> PodIdentity | None:
    """The pod running on `node_name` with IP `address`, as the store says now."""
    node = s.get(GkeNode, node_name)
    if node is None:
        return None
    pods = s.scalars(select(K8sObject).where(K8sObject.cluster_id == node.cluster_id, K8sObject.kind == "Pod",
                                             K8sObject.pod_ip == address)).all()
    pod = next((p for p in pods if ((p.body.get("spec") or {}).get("nodeName") in (None, node_name))), None)
    return pod_identity(s, pod, node) if pod is not None else None


def pod_identity(s: Any, pod: K8sObject, node: GkeNode) -> PodIdentity | None:
    """What the metadata server of `node` knows about `pod` (also `keyless doctor explain`'s view)."""
    cluster = s.get(GkeCluster, node.cluster_id)
    pool = s.get(GkeNodePool, node.node_pool_id)
    if cluster is None or pool is None:
        return None
    ksa = (pod.body.get("spec") or {}).get("serviceAccountName") or "default"
    sa_row = s.scalars(select(K8sObject).where(K8sObject.cluster_id == cluster.id, K8sObject.kind == "ServiceAccount",
                                               K8sObject.namespace == pod.namespace, K8sObject.name == ksa)).first()
    project = find_project(s, cluster.project_id)
    config = (pool.body.get("config") or {}) if isinstance(pool.body, dict) else {}
    scopes = oauth_scopes(config)
    number = project.project_number if project else ""
    node_sa = node_service_account(pool, number)
    return PodIdentity(
        pod_name=pod.name, pod_uid=pod.uid, namespace=pod.namespace, ksa=ksa,
        annotation=ksa_annotation(sa_row.body) if sa_row is not None else None,
        cluster_id=cluster.id, cluster_name=cluster.name, location=cluster.location,
        workload_pool=cluster.workload_pool, project_id=cluster.project_id, project_number=number,
        node_name=node.name, node_id=str(int(hashlib.sha256(node.name.encode()).hexdigest()[:15], 16)), zone=zone_of(cluster.location),
        mode=pool.workload_metadata_mode, node_service_account=node_sa, node_scopes=scopes)


class PodDirectory:
    """Source IP -> PodIdentity for one node, rebuilt when the store changes. Misses are not
    remembered, so a pod is known as soon as its runner has recorded its IP."""

    def __init__(self, state: ServerState, node_name: str) -> None:
        self._state = state
        self.node_name = node_name
        self._cache: RevisionCache[dict[str, PodIdentity]] = RevisionCache(state.db, dict)

    def find(self, address: str) -> PodIdentity | None:
        cache = self._cache.get()
        found = cache.get(address)
        if found is None:
            with self._state.db.read() as s:
                found = load_pod_identity(s, self.node_name, address)
            if found is not None and len(cache) < 4096:
                cache[address] = found
        return found


class PodCredentials:
    """Access and ID tokens for pod identities, cached per identity and scopes."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._tokens: dict[tuple[Any, ...], AccessToken] = {}
        self._federated: dict[tuple[Any, ...], AccessToken] = {}
        self.exchanges = 0  # STS exchanges performed (the cache's effect is visible in tests)

    # -- access tokens -------------------------------------------------------------------------

    def access_token(self, pod: PodIdentity, scopes: tuple[str, ...], auditor: Auditor) -> AccessToken:
        if not pod.gke_metadata:
            # The node's scopes are a ceiling: `?scopes=` may narrow them, never widen them.
            granted = pod.node_scopes if not scopes else scopes if CLOUD_PLATFORM in pod.node_scopes \
                else tuple(s for s in scopes if s in pod.node_scopes)
            key: tuple[Any, ...] = ("node", pod.node_service_account, granted)
            return self._cached(key, lambda: self._node_token(pod, granted))
        gsa = pod.gsa
        scopes = scopes or (CLOUD_PLATFORM,)
        if gsa is None:
            return self._federated_token(pod, scopes, auditor)
        return self._cached(("gsa", pod.cluster_id, pod.namespace, pod.ksa, gsa, scopes),
                            lambda: self._impersonate(pod, gsa, scopes, auditor))

    def _cached(self, key: tuple[Any, ...], issue: Any, store: dict[tuple[Any, ...], AccessToken] | None = None
                ) -> AccessToken:
        cache = self._tokens if store is None else store
        token = cache.get(key)
        if token is not None and token.expires_at - time.time() > REFRESH_MARGIN:
            return token
        token = issue()
        with self._lock:
            if len(cache) > 10_000:
                cache.clear()
            cache[key] = token
        return token

    def _node_token(self, pod: PodIdentity, scopes: tuple[str, ...]) -> AccessToken:
        account = self._state.directory.find(pod.node_service_account)
        if account is not None:
            if account.disabled:
                raise MetadataError(403, f"Service account {account.email} is disabled.")
            principal = service_account_principal(account)
        else:  # a default compute SA Keyless never created: Google's exists whenever Compute is on
            email = pod.node_service_account
            principal = Principal(member=f"serviceAccount:{email}", member_keys=member_keys_for_service_account(email),
                                  email=email, subject=f"serviceAccount:{email}")
        return self._state.tokens.mint(principal, scopes, TOKEN_LIFETIME)

    def _federated_token(self, pod: PodIdentity, scopes: tuple[str, ...], auditor: Auditor) -> AccessToken:
        """The KSA token exchanged at STS for a federated token of PROJECT.svc.id.goog."""
        key = ("federated", pod.cluster_id, pod.namespace, pod.ksa, scopes)
        return self._cached(key, lambda: self._exchange(pod, scopes, auditor), self._federated)

    def _exchange(self, pod: PodIdentity, scopes: tuple[str, ...], auditor: Auditor) -> AccessToken:
        try:
            import keyless.gke.issuer  # noqa: F401  the control plane's issuer
        except ImportError:
            return self._pool_token(pod, scopes, auditor)
        with self._state.db.read() as s:
            cluster = s.get(GkeCluster, pod.cluster_id)
            if cluster is None:
                raise MetadataError(404, "Cluster not found.")
            s.expunge(cluster)
        form = ksa_exchange_form(cluster, pod, scopes)
        self.exchanges += 1
        try:
            result = self._state.exchanger.exchange(form)
        except OAuthError as error:
            auditor.exchanged(form, None, error)
            raise MetadataError(error.http_status, f"Unable to generate access token; STS returned "
                                f"{error.http_status} {_reason(error.http_status)}: {error.message}\n") from error
        auditor.exchanged(form, result.token.principal, None)
        token: AccessToken = result.token
        return token

    def _pool_token(self, pod: PodIdentity, scopes: tuple[str, ...], auditor: Auditor) -> AccessToken:
        """Interim, while the cluster's KSA token issuer is absent from this tree: the token STS
        answers for `principal://.../PROJECT.svc.id.goog/subject/ns/NS/sa/KSA`, minted directly."""
        base = f"principal://iam.googleapis.com/projects/{pod.project_number}/locations/global/workloadIdentityPools/"
        member = f"{base}{pod.workload_pool}/subject/ns/{pod.namespace}/sa/{pod.ksa}"
        cluster = f"projects/{pod.project_id}/locations/{pod.location}/clusters/{pod.cluster_name}"
        keys = member_keys_for_gke_workload(pod.project_id, pod.project_number, pod.namespace, pod.ksa, cluster)
        principal = Principal(member=member, subject=gke_subject(pod.workload_pool, pod.namespace, pod.ksa),
                              member_keys=keys)
        self.exchanges += 1
        token = self._state.tokens.mint(principal, scopes, TOKEN_LIFETIME)
        form = {"grant_type": GRANT_TYPE, "audience": f"identitynamespace:{pod.workload_pool}:",
                "scope": " ".join(scopes), "requested_token_type": ACCESS_TOKEN_TYPE, "subject_token_type": JWT_TYPE}
        auditor.exchanged(form, principal, None)
        return token

    def _impersonate(self, pod: PodIdentity, gsa: str, scopes: tuple[str, ...], auditor: Auditor) -> AccessToken:
        from keyless.iam.credentials import generate_access_token

        federated = self._federated_token(pod, (CLOUD_PLATFORM,), auditor)
        try:
            token, target = generate_access_token(self._state, federated.principal, f"projects/-/serviceAccounts/{gsa}",
                                                  {"scope": list(scopes), "lifetime": f"{TOKEN_LIFETIME}s"})
        except KeylessError as error:
            self._refused(auditor, "GenerateAccessToken", gsa, federated.principal, error)
            raise _iam_error("access token", error) from error
        auditor.impersonated("GenerateAccessToken", target, federated.principal)
        return token

    # -- ID tokens -------------------------------------------------------------------------------

    def id_token(self, pod: PodIdentity, audience: str, full: bool, auditor: Auditor) -> str:
        from keyless.iam.credentials import generate_id_token, id_token_for

        if not pod.gke_metadata:
            account = self._state.directory.find(pod.node_service_account)
            if account is None:
                raise MetadataError(404, f"Service account {pod.node_service_account} not found.")
            return id_token_for(self._state.keys, account, audience, full)
        gsa = pod.gsa
        if gsa is None:
            # Google issues ID tokens to service accounts only; a federated KSA identity has none.
            raise MetadataError(404, "Unable to generate ID token: the Kubernetes service account is not annotated "
                                     f"with {ANNOTATION}, and only Google service accounts have ID tokens.\n")
        federated = self._federated_token(pod, (CLOUD_PLATFORM,), auditor)
        try:
            token, target = generate_id_token(self._state, federated.principal, f"projects/-/serviceAccounts/{gsa}",
                                              {"audience": audience, "includeEmail": full})
        except KeylessError as error:
            self._refused(auditor, "GenerateIdToken", gsa, federated.principal, error)
            raise _iam_error("ID token", error) from error
        auditor.impersonated("GenerateIdToken", target, federated.principal)
        return token

    def _refused(self, auditor: Auditor, method: str, gsa: str, principal: Principal, error: KeylessError) -> None:
        """IAM refused the pod's impersonation (the seeds' missing binding): its entry on the GSA."""
        known = self._state.directory.find(gsa)
        if known is not None:
            auditor.impersonated(method, known, principal, error)


def ksa_exchange_form(cluster: GkeCluster, pod: PodIdentity, scopes: tuple[str, ...]) -> dict[str, str]:
    """The STS request GKE's metadata server makes for `pod`: its KSA token, minted by the
    cluster's issuer, for the identitynamespace audience of the cluster's workload pool."""
    from keyless.gke.issuer import issuer_url, mint_ksa_token

    subject = mint_ksa_token(cluster, namespace=pod.namespace, service_account=pod.ksa,
                             audience=pod.workload_pool, pod_name=pod.pod_name, pod_uid=pod.pod_uid)
    return {"grant_type": GRANT_TYPE, "audience": f"identitynamespace:{pod.workload_pool}:{issuer_url(cluster)}",
            "scope": " ".join(scopes), "requested_token_type": ACCESS_TOKEN_TYPE,
            "subject_token": subject, "subject_token_type": JWT_TYPE}


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _iam_error(what: str, error: KeylessError) -> MetadataError:
    """GKE's wording when IAM refuses (observed: `Unable to generate access token; IAM returned
    403 Forbidden: Permission 'iam.serviceAccounts.getAccessToken' denied on resource ...`)."""
    status = error.http_status
    message = re.sub(r"on resource '[^']*' ", "on resource ", error.message)  # GKE relays it without the name
    return MetadataError(status, f"Unable to generate {what}; IAM returned {status} {_reason(status)}: "
                                 f"{message}\n{BINDING_HINT}")


__all__ = ["ANNOTATION", "MetadataError", "PodCredentials", "PodDirectory", "PodIdentity", "ksa_exchange_form",
           "load_pod_identity", "pod_identity"]
