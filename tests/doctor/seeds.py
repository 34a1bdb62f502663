"""The seeds' correct configuration, built through the domain functions: GitHub Actions federation
(github-pool, github-provider, deploy-sa), an AWS provider, GKE Workload Identity for my-app-ksa in
production (impersonation model) and tenant-42's app-ksa (KSA-only direct model), Data Access logs
on, key creation disabled. Tests break it one mistake at a time."""

from __future__ import annotations

from typing import Any

from keyless.doctor import manifests, model
from keyless.doctor.lint import lint
from keyless.doctor.rules import Finding
from keyless.federation.pools import create_pool, create_provider, pool_name
from keyless.gke import clusters
from keyless.iam import service_accounts
from keyless.iam.policy import set_policy
from keyless.projects import KEY_CREATION_CONSTRAINT, create_project, find_project, set_org_policy
from keyless.state import ServerState
from keyless.store.models import IamPolicy

PROJECT, NUMBER = "my-project", "123456789"
POOL = f"iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools"
GITHUB_REPO_SET = f"principalSet://{POOL}/github-pool/attribute.repository/my-org/my-repo"
DEPLOY_SA = "deploy-sa@my-project.iam.gserviceaccount.com"
APP_GSA = "my-app-gsa@my-project.iam.gserviceaccount.com"
APP_KSA_MEMBER = "serviceAccount:my-project.svc.id.goog[production/my-app-ksa]"
TENANT_PRINCIPAL = f"principal://{POOL}/my-project.svc.id.goog/subject/ns/tenant-42/sa/app-ksa"
GITHUB_CONDITION = "assertion.repository_owner == 'my-org'"

MANIFESTS = """\
apiVersion: v1
kind: Namespace
metadata:
  name: production
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: my-app-ksa
  namespace: production
  annotations:
    iam.gke.io/gcp-service-account: my-app-gsa@my-project.iam.gserviceaccount.com
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: default
  namespace: production
automountServiceAccountToken: false
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-app
  namespace: production
spec:
  replicas: 2
  selector:
    matchLabels:
      app: my-app
  template:
    metadata:
      labels:
        app: my-app
    spec:
      serviceAccountName: my-app-ksa
      containers:
        - name: app
          image: europe-west2-docker.pkg.dev/my-project/my-repo/my-app:latest
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app-ksa
  namespace: tenant-42
---
apiVersion: v1
kind: Pod
metadata:
  name: tenant-app
  namespace: tenant-42
spec:
  serviceAccountName: app-ksa
  containers:
    - name: app
      image: us-central1-docker.pkg.dev/my-project/repo/app:1.0
"""

# The "before" of the migration guide: a Deployment mounting a key Secret for ADC.
BEFORE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-app
  namespace: production
spec:
  replicas: 2
  selector:
    matchLabels:
      app: my-app
  template:
    metadata:
      labels:
        app: my-app
    spec:
      containers:
        - name: app
          image: europe-west2-docker.pkg.dev/my-project/my-repo/my-app:latest
          env:
            - name: GOOGLE_APPLICATION_CREDENTIALS
              value: /var/secrets/google/key.json
            - name: LOG_LEVEL
              value: info
          volumeMounts:
            - name: google-cloud-key
              mountPath: /var/secrets/google
              readOnly: true
      volumes:
        - name: google-cloud-key
          secret:
            secretName: my-app-sa-key
