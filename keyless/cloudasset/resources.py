"""SearchAllResources (https://cloud.google.com/asset-inventory/docs/reference/rest/v1/TopLevel/searchAllResources):
the resources Keyless holds, within a scope, as ResourceSearchResult documents named as Cloud Asset
Inventory names them (https://cloud.google.com/asset-inventory/docs/asset-names: a project by its
id, service accounts by project id and unique id, pools, providers, secrets and sinks by project
number, topics, subscriptions and clusters by project id), filtered by the query language of
keyless.cloudasset.query, `assetTypes`, ordered by `orderBy` and cut by `readMask` (issue #20).

Google answers with every resource of the scope to whoever holds
`cloudasset.assets.searchAllResources` on it, "even if they don't have .get permission of all the
resources" (the method's documentation): so does Keyless. Fields a resource's API does not have
are absent, as on Google ("available only when the resource's Protobuf contains it"): `state` is
given where the resource has one (a project's lifecycleState, a pool's or provider's state, a
cluster's status), not for service accounts, keys, buckets, secrets, topics, subscriptions or
sinks; tags, KMS keys, network tags and folders (Keyless models no folders) never.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.cloudasset import query as resource_query
from keyless.cloudasset import search
from keyless.cloudasset.assets import CRM, ORGANIZATION_TYPE, PROJECT_TYPE, Scope
from keyless.cloudasset.search import asset_type_filter
from keyless.errors import InvalidArgument
from keyless.store.models import (
    GkeCluster,
    LoggingSink,
    Project,
    PsSubscription,
    PsTopic,
    ServiceAccount,
    ServiceAccountKey,
    SmSecret,
    StorageBucket,
    WorkloadIdentityPool,
    WorkloadIdentityPoolProvider,
)

SERVICE_ACCOUNT = "iam.googleapis.com/ServiceAccount"
SERVICE_ACCOUNT_KEY = "iam.googleapis.com/ServiceAccountKey"
POOL = "iam.googleapis.com/WorkloadIdentityPool"
PROVIDER = "iam.googleapis.com/WorkloadIdentityPoolProvider"
BUCKET = "storage.googleapis.com/Bucket"
SECRET = "secretmanager.googleapis.com/Secret"
TOPIC = "pubsub.googleapis.com/Topic"
SUBSCRIPTION = "pubsub.googleapis.com/Subscription"
CLUSTER = "container.googleapis.com/Cluster"
SINK = "logging.googleapis.com/LogSink"
ASSET_TYPES = (ORGANIZATION_TYPE, PROJECT_TYPE, SERVICE_ACCOUNT, SERVICE_ACCOUNT_KEY, POOL, PROVIDER, BUCKET,
               SECRET, TOPIC, SUBSCRIPTION, CLUSTER, SINK)
# "Only the following fields in the response are sortable" (the orderBy parameter)
ORDER_FIELDS = ("name", "assetType", "project", "displayName", "description", "location", "createTime",
                "updateTime", "state", "parentFullResourceName", "parentAssetType")
# returned when readMask is empty (the readMask parameter's list)
DEFAULT_FIELDS = ("name", "assetType", "project", "folders", "organization", "displayName", "description",
                  "location", "labels", "tags", "effectiveTags", "networkTags", "kmsKeys", "createTime",
                  "updateTime", "state", "additionalAttributes", "parentFullResourceName", "parentAssetType")
RESULT_FIELDS = frozenset({
    "name", "assetType", "project", "folders", "organization", "displayName", "description", "location", "labels",
    "networkTags", "kmsKey", "kmsKeys", "createTime", "updateTime", "state", "additionalAttributes",
    "parentFullResourceName", "parentAssetType", "versionedResources", "attachedResources", "relationships",
    "tagKeys", "tagValues", "tagValueIds", "effectiveTags", "tags", "enrichments", "sccSecurityMarks"})
MAX_READ_MASK = 1024


def _time(value: datetime | None) -> str | None:
    """Google's granularity: "in seconds. Timestamp.nanos will always be 0" (rendered without a fraction)."""
    return rfc3339(value).split(".")[0] + "Z" if value is not None else None


def _seconds(stamp: Any) -> str | None:
    """A stored RFC 3339 string at Google's granularity."""
    if not isinstance(stamp, str) or not stamp:
        return None
    return _time(datetime.fromisoformat(stamp.replace("Z", "+00:00")))


