"""Database models: one table per Google resource kind, plus signing keys and audit entries.

Resource bodies that Google's APIs treat as opaque documents (policies, provider configs,
operation results) are JSON columns; everything a query filters on is a real column.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Revision(Base):
    """One row whose counter every write bumps, so other processes can drop their caches."""

    __tablename__ = "revision"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)


class Project(Base):
    __tablename__ = "projects"
    project_id: Mapped[str] = mapped_column(String(30), primary_key=True)
    project_number: Mapped[str] = mapped_column(String(20), unique=True, index=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    lifecycle_state: Mapped[str] = mapped_column(String(32), default="ACTIVE")
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parent: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    etag: Mapped[str] = mapped_column(String(64), default="")


class IamPolicy(Base):
    """The IAM policy attached to one resource, keyed by its full resource name."""

    __tablename__ = "iam_policies"
    resource: Mapped[str] = mapped_column(String(512), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    bindings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    audit_configs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    etag: Mapped[str] = mapped_column(String(64))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ServiceAccount(Base):
    __tablename__ = "service_accounts"
    unique_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(30), index=True)
    account_id: Mapped[str] = mapped_column(String(30))
    email: Mapped[str] = mapped_column(String(256), index=True)
    display_name: Mapped[str] = mapped_column(String(100), default="")
    description: Mapped[str] = mapped_column(String(256), default="")
    oauth2_client_id: Mapped[str] = mapped_column(String(32))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    delete_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    etag: Mapped[str] = mapped_column(String(64), default="")


class ServiceAccountKey(Base):
    __tablename__ = "service_account_keys"
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sa_unique_id: Mapped[str] = mapped_column(String(32), index=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    key_algorithm: Mapped[str] = mapped_column(String(32), default="KEY_ALG_RSA_2048")
    key_origin: Mapped[str] = mapped_column(String(32), default="GOOGLE_PROVIDED")
    key_type: Mapped[str] = mapped_column(String(32), default="USER_MANAGED")
    valid_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # Only SYSTEM_MANAGED keys (Google's own, used by signBlob/signJwt) keep their private half.
    private_key_pem: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class CustomRole(Base):
    __tablename__ = "custom_roles"
    name: Mapped[str] = mapped_column(String(300), primary_key=True)  # projects/P/roles/ID
    project_id: Mapped[str] = mapped_column(String(30), index=True)
    role_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(100), default="")
    description: Mapped[str] = mapped_column(String(300), default="")
    stage: Mapped[str] = mapped_column(String(16), default="ALPHA")
    permissions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    delete_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    etag: Mapped[str] = mapped_column(String(64), default="")


class WorkloadIdentityPool(Base):
    __tablename__ = "workload_identity_pools"
    name: Mapped[str] = mapped_column(String(300), primary_key=True)  # projects/NUM/locations/global/...
    project_number: Mapped[str] = mapped_column(String(20), index=True)
    pool_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(100), default="")
    description: Mapped[str] = mapped_column(String(300), default="")
    state: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    expire_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    session_duration: Mapped[str | None] = mapped_column(String(32), nullable=True)
    mode: Mapped[str | None] = mapped_column(String(32), nullable=True)  # None: MODE_UNSPECIFIED
    attestation_rules: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)


class WorkloadIdentityPoolNamespace(Base):
    """A namespace of a TRUST_DOMAIN pool (namespaces.*): the administrative boundary of managed
    workload identities."""

    __tablename__ = "workload_identity_pool_namespaces"
    name: Mapped[str] = mapped_column(String(400), primary_key=True)  # .../workloadIdentityPools/P/namespaces/N
    pool_name: Mapped[str] = mapped_column(String(300), index=True)
    namespace_id: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(300), default="")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    expire_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WorkloadIdentityPoolManagedIdentity(Base):
    """A managed workload identity of a namespace (namespaces.managedIdentities.*), with the
    attestation rules (`googleCloudResource` strings) saying which workloads may receive it."""

    __tablename__ = "workload_identity_pool_managed_identities"
    name: Mapped[str] = mapped_column(String(500), primary_key=True)  # .../namespaces/N/managedIdentities/M
    namespace_name: Mapped[str] = mapped_column(String(400), index=True)
    managed_identity_id: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(300), default="")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    expire_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attestation_rules: Mapped[list[Any]] = mapped_column(JSON, default=list)


class WorkloadIdentityPoolProvider(Base):
    __tablename__ = "workload_identity_pool_providers"
    name: Mapped[str] = mapped_column(String(400), primary_key=True)
    pool_name: Mapped[str] = mapped_column(String(300), index=True)
    provider_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(100), default="")
    description: Mapped[str] = mapped_column(String(300), default="")
    state: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    expire_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attribute_mapping: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attribute_condition: Mapped[str | None] = mapped_column(Text, nullable=True)
    oidc: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    aws: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)


class WorkloadIdentityPoolProviderKey(Base):
    """A provider's key pair (providers.keys.*): the public half answered as KeyData, the private
    half kept for the provider's own use and never answered."""

    __tablename__ = "workload_identity_pool_provider_keys"
    name: Mapped[str] = mapped_column(String(500), primary_key=True)  # .../providers/P/keys/K
    provider_name: Mapped[str] = mapped_column(String(400), index=True)
    key_spec: Mapped[str] = mapped_column(String(16))
    use: Mapped[str] = mapped_column(String(16))
    certificate_pem: Mapped[str] = mapped_column(Text)
    private_key_pem: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    expire_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Operation(Base):
    """A google.longrunning.Operation, stored so gcloud can poll it."""

    __tablename__ = "operations"
    name: Mapped[str] = mapped_column(String(500), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SigningKey(Base):
    """Key material Keyless signs with: HMAC secrets for access tokens, RSA keys for ID tokens."""

    __tablename__ = "signing_keys"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16), index=True)  # "access" | "id"
    algorithm: Mapped[str] = mapped_column(String(16))  # "HS256" | "RS256"
    secret: Mapped[bytes] = mapped_column(LargeBinary)  # HMAC key, or PKCS8 PEM of the RSA key
    public_jwk: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    retire_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConsoleSession(Base):
    """A web console session (keyless.console.sessions): the cookie carries a random id, the row
    holds its SHA-256, the principal and scopes of the token it was made from, when it ends (never
    after that token), and the server that minted it."""

    __tablename__ = "console_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    server: Mapped[str] = mapped_column(String(512))
    principal: Mapped[dict[str, Any]] = mapped_column(JSON)
    scopes: Mapped[list[Any]] = mapped_column(JSON)
    service_account_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    issued_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class AuditEntry(Base):
    """A Cloud Audit Logs LogEntry; `entry` is the full JSON, the columns are its indexed fields."""

    __tablename__ = "audit_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    insert_id: Mapped[str] = mapped_column(String(64), unique=True)
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    project_id: Mapped[str] = mapped_column(String(30), index=True)
    # Text: a written entry's log id may be 511 characters, URL-encoded (issue #20; migration 0011).
    log_name: Mapped[str] = mapped_column(Text)
    method_name: Mapped[str] = mapped_column(String(200), index=True)
    service_name: Mapped[str] = mapped_column(String(100))
    resource_type: Mapped[str] = mapped_column(String(64), index=True)
    # Text: every valid name fits (an object's is ~1,270 characters: bucket 222, object 1,024 bytes),
    # so no entry is refused for its name (issue #23 item 5; migration 0007).
    resource_name: Mapped[str] = mapped_column(Text)
    principal_email: Mapped[str] = mapped_column(String(256), index=True, default="")
    principal_subject: Mapped[str] = mapped_column(String(1024), default="")
    severity: Mapped[str] = mapped_column(String(16), default="NOTICE")
    status_code: Mapped[int] = mapped_column(Integer, default=0)
    entry: Mapped[dict[str, Any]] = mapped_column(JSON)


