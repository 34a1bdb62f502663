"""What a resource name means to IAM: the policies it inherits from and what conditions see of it.

Accepts full resource names (https://cloud.google.com/iam/docs/full-resource-names, e.g.
`//storage.googleapis.com/projects/_/buckets/B`) and the relative names audit entries and IAM
conditions use (`projects/_/buckets/B/objects/O`, `projects/N/secrets/S/versions/V`, a regional
secret's `projects/N/locations/L/secrets/S`, `projects/P`, `projects/P/serviceAccounts/EMAIL`), and
every other resource Keyless keeps an IAM policy on (issue #20): Pub/Sub topics, subscriptions,
snapshots and schemas (`//pubsub.googleapis.com/projects/P/topics/T`), Cloud Storage managed folders
(`projects/_/buckets/B/managedFolders/F/`, whose policies also grant on the objects beneath them),
workload identity pools and what their policy reaches (providers, namespaces, managed identities).
The chains are the ones the APIs evaluate.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keyless.errors import InvalidArgument
from keyless.federation.pools import pool_name
from keyless.iam.evaluate import ResourceContext
from keyless.iam.service_accounts import find as find_account
from keyless.iam.service_accounts import sa_chain
from keyless.projects import ROOT, find_project, project_chain
from keyless.pubsub import names as pubsub_names
from keyless.secretmanager import names as secret_names
from keyless.storage import buckets, managed_folders, objects
from keyless.store.models import (
    WorkloadIdentityPool,
    WorkloadIdentityPoolManagedIdentity,
    WorkloadIdentityPoolNamespace,
    WorkloadIdentityPoolProvider,
)

PROJECT_TYPE = "cloudresourcemanager.googleapis.com/Project"
PROJECT_SERVICE = "cloudresourcemanager.googleapis.com"
_FULL = re.compile(r"^//([a-z0-9.-]+\.googleapis\.com)/(.+)$")
_BUCKET = re.compile(r"^projects/_/buckets/([^/]{1,222})(?:/objects/(.{1,1024}))?$")
_FOLDER = re.compile(r"^projects/_/buckets/([^/]{1,222})/managedFolders/(.{1,1024})$")
_PUBSUB = re.compile(r"^projects/([^/]{1,30})/(topics|subscriptions|snapshots|schemas)/([^/]{1,255})$")
_SECRET = re.compile(r"^projects/([^/]{1,30})(?:/locations/([a-z0-9-]{1,40}))?/secrets/([a-zA-Z0-9_-]{1,255})"
                     r"(?:/versions/([^/]{1,16}))?$")
_ACCOUNT = re.compile(r"^projects/([^/]{1,30})/serviceAccounts/([^/]{1,256})$")
_PROJECT = re.compile(r"^projects/([^/]{1,30})$")
_POOL = re.compile(r"^projects/([^/]{1,30})/locations/global/workloadIdentityPools/([a-z0-9-]{4,32})"
                   r"(/providers/[a-z0-9-]{4,32}|/namespaces/[a-z0-9-]{2,63}(?:/managedIdentities/[a-z0-9-]{2,63})?)?$")
# what a pool's policy reaches, by the collection below the pool
POOL_PARTS = {"": ("workload identity pool", "iam.googleapis.com/WorkloadIdentityPool", WorkloadIdentityPool),
              "providers": ("workload identity pool provider", "iam.googleapis.com/WorkloadIdentityPoolProvider",
                            WorkloadIdentityPoolProvider),
              "namespaces": ("workload identity pool namespace", "iam.googleapis.com/WorkloadIdentityPoolNamespace",
                             WorkloadIdentityPoolNamespace),
              "managedIdentities": ("workload identity pool managed identity",
                                    "iam.googleapis.com/WorkloadIdentityPoolManagedIdentity",
                                    WorkloadIdentityPoolManagedIdentity)}
# Pub/Sub's collections: the kind a message names and the asset type
PUBSUB_KINDS = {"topics": ("topic", pubsub_names.TOPIC_TYPE), "subscriptions": ("subscription",
                pubsub_names.SUBSCRIPTION_TYPE), "snapshots": ("snapshot", pubsub_names.SNAPSHOT_TYPE),
                "schemas": ("schema", pubsub_names.SCHEMA_TYPE)}
# Keyless's hierarchy has one root standing for every organization and folder (keyless.projects.ROOT)
_CONTAINER = re.compile(r"^(organizations|folders)/[1-9][0-9]{0,19}$")
# every Target.kind resolve() gives (keyless.iam.grantable has an entry for each)
KINDS = ("project", "organization", "folder", "bucket", "object", "managed folder", "secret", "secret version",
         "service account", *(kind for kind, _ in PUBSUB_KINDS.values()),
         *(kind for kind, _, _ in POOL_PARTS.values()))


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
    if (f := _FOLDER.match(name)) is not None:
        return _managed_folder(s, resource, f.group(1), f.group(2))
    if (ps := _PUBSUB.match(name)) is not None:
        return _pubsub(s, resource, ps.group(1), ps.group(2), ps.group(3))
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
        return _pool(s, resource, wp.group(1), wp.group(2), wp.group(3) or "")
    if (p := _PROJECT.match(name)) is not None:
        project = find_project(s, p.group(1), include_deleted=False)
        if project is None:
            return Target(resource, [f"projects/{p.group(1)}", ROOT], ResourceContext(name), "project", False)
        return Target(resource, project_chain(project.project_id),
                      ResourceContext(f"projects/{project.project_number}", PROJECT_TYPE, PROJECT_SERVICE),
                      "project", True, project.project_id, project.project_id)
    raise InvalidArgument(f"Unknown resource {resource[:200]!r}: name a bucket, managed folder or object "
                          "(//storage.googleapis.com/projects/_/buckets/B[/managedFolders/F/|/objects/O]), a secret "
                          "or version (projects/P/secrets/S[/versions/V]), a Pub/Sub topic, subscription, snapshot "
                          "or schema (projects/P/topics/T), a workload identity pool or provider "
                          "(projects/P/locations/global/workloadIdentityPools/POOL[/providers/X]), a project "
                          "(projects/P) or a service account (projects/P/serviceAccounts/EMAIL).")


def _storage(s: Any, given: str, bucket: str, obj: str | None) -> Target:
    row = buckets.find_bucket(s, bucket)
    context = buckets.bucket_context(bucket) if obj is None else objects.object_context(bucket, obj)
    kind = "bucket" if obj is None else "object"
    if row is None:
        return Target(given, [buckets.bucket_resource(bucket), ROOT], context, kind, False, fix_target=f"gs://{bucket}")
    chain = buckets.bucket_chain(row) if obj is None else managed_folders.object_chain(s, row, obj)
    return Target(given, chain, context, kind, True, row.project_id, f"gs://{bucket}")


def _managed_folder(s: Any, given: str, bucket: str, folder: str) -> Target:
    """A managed folder: its own policy, those of the folders enclosing it, then its bucket's chain."""
    name = folder if folder.endswith("/") else folder + "/"
    context = managed_folders.folder_context(bucket, name)
    fix = f"gs://{bucket}/{name}"
    row = buckets.find_bucket(s, bucket)
    if row is None:
        return Target(given, [managed_folders.folder_resource(bucket, name), buckets.bucket_resource(bucket), ROOT],
                      context, "managed folder", False, fix_target=fix)
    exists = managed_folders.find(s, bucket, name) is not None
    chain = managed_folders.object_chain(s, row, name)
    if not exists:  # its own policy first all the same: the one a grant would be written to
        chain = [managed_folders.folder_resource(bucket, name), *chain]
    return Target(given, chain, context, "managed folder", exists, row.project_id, fix)


