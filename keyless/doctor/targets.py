"""What a resource name means to IAM: the policies it inherits from and what conditions see of it.

Accepts full resource names (https://cloud.google.com/iam/docs/full-resource-names, e.g.
`//storage.googleapis.com/projects/_/buckets/B`) and the relative names audit entries and IAM
conditions use (`projects/_/buckets/B/objects/O`, `projects/N/secrets/S/versions/V`, a regional
secret's `projects/N/locations/L/secrets/S`, `projects/P`, `projects/P/serviceAccounts/EMAIL`). The chains are the ones the APIs evaluate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from keyless.errors import InvalidArgument
from keyless.federation.pools import pool_name
from keyless.iam.evaluate import ResourceContext
from keyless.iam.service_accounts import find as find_account
from keyless.iam.service_accounts import sa_chain
from keyless.projects import ROOT, find_project, project_chain
from keyless.secretmanager import names as secret_names
from keyless.storage import buckets, objects
from keyless.store.models import WorkloadIdentityPool

PROJECT_TYPE = "cloudresourcemanager.googleapis.com/Project"
PROJECT_SERVICE = "cloudresourcemanager.googleapis.com"
_FULL = re.compile(r"^//([a-z0-9.-]+\.googleapis\.com)/(.+)$")
_BUCKET = re.compile(r"^projects/_/buckets/([^/]{1,222})(?:/objects/(.{1,1024}))?$")
_SECRET = re.compile(r"^projects/([^/]{1,30})(?:/locations/([a-z0-9-]{1,40}))?/secrets/([a-zA-Z0-9_-]{1,255})"
                     r"(?:/versions/([^/]{1,16}))?$")
_ACCOUNT = re.compile(r"^projects/([^/]{1,30})/serviceAccounts/([^/]{1,256})$")
_PROJECT = re.compile(r"^projects/([^/]{1,30})$")
_POOL = re.compile(r"^projects/([^/]{1,30})/locations/global/workloadIdentityPools/([a-z0-9-]{4,32})$")
# Keyless's hierarchy has one root standing for every organization and folder (keyless.projects.ROOT)
_CONTAINER = re.compile(r"^(organizations|folders)/[1-9][0-9]{0,19}$")


@dataclass(frozen=True)
class Target:
    """A resource as the evaluator sees it."""

    display: str  # as given, for messages
    chain: list[str]  # policy resources, the resource first, then its ancestors
    context: ResourceContext
    kind: str  # bucket, object, secret, project, service account
    exists: bool
    project_id: str = ""
    fix_target: str = ""  # what gcloud's add-iam-policy-binding names (gs://B, the secret id, ...)


def resolve(s: Any, resource: str) -> Target:
    """The target named by `resource`; InvalidArgument when the form is not one Keyless serves."""
    if not isinstance(resource, str) or not resource or len(resource) > 2048:
        raise InvalidArgument("The resource must be a resource name such as //storage.googleapis.com/projects/_/"
                              "buckets/BUCKET or projects/PROJECT/secrets/SECRET.")
    name = resource
    m = _FULL.match(resource)
    if m is not None:
        name = m.group(2)
    if (b := _BUCKET.match(name)) is not None:
        return _storage(s, resource, b.group(1), b.group(2))
    if (sm := _SECRET.match(name)) is not None:
        return _secret(s, resource, sm.group(1), sm.group(3), sm.group(4), sm.group(2) or "")
    if (a := _ACCOUNT.match(name)) is not None:
        row = find_account(s, a.group(2))  # an email, or the unique id audit entries name
        if row is None:
            return Target(resource, [ROOT], ResourceContext(name), "service account", False)
        return Target(resource, sa_chain(row), ResourceContext(f"projects/{row.project_id}/serviceAccounts/"
                                                               f"{row.unique_id}", "iam.googleapis.com/ServiceAccount",
                                                               "iam.googleapis.com"),
                      "service account", True, row.project_id, row.email)
    if (c := _CONTAINER.match(name)) is not None:
        return Target(resource, [ROOT], ResourceContext(name), c.group(1)[:-1], True)
    if (wp := _POOL.match(name)) is not None:
        return _pool(s, resource, wp.group(1), wp.group(2))
    if (p := _PROJECT.match(name)) is not None:
        project = find_project(s, p.group(1), include_deleted=False)
        if project is None:
            return Target(resource, [f"projects/{p.group(1)}", ROOT], ResourceContext(name), "project", False)
        return Target(resource, project_chain(project.project_id),
                      ResourceContext(f"projects/{project.project_number}", PROJECT_TYPE, PROJECT_SERVICE),
                      "project", True, project.project_id, project.project_id)
    raise InvalidArgument(f"Unknown resource {resource[:200]!r}: name a bucket or object "
                          "(//storage.googleapis.com/projects/_/buckets/B[/objects/O]), a secret or version "
                          "(projects/P/secrets/S[/versions/V]), a project (projects/P) or a service account "
                          "(projects/P/serviceAccounts/EMAIL).")


def _storage(s: Any, given: str, bucket: str, obj: str | None) -> Target:
    row = buckets.find_bucket(s, bucket)
    context = buckets.bucket_context(bucket) if obj is None else objects.object_context(bucket, obj)
    kind = "bucket" if obj is None else "object"
    if row is None:
        return Target(given, [buckets.bucket_resource(bucket), ROOT], context, kind, False, fix_target=f"gs://{bucket}")
    return Target(given, buckets.bucket_chain(row), context, kind, True, row.project_id, f"gs://{bucket}")


def _secret(s: Any, given: str, project: str, secret_id: str, version: str | None, location: str = "") -> Target:
    row = find_project(s, project, include_deleted=False)
    kind = "secret" if version is None else "secret version"
    if row is None:
        return Target(given, [f"projects/{project}", ROOT], ResourceContext(given), kind, False)
    number = row.project_number
    name = secret_names.secret_name(number, secret_id, location) if version is None else \
        secret_names.version_name(number, secret_id, version, location)
    context = ResourceContext(name, secret_names.SECRET_TYPE if version is None else secret_names.VERSION_TYPE,
                              secret_names.SERVICE)
    from keyless.secretmanager.secrets import find_secret

    exists = find_secret(s, row.project_id, secret_id, location=location) is not None
    return Target(given, secret_names.secret_chain(number, row.project_id, secret_id, location), context, kind, exists,
                  row.project_id, secret_id)


def _pool(s: Any, given: str, project: str, pool_id: str) -> Target:
    row = find_project(s, project, include_deleted=False)
    if row is None:
        return Target(given, [f"projects/{project}", ROOT], ResourceContext(given), "workload identity pool", False)
    name = pool_name(row.project_number, pool_id)
    return Target(given, [name, *project_chain(row.project_id)],
                  ResourceContext(name, "iam.googleapis.com/WorkloadIdentityPool", "iam.googleapis.com"),
                  "workload identity pool", s.get(WorkloadIdentityPool, name) is not None, row.project_id, pool_id)