Index("ix_audit_project_time", AuditEntry.project_id, AuditEntry.timestamp)
# entries:list narrowing (keyless.audit.query): the seeds filter on methodName and principalEmail
# within a project, newest first; the id column makes the index order the page order (migration 0006).
Index("ix_audit_project_method_time", AuditEntry.project_id, AuditEntry.method_name, AuditEntry.timestamp,
      AuditEntry.id)
Index("ix_audit_project_email_time", AuditEntry.project_id, AuditEntry.principal_email, AuditEntry.timestamp,
      AuditEntry.id)


# --- Cloud Storage (issue #2; migration 0003) -------------------------------------------------
class StorageBucket(Base):
    """A Cloud Storage bucket (JSON API `Bucket`); its IAM policy lives in iam_policies under
    `projects/_/buckets/NAME`. `body` keeps the echoed fields Keyless does not act on."""

    __tablename__ = "storage_buckets"
    name: Mapped[str] = mapped_column(String(222), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(30), index=True)
    project_number: Mapped[str] = mapped_column(String(20))
    location: Mapped[str] = mapped_column(String(64))
    storage_class: Mapped[str] = mapped_column(String(32))
    metageneration: Mapped[int] = mapped_column(BigInteger, default=1)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The bucket's generation (migration 0016): names a soft-deleted bucket among others of its name.
    generation: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The relocation under way (migration 0019, keyless.storage.relocation), else None.
    relocation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, default=None)