def _pubsub(s: Any, given: str, project: str, collection: str, resource_id: str) -> Target:
    """A topic, subscription, snapshot or schema: its own policy, then its project's chain (a
    subscription's topic's policy does not reach it, as on Google)."""
    kind, asset_type = PUBSUB_KINDS[collection]
    row = find_project(s, project, include_deleted=False)
    if row is None:
        return Target(given, [f"projects/{project}", ROOT], ResourceContext(given), kind, False)
    name = pubsub_names.name(row.project_id, collection, resource_id)
    return Target(given, pubsub_names.chain(row.project_id, collection, resource_id),
                  ResourceContext(name, asset_type, pubsub_names.SERVICE), kind,
                  _pubsub_exists(s, row.project_id, collection, resource_id), row.project_id, resource_id)


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


def _pubsub_exists(s: Any, project_id: str, collection: str, resource_id: str) -> bool:
    from keyless.pubsub import schemas, snapshots, subscriptions, topics

    finders: dict[str, Callable[[Any, str, str], Any]] = {
        "topics": topics.find_topic, "subscriptions": subscriptions.find_subscription,
        "snapshots": snapshots.find_snapshot, "schemas": schemas.find_schema}
    return finders[collection](s, project_id, resource_id) is not None


def _pool(s: Any, given: str, project: str, pool_id: str, below: str = "") -> Target:
    """A pool, or a provider, namespace or managed identity of one: the pool's policy governs them
    all (Keyless keeps none below the pool), then the project's chain."""
    part = below.rsplit("/", 2)[-2] if below else ""
    kind, asset_type, model = POOL_PARTS[part]
    row = find_project(s, project, include_deleted=False)
    if row is None:
        return Target(given, [f"projects/{project}", ROOT], ResourceContext(given), kind, False)
    pool = pool_name(row.project_number, pool_id)
    name = pool + below
    return Target(given, [pool, *project_chain(row.project_id)],
                  ResourceContext(name, asset_type, "iam.googleapis.com"),
                  kind, s.get(model, name) is not None, row.project_id, pool_id)
