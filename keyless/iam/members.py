"""IAM policy members: parse, validate, canonicalise, and expand identities into member keys.

Follows https://cloud.google.com/iam/docs/principal-identifiers (allow policies, IAM v1) and
https://cloud.google.com/kubernetes-engine/docs/concepts/workload-identity for GKE's forms.
A caller is described by the set of member strings that match it (`member_keys_for_*`), so a
policy check is a set lookup; `parse_member(key).value == key` for every key we generate.

Case: the type prefix is case-sensitive (`User:` and `deleted:serviceaccount:` are refused as
"of an unknown type"); email and domain values are compared case-insensitively by Google, and
`principal://`/`principalSet://` values are case-sensitive (see terraform-provider-google's
`NormalizeIamPrincipalCasing`). Deviation: Google renders a user's email in the casing of the
account it resolved to; with no user directory we render email and domain values lower-cased.
GKE's legacy `serviceAccount:PROJECT_ID.svc.id.goog[NS/KSA]` is kept exactly as written:
Kubernetes names are lower-case, so a differently cased binding must match nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from keyless.errors import InvalidArgument

ALL_USERS = "allUsers"
ALL_AUTHENTICATED_USERS = "allAuthenticatedUsers"

# Google's wording. The IAM API (and gcloud, and Cloud Storage) answer a member whose type prefix
# is missing, unknown, wrongly cased, or whose principal path does not parse with this text, e.g.
# hashicorp/terraform-provider-google#12672 ("The member principalSet://iam.googleapis.com/
# something-gh-id-pool/attribute.repository/... is of an unknown type. ...").
UNKNOWN_TYPE = "The member {member} is of an unknown type. Please set a valid type prefix for the member."
# Resource Manager's project setIamPolicy refuses allUsers/allAuthenticatedUsers and unprefixed
# members with this (googleapis/google-api-python-client#819; reason
# PROJECT_SET_IAM_DISALLOWED_MEMBER_TYPE, field `policy.bindings.member`). For the caller to use.
PROJECT_MEMBER_FORM = 'Policy members must be of the form "<type>:<value>".'
PROJECT_MEMBER_FORM_DETAIL = ("Policy members must be prefixed of the form '<type>:<value>', where <type> "
                              "is 'domain', 'group', 'serviceAccount', or 'user'.")
# A known email type whose value is not an email: Google looks the account up and answers that it
# does not exist (same shape as "Service account X does not exist."); not verified for every type.
NOT_FOUND_LABEL = {"user": "User", "group": "Group", "serviceAccount": "Service account", "domain": "Domain"}

MAX_MEMBER_LENGTH = 4096  # keeps pathological inputs cheap; far above any real identifier
MAX_SUBJECT_BYTES = 127  # google.subject limit, https://cloud.google.com/iam/docs/workload-identity-federation
IAM_HOST = "iam.googleapis.com"
CRM_HOST = "cloudresourcemanager.googleapis.com"
GKE_CLUSTER_URL_PREFIX = "https://container.googleapis.com/v1/"

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}")
_DIGITS = re.compile(r"[0-9]{1,20}")
_WORKLOAD_POOL_ID = re.compile(r"[a-z0-9-]{4,32}")
# GKE's project pool, PROJECT_ID.svc.id.goog (fleet: also .hub.id.goog). Accepted leniently: IAM
# takes a well-formed principal naming a pool that does not exist (the seeds' literal
# "PROJECT_ID.svc.id.goog" trap), and existence is checked elsewhere.
_GKE_POOL = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\.(?:svc|hub)\.id\.goog"
_GKE_POOL_ID = re.compile(r"([A-Za-z0-9][A-Za-z0-9._:-]{0,127})\.(?:svc|hub)\.id\.goog")  # group 1: PROJECT_ID
_WORKFORCE_POOL_ID = re.compile(r"[a-z][a-z0-9-]{4,61}[a-z0-9]")
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9_]{1,100}")
_K8S_NAME = re.compile(r"[^/\[\]\s]{1,253}")
_LEGACY_KSA = re.compile(rf"(?P<pool>{_GKE_POOL})\[(?P<ns>[^/\[\]\s]{{1,253}})/(?P<ksa>[^/\[\]\s]{{1,253}})\]")
_GKE_SUBJECT = re.compile(r"ns/(?P<ns>[^/]+)/sa/(?P<ksa>[^/]+)")
_DELETED = re.compile(r"(?P<kind>user|serviceAccount|group):(?P<email>[^?]*)\?uid=(?P<uid>[0-9]{1,30})")
_CRM_SET = re.compile(r"(?P<container>(?:projects|folders|organizations)/[0-9]{1,20})/type/ServiceAccount")
_WORKLOAD_PREFIX = re.compile(r"projects/(?P<number>[^/]*)/locations/(?P<loc>[^/]*)/workloadIdentityPools/(?P<pool>[^/]*)/")
_WORKFORCE_PREFIX = re.compile(r"locations/(?P<loc>[^/]*)/workforcePools/(?P<pool>[^/]*)/")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

EMAIL_KINDS = ("user", "group", "serviceAccount")
# Cloud Storage's legacy convenience values (bucket policies only; callers may refuse them elsewhere).
CONVENIENCE_KINDS = ("projectOwner", "projectEditor", "projectViewer")


@dataclass(frozen=True)
class Member:
    """One parsed policy member. `value` is the canonical string stored in policies and matched
    against `member_keys_for_*`; the other fields are filled where they apply to `kind`."""

    kind: str  # allUsers, allAuthenticatedUsers, user, group, domain, serviceAccount, deleted,
    #            principal, principalSet, projectOwner, projectEditor, projectViewer
    value: str
    email: str | None = None  # user / group / serviceAccount / deleted:{user,group,serviceAccount}
    domain: str | None = None  # domain:
    deleted_kind: str | None = None  # for kind "deleted": user, serviceAccount, group or principal
    uid: str | None = None  # for kind "deleted": the deleted account's unique id
    pool_type: str | None = None  # "workload" or "workforce" for principal/principalSet in a pool
    project_number: str | None = None
    pool_id: str | None = None
    selector: str | None = None  # subject, kubernetes.serviceaccount.uid, group, attribute, *,
    #                              namespace, kubernetes.cluster, type/ServiceAccount
    subject: str | None = None
    group: str | None = None
    attribute_name: str | None = None
    attribute_value: str | None = None
    project_id: str | None = None  # GKE: the PROJECT_ID of a PROJECT_ID.svc.id.goog pool
    namespace: str | None = None  # GKE
    ksa: str | None = None  # GKE: Kubernetes service account name
    ksa_uid: str | None = None  # GKE: Kubernetes service account uid
    cluster: str | None = None  # GKE: https://container.googleapis.com/v1/projects/P/locations/L/clusters/C
    container: str | None = None  # principalSet://cloudresourcemanager...: projects/N, folders/N, ...

    @property
    def is_gke(self) -> bool:
        """True for the identities of a GKE project pool (legacy serviceAccount: form included)."""
        return self.project_id is not None


def _shown(text: str) -> str:
    return text if len(text) <= 256 else text[:256] + "..."


def _unknown(member: str) -> InvalidArgument:
    return InvalidArgument(UNKNOWN_TYPE.format(member=_shown(member)))


def _not_found(kind: str, value: str) -> InvalidArgument:
    return InvalidArgument(f"{NOT_FOUND_LABEL[kind]} {_shown(value)} does not exist.")


def _is_email(value: str) -> bool:
    if len(value) > 254 or value.count("@") != 1:
        return False
    local, domain = value.split("@")
    return bool(_EMAIL_LOCAL.fullmatch(local)) and not local.startswith(".") and not local.endswith(".") \
        and ".." not in local and bool(_DOMAIN.fullmatch(domain))


def _gke_project(pool_id: str) -> str | None:
    m = _GKE_POOL_ID.fullmatch(pool_id)
    return m.group(1) if m else None


def _valid_pool(pool_type: str, pool_id: str) -> bool:
    if pool_type == "workforce":
        return bool(_WORKFORCE_POOL_ID.fullmatch(pool_id))
    return bool(_WORKLOAD_POOL_ID.fullmatch(pool_id)) or _gke_project(pool_id) is not None


def parse_member(text: str) -> Member:
    """Parse one member string as Google's allow policies accept it.

    Raises InvalidArgument with Google's message for anything malformed. A well-formed member
    that names nothing (an unknown pool, project number or subject) is accepted.
    """
    if not isinstance(text, str) or not text:
        raise InvalidArgument(UNKNOWN_TYPE.format(member=text if isinstance(text, str) else repr(text)))
    if len(text) > MAX_MEMBER_LENGTH or _CONTROL.search(text):
        raise _unknown(text)
    if text in (ALL_USERS, ALL_AUTHENTICATED_USERS):
        return Member(kind=text, value=text)
    if text.startswith("principal://") or text.startswith("principalSet://"):
        return _parse_principal(text)
    kind, sep, rest = text.partition(":")
    if not sep or not rest:
        raise _unknown(text)
    if kind in EMAIL_KINDS:
        if kind == "serviceAccount":
            legacy = _LEGACY_KSA.fullmatch(rest)
            if legacy:
                return Member(kind=kind, value=text, project_id=_gke_project(legacy["pool"]),
                              namespace=legacy["ns"], ksa=legacy["ksa"])
        if not _is_email(rest):
            raise _not_found(kind, rest)
        email = rest.lower()
        return Member(kind=kind, value=f"{kind}:{email}", email=email)
    if kind == "domain":
        if len(rest) > 253 or not _DOMAIN.fullmatch(rest):
            raise _not_found(kind, rest)
        domain = rest.lower()
        return Member(kind=kind, value=f"domain:{domain}", domain=domain)
    if kind == "deleted":
        return _parse_deleted(text, rest)
    if kind in CONVENIENCE_KINDS:
        project = rest.lower()
        if not re.fullmatch(r"[a-z0-9][a-z0-9.:-]{0,127}", project):
            raise _unknown(text)
        return Member(kind=kind, value=f"{kind}:{project}", project_id=project)
    raise _unknown(text)


def _parse_deleted(text: str, rest: str) -> Member:
    # https://cloud.google.com/iam/docs/principal-identifiers: deleted:user:EMAIL?uid=ID, likewise
    # serviceAccount and group; deleted:principal://...workforcePools/POOL/subject/S (no uid).
    if rest.startswith("principal://"):
        try:
            inner = _parse_principal(rest)
        except InvalidArgument:
            raise _unknown(text) from None
        if inner.pool_type != "workforce" or inner.kind != "principal":
            raise _unknown(text)
        return Member(kind="deleted", value=f"deleted:{inner.value}", deleted_kind="principal",
                      pool_type="workforce", pool_id=inner.pool_id, selector="subject", subject=inner.subject)
    m = _DELETED.fullmatch(rest)
    if not m or not _is_email(m["email"]):
        raise _unknown(text)
    email = m["email"].lower()
    return Member(kind="deleted", value=f"deleted:{m['kind']}:{email}?uid={m['uid']}", email=email,
                  deleted_kind=m["kind"], uid=m["uid"])


def _parse_principal(text: str) -> Member:
    kind, _, rest = text.partition("://")
    host, slash, path = rest.partition("/")
    if not slash:
        raise _unknown(text)
    if host == CRM_HOST:
        m = _CRM_SET.fullmatch(path)
        if kind != "principalSet" or not m:
            raise _unknown(text)
        return Member(kind=kind, value=text, selector="type/ServiceAccount", container=m["container"])
    if host != IAM_HOST:
        raise _unknown(text)
    fields: dict[str, str | None] = {}
    workload = _WORKLOAD_PREFIX.match(path)
    workforce = None if workload else _WORKFORCE_PREFIX.match(path)
    if workload:
        pool_type, prefix = "workload", workload
        if not _DIGITS.fullmatch(workload["number"]):
            raise _unknown(text)
        fields["project_number"] = workload["number"]
    elif workforce:
        pool_type, prefix = "workforce", workforce
    else:
        raise _unknown(text)
    pool_id = prefix["pool"]
    if prefix["loc"] != "global" or not _valid_pool(pool_type, pool_id):
        raise _unknown(text)
    gke_project = _gke_project(pool_id) if pool_type == "workload" else None
    fields["project_id"] = gke_project
    tail = path[prefix.end():]
    selector, _, arg = tail.partition("/")
    if kind == "principal":
        if selector == "subject" and arg and len(arg.encode()) <= MAX_SUBJECT_BYTES:
            fields["subject"] = arg
            gke = _GKE_SUBJECT.fullmatch(arg) if gke_project is not None else None
            if gke:
                fields["namespace"], fields["ksa"] = gke["ns"], gke["ksa"]
        elif selector == "kubernetes.serviceaccount.uid" and gke_project is not None and _K8S_NAME.fullmatch(arg):
            fields["ksa_uid"] = arg
        else:
            raise _unknown(text)
    elif tail == "*":
        selector = "*"
    elif selector == "group" and arg:
        fields["group"] = arg
    elif selector.startswith("attribute.") and arg and _ATTRIBUTE_NAME.fullmatch(selector[len("attribute."):]):
        fields["attribute_name"], fields["attribute_value"] = selector[len("attribute."):], arg
        selector = "attribute"
    elif selector == "namespace" and pool_type == "workload" and _K8S_NAME.fullmatch(arg):
        fields["namespace"] = arg
    elif selector == "kubernetes.cluster" and pool_type == "workload" and arg:
        fields["cluster"] = arg
    else:
        raise _unknown(text)
    return Member(kind=kind, value=text, pool_type=pool_type, pool_id=pool_id, selector=selector,
                  **fields)


def canonical_member(text: str) -> str:
    """The canonical form Google stores and returns for `text` (raises like `parse_member`)."""
    return parse_member(text).value


# -- building identifiers ------------------------------------------------------------------


def workload_pool_path(project_number: str, pool_id: str) -> str:
    """`iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL` (no scheme)."""
    return f"{IAM_HOST}/projects/{project_number}/locations/global/workloadIdentityPools/{pool_id}"


def federated_principal(project_number: str, pool_id: str, subject: str) -> str:
    """The `principal://` identifier of one workload identity pool subject."""
    return f"principal://{workload_pool_path(project_number, pool_id)}/subject/{subject}"


def gke_subject(pool: str, namespace: str, ksa: str) -> str:
    """A GKE workload's `serviceAccount:PROJECT.svc.id.goog[NS/KSA]`, the form Google writes in
    audit entries' principalSubject (seed 001) and accepts as a member."""
    return f"serviceAccount:{pool}[{namespace}/{ksa}]"