class StorageSoftDeletedBucket(Base):
    """A soft-deleted bucket (migration 0016, issue #20): the bucket row and IAM policy as they were,
    kept until `hard_delete_time`. Its soft-deleted objects stay in storage_object_versions under
    the parked bucket key `~ID` (no bucket name has a `~`), so a new bucket may take the name."""

    __tablename__ = "storage_soft_deleted_buckets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(222))
    generation: Mapped[int] = mapped_column(BigInteger)
    project_id: Mapped[str] = mapped_column(String(30), index=True)
    project_number: Mapped[str] = mapped_column(String(20))
    location: Mapped[str] = mapped_column(String(64))
    storage_class: Mapped[str] = mapped_column(String(32))
    metageneration: Mapped[int] = mapped_column(BigInteger)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    soft_delete_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    hard_delete_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


Index("ux_storage_soft_deleted_bucket", StorageSoftDeletedBucket.name, StorageSoftDeletedBucket.generation,
      unique=True)


class StorageObject(Base):
    """The live generation of one object. Its bytes are a file named by `blob_id` under the
    data directory (never by the object's name); `body` keeps contentType-like metadata."""

    __tablename__ = "storage_objects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bucket: Mapped[str] = mapped_column(String(222))
    name: Mapped[str] = mapped_column(String(1024))
    generation: Mapped[int] = mapped_column(BigInteger)
    metageneration: Mapped[int] = mapped_column(BigInteger, default=1)
    size: Mapped[int] = mapped_column(BigInteger)
    md5_hash: Mapped[str] = mapped_column(String(32))
    crc32c: Mapped[str] = mapped_column(String(16))
    blob_id: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


Index("ux_storage_object_name", StorageObject.bucket, StorageObject.name, unique=True)


class StorageObjectVersion(Base):
    """A generation that is not live (migration 0012, issue #20): noncurrent in a versioned bucket
    (`soft_delete_time` None), or soft-deleted under the bucket's soft delete policy until
    `hard_delete_time`. Its bytes stay in the blob file `blob_id` until it is deleted for good."""

    __tablename__ = "storage_object_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bucket: Mapped[str] = mapped_column(String(222))
    name: Mapped[str] = mapped_column(String(1024))
    generation: Mapped[int] = mapped_column(BigInteger)
    metageneration: Mapped[int] = mapped_column(BigInteger, default=1)
    size: Mapped[int] = mapped_column(BigInteger)
    md5_hash: Mapped[str] = mapped_column(String(32))
    crc32c: Mapped[str] = mapped_column(String(16))
    blob_id: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    time_deleted: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    soft_delete_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    hard_delete_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


Index("ix_storage_object_versions_name", StorageObjectVersion.bucket, StorageObjectVersion.name)


class StorageManagedFolder(Base):
    """A managed folder (migration 0012, issue #20): a name prefix of a bucket, ending in `/`, whose
    IAM policy (under `projects/_/buckets/B/managedFolders/NAME`) grants on the objects beneath it."""

    __tablename__ = "storage_managed_folders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bucket: Mapped[str] = mapped_column(String(222))
    name: Mapped[str] = mapped_column(String(1024))
    metageneration: Mapped[int] = mapped_column(BigInteger, default=1)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


Index("ux_storage_managed_folder_name", StorageManagedFolder.bucket, StorageManagedFolder.name, unique=True)
# --- end Cloud Storage ------------------------------------------------------------------------


# --- Secret Manager (issue #2; migration 0004) ------------------------------------------------
class SmSecret(Base):
    """A Secret Manager secret (secretmanager.googleapis.com v1 Secret). `uid` keys its versions,
    so a secret deleted and created again under the same id starts afresh; `body` keeps the
    fields Keyless only echoes (annotations, topics, rotation, expireTime, versionAliases...)."""

    __tablename__ = "sm_secrets"
    uid: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(30))
    project_number: Mapped[str] = mapped_column(String(20))
    secret_id: Mapped[str] = mapped_column(String(255))
    location: Mapped[str] = mapped_column(String(64), default="", server_default="")  # '': global (migration 0014)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    replication: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    etag: Mapped[str] = mapped_column(String(64), default="")
    last_version: Mapped[int] = mapped_column(Integer, default=0)  # version numbers are never reused