def _result(asset_type: str, name: str, project: Project | None, parent: tuple[str, str] | None,
            **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "assetType": asset_type}
    if project is not None:
        out["project"] = f"projects/{project.project_number}"
        organization = _organization(project)
        if organization:
            out["organization"] = organization
    out.update({k: v for k, v in fields.items() if v not in (None, "", {}, [])})
    if parent is not None:
        out["parentFullResourceName"], out["parentAssetType"] = parent
    return out


def _organization(project: Project) -> str | None:
    parent = project.parent or {}
    if isinstance(parent, dict) and parent.get("type") == "organization" and parent.get("id"):
        return f"organizations/{parent['id']}"
    return None


def _project_name(project: Project) -> str:
    return f"//{CRM}/projects/{project.project_id}"


def _projects(s: Session, scope: Scope) -> list[Project]:
    rows = s.scalars(select(Project).where(Project.lifecycle_state == "ACTIVE")).all()
    if scope.organization is not None:
        return [p for p in rows if _organization(p) == f"organizations/{scope.organization}"]
    return [p for p in rows if p.project_id == scope.project_id]


def _project_result(p: Project) -> dict[str, Any]:
    organization = _organization(p)
    parent = (f"//{CRM}/{organization}", ORGANIZATION_TYPE) if organization else None
    return _result(PROJECT_TYPE, _project_name(p), p, parent, displayName=p.display_name or p.project_id,
                   location="global", labels=dict(p.labels or {}), state=p.lifecycle_state,
                   createTime=_time(p.create_time), additionalAttributes={"projectId": p.project_id})


def collect(s: Session, scope: Scope) -> Iterator[dict[str, Any]]:
    """Every ResourceSearchResult within `scope` (already authorised)."""
    projects = _projects(s, scope)
    if scope.organization is not None:
        yield {"name": f"//{CRM}/organizations/{scope.organization}", "assetType": ORGANIZATION_TYPE,
               "organization": f"organizations/{scope.organization}", "location": "global", "state": "ACTIVE"}
    by_id = {p.project_id: p for p in projects}
    by_number = {p.project_number: p for p in projects}
    ids, numbers = list(by_id), list(by_number)
    if not ids:
        return
    for p in projects:
        yield _project_result(p)
    accounts: dict[str, tuple[ServiceAccount, Project]] = {}
    for sa in s.scalars(select(ServiceAccount).where(ServiceAccount.project_id.in_(ids),
                                                     ServiceAccount.deleted.is_(False))):
        p = by_id[sa.project_id]
        accounts[sa.unique_id] = (sa, p)
        yield _result(SERVICE_ACCOUNT, f"//iam.googleapis.com/projects/{p.project_id}/serviceAccounts/{sa.unique_id}",
                      p, (_project_name(p), PROJECT_TYPE), displayName=sa.display_name, description=sa.description,
                      location="global", additionalAttributes={"email": sa.email, "oauth2ClientId": sa.oauth2_client_id})
    if accounts:
        for key in s.scalars(select(ServiceAccountKey).where(ServiceAccountKey.sa_unique_id.in_(list(accounts)),
                                                              ServiceAccountKey.deleted.is_(False))):
            sa, p = accounts[key.sa_unique_id]
            account = f"//iam.googleapis.com/projects/{p.project_id}/serviceAccounts/{sa.unique_id}"
            yield _result(SERVICE_ACCOUNT_KEY, f"{account}/keys/{key.key_id}", p, (account, SERVICE_ACCOUNT),
                          location="global", createTime=_time(key.valid_after),
                          additionalAttributes={"keyAlgorithm": key.key_algorithm, "keyOrigin": key.key_origin,
                                                "keyType": key.key_type})
    pools = {}
    for pool in s.scalars(select(WorkloadIdentityPool).where(WorkloadIdentityPool.project_number.in_(numbers))):
        p = by_number[pool.project_number]
        pools[pool.name] = p
        yield _result(POOL, f"//iam.googleapis.com/{pool.name}", p, (_project_name(p), PROJECT_TYPE),
                      displayName=pool.display_name, description=pool.description, location="global",
                      state=pool.state)
    if pools:
        for provider in s.scalars(select(WorkloadIdentityPoolProvider).where(
                WorkloadIdentityPoolProvider.pool_name.in_(list(pools)))):
            yield _result(PROVIDER, f"//iam.googleapis.com/{provider.name}", pools[provider.pool_name],
                          (f"//iam.googleapis.com/{provider.pool_name}", POOL), displayName=provider.display_name,
                          description=provider.description, location="global", state=provider.state)
    for bucket in s.scalars(select(StorageBucket).where(StorageBucket.project_id.in_(ids))):
        p = by_id[bucket.project_id]
        yield _result(BUCKET, f"//storage.googleapis.com/{bucket.name}", p, (_project_name(p), PROJECT_TYPE),
                      displayName=bucket.name, location=bucket.location.lower(), labels=dict(bucket.labels or {}),
                      createTime=_time(bucket.create_time), updateTime=_time(bucket.update_time),
                      additionalAttributes={"storageClass": bucket.storage_class})
    for secret in s.scalars(select(SmSecret).where(SmSecret.project_id.in_(ids))):
        p = by_id[secret.project_id]
        where = f"/locations/{secret.location}" if secret.location else ""
        yield _result(SECRET, f"//secretmanager.googleapis.com/projects/{p.project_number}{where}/secrets/"
                      f"{secret.secret_id}", p, (_project_name(p), PROJECT_TYPE), displayName=secret.secret_id,
                      location=secret.location or "global", labels=dict(secret.labels or {}),
                      createTime=_time(secret.create_time))
    for topic in s.scalars(select(PsTopic).where(PsTopic.project_id.in_(ids))):
        p = by_id[topic.project_id]
        yield _result(TOPIC, f"//pubsub.googleapis.com/projects/{p.project_id}/topics/{topic.topic_id}", p,
                      (_project_name(p), PROJECT_TYPE), displayName=topic.topic_id, location="global",
                      labels=dict(topic.labels or {}))
    for sub in s.scalars(select(PsSubscription).where(PsSubscription.project_id.in_(ids))):
        p = by_id[sub.project_id]
        yield _result(SUBSCRIPTION, f"//pubsub.googleapis.com/projects/{p.project_id}/subscriptions/"
                      f"{sub.subscription_id}", p, (_project_name(p), PROJECT_TYPE), displayName=sub.subscription_id,
                      location="global", labels=dict(sub.labels or {}),
                      additionalAttributes={"topic": sub.topic})
    for cluster in s.scalars(select(GkeCluster).where(GkeCluster.project_id.in_(ids))):
        p = by_id[cluster.project_id]
        body = cluster.body or {}
        yield _result(CLUSTER, f"//container.googleapis.com/projects/{p.project_id}/locations/{cluster.location}"
                      f"/clusters/{cluster.name}", p, (_project_name(p), PROJECT_TYPE), displayName=cluster.name,
                      description=body.get("description"), location=cluster.location,
                      labels=dict(body.get("resourceLabels") or {}), state=cluster.status,
                      createTime=_time(cluster.create_time))
    for sink in s.scalars(select(LoggingSink).where(LoggingSink.project_id.in_(ids))):
        p = by_id[sink.project_id]
        body = sink.body or {}
        yield _result(SINK, f"//logging.googleapis.com/projects/{p.project_number}/sinks/{sink.sink_id}", p,
                      (_project_name(p), PROJECT_TYPE), displayName=sink.sink_id, description=body.get("description"),
                      location="global", createTime=_seconds(body.get("createTime")),
                      updateTime=_seconds(body.get("updateTime")),
                      additionalAttributes={"destination": body.get("destination", "")})