def gke_cluster_url(cluster_resource: str) -> str:
    """`projects/P/locations/L/clusters/C` (or an already full URL) as GKE's cluster URL."""
    if cluster_resource.startswith("https://"):
        return cluster_resource
    return GKE_CLUSTER_URL_PREFIX + cluster_resource.lstrip("/")


# -- identities as member keys -------------------------------------------------------------


def member_keys_for_user(email: str) -> frozenset[str]:
    """A Google Account: itself, its domain (`domain:` is all users of a Workspace or Cloud
    Identity domain), allAuthenticatedUsers and allUsers."""
    email = email.lower()
    domain = email.rpartition("@")[2]
    return frozenset({f"user:{email}", f"domain:{domain}", ALL_AUTHENTICATED_USERS, ALL_USERS})


def member_keys_for_service_account(email: str) -> frozenset[str]:
    """A service account: itself, allAuthenticatedUsers and allUsers. `domain:` does not match
    service accounts (a domain principal is the accounts of a Workspace/Cloud Identity domain)."""
    return frozenset({f"serviceAccount:{email.lower()}", ALL_AUTHENTICATED_USERS, ALL_USERS})


def _attribute_values(raw: str | Iterable[str]) -> Iterable[str]:
    return (raw,) if isinstance(raw, str) else raw