Index("ux_sm_secret_name", SmSecret.project_id, SmSecret.location, SmSecret.secret_id, unique=True)


class SmSecretVersion(Base):
    """One version of a secret: its payload (dropped when destroyed) and CRC32C."""

    __tablename__ = "sm_secret_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    secret_uid: Mapped[str] = mapped_column(String(36))
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="ENABLED")  # ENABLED | DISABLED | DESTROYED
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    destroy_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # destroy of a secret with versionDestroyTtl: DISABLED until then (migration 0014)
    scheduled_destroy_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    payload: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    crc32c: Mapped[int] = mapped_column(BigInteger, default=0)
    client_checksum: Mapped[bool] = mapped_column(Boolean, default=False)
    etag: Mapped[str] = mapped_column(String(64), default="")


Index("ux_sm_secret_version", SmSecretVersion.secret_uid, SmSecretVersion.version, unique=True)
# --- end Secret Manager -----------------------------------------------------------------------


# --- GKE and Kubernetes (issue #7; migration 0005) --------------------------------------------
class GkeCluster(Base):
    """A GKE cluster (container.googleapis.com v1 Cluster). `body` keeps the fields of the
    Cluster resource that are echoed back as given; the columns are what Keyless acts on.
    Each cluster is its own Kubernetes service-account token issuer (`issuer_key_pem`)."""

    __tablename__ = "gke_clusters"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # uuid; also the issuer's path
    project_id: Mapped[str] = mapped_column(String(30), index=True)
    location: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="RUNNING")
    workload_pool: Mapped[str] = mapped_column(String(128), default="")  # PROJECT_ID.svc.id.goog or ""
    autopilot: Mapped[bool] = mapped_column(Boolean, default=False)
    endpoint: Mapped[str] = mapped_column(String(64), default="")
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    issuer_key_pem: Mapped[bytes] = mapped_column(LargeBinary)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


Index("ux_gke_cluster_name", GkeCluster.project_id, GkeCluster.location, GkeCluster.name, unique=True)


class GkeNodePool(Base):
    __tablename__ = "gke_node_pools"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="RUNNING")
    workload_metadata_mode: Mapped[str] = mapped_column(String(32), default="GCE_METADATA")  # or GKE_METADATA
    service_account: Mapped[str] = mapped_column(String(256), default="")  # the nodes' Compute Engine SA
    node_count: Mapped[int] = mapped_column(Integer, default=1)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


Index("ux_gke_node_pool_name", GkeNodePool.cluster_id, GkeNodePool.name, unique=True)


class GkeNode(Base):
    """One node of a node pool: where pods run and whose metadata server they reach."""

    __tablename__ = "gke_nodes"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)  # gke-CLUSTER-POOL-xxxxxxxx-yyyy
    cluster_id: Mapped[str] = mapped_column(String(36), index=True)
    node_pool_id: Mapped[str] = mapped_column(String(36), index=True)
    internal_ip: Mapped[str] = mapped_column(String(45), default="")


class K8sObject(Base):
    """A Kubernetes object of one cluster (Namespace, ServiceAccount, Pod, Deployment, ...),
    kept as the manifest the user applied (`body`, with metadata.uid and status filled in).
    `pod_ip` is the running pod's address, which the metadata server identifies pods by."""

    __tablename__ = "k8s_objects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cluster_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    namespace: Mapped[str] = mapped_column(String(253), default="")  # "" for cluster-scoped kinds
    name: Mapped[str] = mapped_column(String(253))
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    pod_ip: Mapped[str | None] = mapped_column(String(45), nullable=True, index=True)


Index("ux_k8s_object", K8sObject.cluster_id, K8sObject.kind, K8sObject.namespace, K8sObject.name, unique=True)
# --- end GKE and Kubernetes -------------------------------------------------------------------


class StateSnapshot(Base):
    """A snapshot of every world table (keyless.store.snapshots): zlib-compressed JSON."""

    __tablename__ = "state_snapshots"
    snapshot_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    body: Mapped[bytes] = mapped_column(LargeBinary)