def read_mask(mask: str | None) -> tuple[str, ...]:
    """readMask's paths (camelCase or snake_case); "*" is every field. An unknown path is INVALID_ARGUMENT."""
    if not mask:
        return DEFAULT_FIELDS
    if len(mask) > MAX_READ_MASK:
        raise InvalidArgument(f"read_mask is longer than {MAX_READ_MASK} characters.")
    paths = []
    for raw in mask.split(","):
        path = raw.strip()
        if path == "*":
            return tuple(sorted(RESULT_FIELDS))
        head, *rest = path.split("_")
        camel = head + "".join(w[:1].upper() + w[1:] for w in rest)
        if camel not in RESULT_FIELDS:
            raise InvalidArgument(f"Invalid read_mask path {path[:100]!r}.")
        paths.append(camel)
    return tuple(paths)


def search_all_resources(s: Session, scope: Scope, text: str, asset_types: list[str], order_by: str | None,
                         mask: str | None) -> list[dict[str, Any]]:
    """The request's results, ordered and masked (pagination is the caller's)."""
    tree = resource_query.parse(text)
    types = asset_type_filter(asset_types, ASSET_TYPES)
    fields = read_mask(mask)
    found = [r for r in collect(s, scope)
             if (not types or any(rx.fullmatch(r["assetType"]) for rx in types)) and resource_query.matches(tree, r)]
    return [{k: r[k] for k in fields if k in r} for r in search.order(found, order_by, ORDER_FIELDS, "name")]