def member_keys_for_federated(project_number: str, pool_id: str, subject: str, groups: Iterable[str],
                              attributes: Mapping[str, str | list[str]]) -> frozenset[str]:
    """A workload identity pool identity: its `principal://` subject, `principalSet://` group,
    attribute and whole-pool sets, allAuthenticatedUsers and allUsers.

    `attributes` are the custom attributes (`attribute.NAME` or bare `NAME`); `google.*` keys are
    skipped (google.subject and google.groups arrive as `subject` and `groups`).
    """
    base = workload_pool_path(project_number, pool_id)
    keys = {f"principal://{base}/subject/{subject}", f"principalSet://{base}/*",
            ALL_AUTHENTICATED_USERS, ALL_USERS}
    keys.update(f"principalSet://{base}/group/{g}" for g in groups if g)
    for name, raw in attributes.items():
        if name.startswith("google."):
            continue
        name = name.removeprefix("attribute.")
        for value in _attribute_values(raw):
            if value:
                keys.add(f"principalSet://{base}/attribute.{name}/{value}")
    return frozenset(keys)


def member_keys_for_gke_workload(project_id: str, project_number: str, namespace: str, ksa: str,
                                 cluster_resource: str | None, ksa_uid: str | None = None) -> frozenset[str]:
    """A GKE Pod's Kubernetes service account in the project pool PROJECT_ID.svc.id.goog: the
    legacy `serviceAccount:` form, the `principal://` subject (and uid) forms, the namespace,
    cluster and whole-pool `principalSet://` forms, allAuthenticatedUsers and allUsers."""
    pool = f"{project_id}.svc.id.goog"
    base = workload_pool_path(project_number, pool)
    keys = {gke_subject(pool, namespace, ksa),
            f"principal://{base}/subject/ns/{namespace}/sa/{ksa}",
            f"principalSet://{base}/namespace/{namespace}",
            f"principalSet://{base}/*",
            ALL_AUTHENTICATED_USERS, ALL_USERS}
    if cluster_resource:
        keys.add(f"principalSet://{base}/kubernetes.cluster/{gke_cluster_url(cluster_resource)}")
    if ksa_uid:
        keys.add(f"principal://{base}/kubernetes.serviceaccount.uid/{ksa_uid}")
    return frozenset(keys)