"""


def grant(st: ServerState, resource: str, role: str, member: str, condition: dict[str, Any] | None = None) -> None:
    with st.db.write() as s:
        row = s.get(IamPolicy, resource)
        bindings = [dict(b) for b in row.bindings] if row else []
        b: dict[str, Any] = {"role": role, "members": [member]}
        if condition:
            b["condition"] = condition
        bindings.append(b)
        set_policy(s, resource, {"bindings": bindings, "version": 3}, None, st.role_exists(s), st.member_check(s))


def revoke(st: ServerState, resource: str, role: str, member: str) -> None:
    with st.db.write() as s:
        row = s.get(IamPolicy, resource)
        assert row is not None
        bindings = []
        for b in row.bindings:
            members = [m for m in b["members"] if not (b["role"] == role and m == member)]
            if members:
                bindings.append({**b, "members": members})
        set_policy(s, resource, {"bindings": bindings, "version": 3}, None, st.role_exists(s), st.member_check(s))


def sa_resource(st: ServerState, email: str) -> str:
    with st.db.read() as s:
        row = service_accounts.find_by_email(s, email)
        assert row is not None
        return service_accounts.sa_resource(row)


def add_cluster(st: ServerState, project: str = PROJECT, name: str = "my-cluster",
                workload_pool: str = "my-project.svc.id.goog", mode: str = "GKE_METADATA") -> None:
    """A cluster as the container API makes one (its issuer key, node pool and nodes)."""
    with st.db.write() as s:
        row = find_project(s, project)
        assert row is not None
        clusters.create_cluster(s, row, "europe-west2", {
            "name": name, "workloadIdentityConfig": {"workloadPool": workload_pool},
            "nodePools": [{"name": "default-pool", "initialNodeCount": 1,
                           "config": {"workloadMetadataConfig": {"mode": mode}}}]})


def build(st: ServerState) -> ServerState:
    with st.db.write() as s:
        project = create_project(s, PROJECT, number=NUMBER)
        for account in ("deploy-sa", "my-app-gsa"):
            service_accounts.create(s, PROJECT, account)
        github = create_pool(s, NUMBER, "github-pool", {"displayName": "GitHub Actions pool"})
        s.flush()
        create_provider(s, github, "github-provider", {
            "displayName": "GitHub provider",
            "attributeMapping": {"google.subject": "assertion.sub", "attribute.repository": "assertion.repository",
                                 "attribute.ref": "assertion.ref"},
            "attributeCondition": GITHUB_CONDITION,
            "oidc": {"issuerUri": "https://token.actions.githubusercontent.com"}})
        aws = create_pool(s, NUMBER, "aws-pool", {})
        s.flush()
        create_provider(s, aws, "aws-provider", {
            "aws": {"accountId": "123456789012"},
            "attributeCondition": "assertion.arn.startsWith('arn:aws:sts::123456789012:assumed-role/allowed-role/')"})
        set_org_policy(project, {"constraint": KEY_CREATION_CONSTRAINT, "booleanPolicy": {"enforced": True}})
        set_policy(s, f"projects/{PROJECT}", {"auditConfigs": [
            {"service": "iam.googleapis.com", "auditLogConfigs": [{"logType": "DATA_READ"}]}]},
            "auditConfigs", st.role_exists(s), st.member_check(s))
    add_cluster(st)
    grant(st, sa_resource(st, DEPLOY_SA), "roles/iam.workloadIdentityUser", GITHUB_REPO_SET)
    grant(st, sa_resource(st, APP_GSA), "roles/iam.workloadIdentityUser", APP_KSA_MEMBER)
    grant(st, f"projects/{PROJECT}", "roles/storage.objectViewer", f"serviceAccount:{APP_GSA}",
          {"expression": 'resource.name.startsWith("projects/_/buckets/my-app-bucket")', "title": "only-app-bucket"})
    grant(st, f"projects/{PROJECT}", "roles/storage.objectViewer", TENANT_PRINCIPAL,
          {"expression": 'resource.name.startsWith("projects/_/buckets/tenant-42-data")', "title": "tenant-42-bucket"})
    grant(st, f"projects/{PROJECT}", "roles/run.admin", f"serviceAccount:{DEPLOY_SA}")
    return st


def pool_path(pool: str) -> str:
    return pool_name(NUMBER, pool)


def run(st: ServerState, text: str = MANIFESTS, *, project: str | None = PROJECT, days: int = 90) -> list[Finding]:
    docs = manifests.parse_text(text, "k8s/app.yaml") if text else []
    return lint(model.load(st, project, docs), max_key_age_days=days)


def ids(findings: list[Finding]) -> set[str]:
    return {f.rule.id for f in findings}
