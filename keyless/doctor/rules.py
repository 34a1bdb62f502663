"""The doctor's rule registry: one entry per mistake the seeds warn about, with its id, severity,
title, the seeds' own one-line reason, and the kind of fix. The checks live in `keyless.doctor.lint`.
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR, WARNING, INFO = "error", "warning", "info"


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    title: str
    why: str  # one line, in the seeds' words


@dataclass(frozen=True)
class Finding:
    rule: Rule
    object: str  # the offending object, named as people say it
    message: str
    fix: str  # a gcloud/keyless command or a manifest change
    path: str | None = None  # manifest findings: the file ...
    line: int | None = None  # ... and the line
    severity: str | None = None  # overrides the rule's default (e.g. AWS providers)

    @property
    def level(self) -> str:
        return self.severity or self.rule.severity


RULES: dict[str, Rule] = {}


def _rule(id: str, severity: str, title: str, why: str) -> Rule:
    rule = Rule(id, severity, title, why)
    RULES[id] = rule
    return rule


PROVIDER_NO_CONDITION = _rule(
    "KL001", ERROR, "Provider without an attribute condition",
    "Omitting the attribute condition means any identity whose token passes OIDC validation can exchange "
    "a token against your pool.")
PROVIDER_TRIVIAL_CONDITION = _rule(
    "KL002", ERROR, "Attribute condition always true or only checks the issuer/audience",
    "A condition that always evaluates to true lets any workflow in any repository on GitHub get a token "
    "if the issuer check passes.")
PROVIDER_ORG_ONLY = _rule(
    "KL003", WARNING, "GitHub condition restricts the organisation but not the repository or branch",
    "For high-value environments restrict further to specific repositories or branches.")
PRINCIPALSET_WHOLE_POOL = _rule(
    "KL004", ERROR, "principalSet://…/* binding grants every identity in the pool",
    "A binding like principalSet://…/github-pool/* grants access to all identities in the pool regardless "
    "of repository or branch.")
PRINCIPALSET_NO_SELECTOR = _rule(
    "KL005", WARNING, "Principal set without an attribute selector holds a sensitive role",
    "IAM bindings that use principalSet without attribute selectors grant access to every identity in the "
    "pool; use attribute selectors.")
MEMBER_UNKNOWN_PROJECT = _rule(
    "KL006", ERROR, "principal:// or principalSet:// member names a project number that does not exist",
    "IAM accepts a malformed principal happily and silently grants nothing: generate it; never type it.")
MEMBER_UNKNOWN_POOL = _rule(
    "KL007", ERROR, "principal:// or principalSet:// member names a pool that does not exist",
    "The grant had been applied with the literal string PROJECT_ID.svc.id.goog instead of the cluster's "
    "actual workload pool: generate it; never type it.")
MEMBER_UNKNOWN_SUBJECT = _rule(
    "KL008", ERROR, "principal:// subject that no provider mapping or Kubernetes service account produces",
    "In the KSA-only model the principal string itself becomes the single point of failure.")
GKE_MEMBER_UNKNOWN_KSA = _rule(
    "KL009", ERROR, "Workload identity member names a namespace/KSA that no manifest or cluster has",
    "Using the wrong namespace or a typo in the KSA name produces a binding that appears to succeed but "
    "never matches the pod's identity.")
GKE_MEMBER_NO_POOL = _rule(
    "KL010", ERROR, "serviceAccount:PROJECT.svc.id.goog member for a project with no Workload Identity cluster",
    "Getting the project ID wrong means the binding does not match and token exchange fails.")
ANNOTATION_KEY_TYPO = _rule(
    "KL011", ERROR, "KSA annotation key misspelt",
    "Annotation present but ignored: typo in annotation key iam.gke.io/gcp-service-account.")
ANNOTATION_NOT_EMAIL = _rule(
    "KL012", ERROR, "KSA annotation value is not a full GSA email",
    "The value is the full GSA email, not the short name; a trailing space or wrong project here fails "
    "silently.")
ANNOTATION_NO_BINDING = _rule(
    "KL013", ERROR, "Annotated GSA has no workloadIdentityUser binding for this KSA",
    "The annotation and the IAM binding must both be present.")
DEFAULT_KSA_ANNOTATED = _rule(
    "KL014", WARNING, "The default KSA is annotated",
    "Annotating the default KSA grants Workload Identity credentials to any pod that does not specify a "
    "serviceAccountName.")
DEFAULT_KSA_SENSITIVE = _rule(
    "KL015", ERROR, "A sensitive role is reachable from a default KSA",
    "Never bind sensitive roles to a default KSA, because every pod that forgets serviceAccountName "
    "silently inherits it.")
NODE_POOL_METADATA = _rule(
    "KL016", ERROR, "Node pool not on GKE_METADATA in a cluster with a workload pool",
    "Pods silently fall back to using the node's Compute Engine service account credentials.")
WIU_PROJECT_LEVEL = _rule(
    "KL017", ERROR, "roles/iam.workloadIdentityUser granted at project level",
    "The pool principal gets only roles/iam.workloadIdentityUser on the service account, and the service "
    "account gets the narrow permissions it needs.")
WIU_CONDITIONAL = _rule(
    "KL018", WARNING, "IAM condition on the workloadIdentityUser grant",
    "Condition the application grant, not the workloadIdentityUser grant.")
BASIC_ROLE_WORKLOAD_SA = _rule(
    "KL019", ERROR, "Basic role (roles/owner, roles/editor) on a workload service account",
    "If the GSA has roles/editor on the project, the pod has roles/editor.")
SHARED_GSA = _rule(
    "KL020", WARNING, "One GSA shared by unrelated workloads",
    "A compromise of either workload grants the other's permissions.")
KEY_ON_FEDERATED_SA = _rule(
    "KL021", ERROR, "User-managed key on a federated service account",
    "Do not mix key-based auth and Workload Identity: it creates confusion about which credential is "
    "actually being used.")
KEY_CREATION_ALLOWED = _rule(
    "KL022", WARNING, "Service account key creation not disabled by org policy",
    "Disable service account key creation with the iam.disableServiceAccountKeyCreation constraint so the "
    "leak vector cannot reappear.")
KEY_TOO_OLD = _rule(
    "KL023", WARNING, "User-managed key older than the maximum age",
    "Keys accumulate: a service account with several keys almost certainly has forgotten ones issued for "
    "a job that no longer exists.")
DATA_ACCESS_OFF = _rule(
    "KL024", WARNING, "Data Access audit logs not enabled for iam.googleapis.com where impersonation happens",
    "Without them, you have no record of which workloads impersonated which service accounts and when.")
MANIFEST_KEY_FILE = _rule(
    "KL025", ERROR, "Service account key Secret feeds GOOGLE_APPLICATION_CREDENTIALS",
    "Kubernetes Secrets are base64-encoded, not encrypted; a key file works forever and from anywhere.")
POD_DEFAULT_KSA = _rule(
    "KL026", WARNING, "Workload runs as the default KSA (no serviceAccountName)",
    "Without serviceAccountName the pod runs under the default KSA and Workload Identity does not apply.")
KSA_NOT_ANNOTATED = _rule(
    "KL027", WARNING, "KSA bound with workloadIdentityUser but not annotated",
    "Forgetting to annotate the Kubernetes ServiceAccount: the annotation alone is not sufficient, nor is "
    "the binding.")