# --- Pub/Sub (issue #20; migration 0010) ------------------------------------------------------
class PsTopic(Base):
    """A Pub/Sub topic (pubsub.googleapis.com v1 Topic). `uid` keys its messages and attached
    subscriptions, so a topic deleted and created again under the same id starts afresh; `body`
    keeps the fields Keyless only echoes (messageRetentionDuration, kmsKeyName, schemaSettings...)."""

    __tablename__ = "ps_topics"
    uid: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(30))
    topic_id: Mapped[str] = mapped_column(String(255))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


Index("ux_ps_topic_name", PsTopic.project_id, PsTopic.topic_id, unique=True)


class PsSubscription(Base):
    """A Pub/Sub subscription. `topic` is the topic's name as created (`_deleted-topic_` once the
    topic is deleted, as Google shows it); `topic_uid` is the topic messages fan out from."""

    __tablename__ = "ps_subscriptions"
    uid: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(30))
    subscription_id: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(600))
    topic_uid: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    ack_deadline_seconds: Mapped[int] = mapped_column(Integer, default=10)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


Index("ux_ps_subscription_name", PsSubscription.project_id, PsSubscription.subscription_id, unique=True)


class PsMessage(Base):
    """A published message; its `id` is the messageId Google answers (a decimal string)."""

    __tablename__ = "ps_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic_uid: Mapped[str] = mapped_column(String(36), index=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ordering_key: Mapped[str] = mapped_column(String(1024), default="")
    publish_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PsDelivery(Base):
    """One message for one subscription: leased until `visible_at` once pulled (the ack deadline),
    under the `ack_id` of its latest delivery; `attempts` counts deliveries (deliveryAttempt).
    Acked rows stay only where the subscription retains acked messages (for seek)."""

    __tablename__ = "ps_deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_uid: Mapped[str] = mapped_column(String(36))
    message_id: Mapped[int] = mapped_column(Integer)
    ordering_key: Mapped[str] = mapped_column(String(1024), default="")
    publish_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    visible_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ack_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    acked: Mapped[bool] = mapped_column(Boolean, default=False)


Index("ix_ps_delivery_ready", PsDelivery.subscription_uid, PsDelivery.acked, PsDelivery.id)


class PsSnapshot(Base):
    """A Pub/Sub snapshot: the subscription's unacked messages (their message ids) when taken."""

    __tablename__ = "ps_snapshots"
    uid: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(30))
    snapshot_id: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(600))
    topic_uid: Mapped[str] = mapped_column(String(36))
    expire_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    unacked: Mapped[list[Any]] = mapped_column(JSON, default=list)
    taken_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


Index("ux_ps_snapshot_name", PsSnapshot.project_id, PsSnapshot.snapshot_id, unique=True)


class PsSchema(Base):
    """A Pub/Sub schema (issue #20; migration 0018): its name; its content is its revisions."""

    __tablename__ = "ps_schemas"
    uid: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(30))
    schema_id: Mapped[str] = mapped_column(String(255))


Index("ux_ps_schema_name", PsSchema.project_id, PsSchema.schema_id, unique=True)


class PsSchemaRevision(Base):
    """One revision of a schema: `seq` orders them (the highest is the schema's current one);
    `revision_id` is Google's eight hex digits."""

    __tablename__ = "ps_schema_revisions"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schema_uid: Mapped[str] = mapped_column(String(36), index=True)
    revision_id: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(20))
    definition: Mapped[str] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
# --- end Pub/Sub ------------------------------------------------------------------------------

# --- Cloud Logging sinks and exclusions (issue #20; migration 0011) --------------------------
class LoggingSink(Base):
    """A project's log sink (logging.googleapis.com v2 LogSink). `body` is the LogSink as Google
    returns it less `name`; `cursor` is the id of the last audit_entries row the sink has routed
    (it routes only what arrives after it is created); `last_error` is why its last export failed."""

    __tablename__ = "logging_sinks"
    project_id: Mapped[str] = mapped_column(String(30), primary_key=True)
    sink_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")


class LoggingExclusion(Base):
    """A project's exclusion (LogExclusion) on its _Default sink; `body` less `name`."""

    __tablename__ = "logging_exclusions"
    project_id: Mapped[str] = mapped_column(String(30), primary_key=True)
    exclusion_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CapabilityConfig(Base):
    """A project's CapabilityConfig (Resource Manager v3 `projects/P/capabilityConfigs/C`, issue #20);
    `body` holds displayName, types, boundaries and managementProject (migration 0017)."""

    __tablename__ = "capability_configs"
    project_id: Mapped[str] = mapped_column(String(30), primary_key=True)
    config_id: Mapped[str] = mapped_column(String(30), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    etag: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
