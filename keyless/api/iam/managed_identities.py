"""IAM v1's Managed Workload Identity methods (issue #20): a TRUST_DOMAIN pool's attestation
rules, its namespaces, their managed identities and theirs, and these resources' operations.

REST reference: https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools
(.namespaces, .namespaces.managedIdentities); the domain is keyless.federation.managed_identities.
Permissions are Google's (predefined_roles.json): iam.workloadIdentityPoolNamespaces.*,
iam.workloadIdentityPoolManagedIdentities.* and iam.workloadIdentityPools.{get,set}AttestationRules,
checked on the pool (whose policy applies to what it holds) and the project above it.
Mutations answer long-running operations, already done, named under the resource as gcloud
polls them; they write Admin Activity entries; reads write ADMIN_READ Data Access entries where
the project's auditConfigs ask for them, as IAM's reads do on Google.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.routing import Route

from keyless import operations
from keyless.api.http import Call, allowed_fields, data_access_method, route
from keyless.api.iam.rest import SERVICE, WIF, _mask_or_fields, _op, _pool_name, _pool_project
from keyless.audit.data_access import ADMIN_READ
from keyless.errors import InvalidArgument
from keyless.federation import managed_identities as mwi
from keyless.federation import pools
from keyless.state import ServerState
from keyless.store.models import (
    WorkloadIdentityPool,
    WorkloadIdentityPoolManagedIdentity,
    WorkloadIdentityPoolNamespace,
)

NAMESPACE_TYPE = "type.googleapis.com/google.iam.v1.WorkloadIdentityPoolNamespace"
IDENTITY_TYPE = "type.googleapis.com/google.iam.v1.WorkloadIdentityPoolManagedIdentity"
NAMESPACE_FIELDS = {"name", "description", "state", "disabled", "expireTime", "ownerService"}
IDENTITY_FIELDS = {"name", "description", "state", "disabled", "expireTime"}
LIST_DEFAULT, LIST_MAX = 50, 1000  # namespaces.list and managedIdentities.list
RULES_DEFAULT, RULES_MAX = 50, 100  # listAttestationRules


def _response(method: str) -> str:
    """The operation's response type of an attestation-rule method: its empty `...Response`."""
    return f"type.googleapis.com/google.iam.v1.{method}Response"


def _pool(call: Call, s: Session, permission: str) -> WorkloadIdentityPool:
    project = _pool_project(call, s, permission)
    return pools.get_pool(s, _pool_name(call, project))


def _namespace(call: Call, s: Session, permission: str) -> tuple[WorkloadIdentityPool, WorkloadIdentityPoolNamespace]:
    pool = _pool(call, s, permission)
    name = f"{pool.name}/namespaces/{call.params['namespace']}"
    call.touch(name=name)
    return pool, mwi.get_namespace(s, name)


def _identity(call: Call, s: Session, permission: str) -> \
        tuple[WorkloadIdentityPool, WorkloadIdentityPoolManagedIdentity]:
    pool, namespace = _namespace(call, s, permission)
    name = f"{namespace.name}/managedIdentities/{call.params['identity']}"
    call.touch(name=name)
    return pool, mwi.get_managed_identity(s, name)


def _listed(key: str, items: list[Any], token: str | None) -> dict[str, Any]:
    return {key: items, **({"nextPageToken": token} if token else {})} if items else {}


def _created_id(call: Call, query: str, param: str) -> str:
    value = call.arg(query)
    if not value:
        raise InvalidArgument(f"{query} is required.")
    call.params[param] = value[:100]  # named in the audit entry before it is checked
    return value


# -- namespaces ---------------------------------------------------------------------------------


def create_namespace(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, NAMESPACE_FIELDS, "workload_identity_pool_namespace")
    namespace_id = _created_id(call, "workloadIdentityPoolNamespaceId", "namespace")
    with call.write() as s:
        pool = _pool(call, s, "iam.workloadIdentityPoolNamespaces.create")
        row = mwi.create_namespace(s, pool, namespace_id, call.body)
        s.flush()
        call.touch(name=row.name)
        return _op(s, row.name, mwi.namespace_json(row), NAMESPACE_TYPE)


def get_namespace(call: Call) -> dict[str, Any]:
    with call.read() as s:
        return mwi.namespace_json(_namespace(call, s, "iam.workloadIdentityPoolNamespaces.get")[1])


def list_namespaces(call: Call) -> dict[str, Any]:
    with call.read() as s:
        rows = mwi.list_namespaces(s, _pool(call, s, "iam.workloadIdentityPoolNamespaces.list"),
                                   call.flag("showDeleted"))
        items, token = call.page([mwi.namespace_json(r) for r in rows], default=LIST_DEFAULT, maximum=LIST_MAX)
    return _listed("workloadIdentityPoolNamespaces", items, token)


def patch_namespace(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, NAMESPACE_FIELDS, "workload_identity_pool_namespace")
    with call.write() as s:
        _, row = _namespace(call, s, "iam.workloadIdentityPoolNamespaces.update")
        mwi.update_namespace(row, call.body, _mask_or_fields(call, call.body, ("description", "disabled")))
        s.flush()
        return _op(s, row.name, mwi.namespace_json(row), NAMESPACE_TYPE)


def delete_namespace(call: Call) -> dict[str, Any]:
    with call.write() as s:
        _, row = _namespace(call, s, "iam.workloadIdentityPoolNamespaces.delete")
        mwi.delete_namespace(row)
        s.flush()
        return _op(s, row.name, mwi.namespace_json(row), NAMESPACE_TYPE)


def undelete_namespace(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, set(), "")
    with call.write() as s:
        _, row = _namespace(call, s, "iam.workloadIdentityPoolNamespaces.undelete")
        mwi.undelete_namespace(s, row)
        s.flush()
        return _op(s, row.name, mwi.namespace_json(row), NAMESPACE_TYPE)


# -- managed identities -------------------------------------------------------------------------


def create_identity(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, IDENTITY_FIELDS, "workload_identity_pool_managed_identity")
    identity_id = _created_id(call, "workloadIdentityPoolManagedIdentityId", "identity")
    with call.write() as s:
        pool, namespace = _namespace(call, s, "iam.workloadIdentityPoolManagedIdentities.create")
        row = mwi.create_managed_identity(s, pool, namespace, identity_id, call.body)
        s.flush()
        call.touch(name=row.name)
        return _op(s, row.name, mwi.managed_identity_json(row), IDENTITY_TYPE)


def get_identity(call: Call) -> dict[str, Any]:
    with call.read() as s:
        return mwi.managed_identity_json(_identity(call, s, "iam.workloadIdentityPoolManagedIdentities.get")[1])


def list_identities(call: Call) -> dict[str, Any]:
    with call.read() as s:
        _, namespace = _namespace(call, s, "iam.workloadIdentityPoolManagedIdentities.list")
        rows = mwi.list_managed_identities(s, namespace, call.flag("showDeleted"))
        items, token = call.page([mwi.managed_identity_json(r) for r in rows], default=LIST_DEFAULT,
                                 maximum=LIST_MAX)
    return _listed("workloadIdentityPoolManagedIdentities", items, token)


def patch_identity(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, IDENTITY_FIELDS, "workload_identity_pool_managed_identity")
    with call.write() as s:
        _, row = _identity(call, s, "iam.workloadIdentityPoolManagedIdentities.update")
        mwi.update_managed_identity(row, call.body, _mask_or_fields(call, call.body, ("description", "disabled")))
        s.flush()
        return _op(s, row.name, mwi.managed_identity_json(row), IDENTITY_TYPE)


def delete_identity(call: Call) -> dict[str, Any]:
    with call.write() as s:
        _, row = _identity(call, s, "iam.workloadIdentityPoolManagedIdentities.delete")
        mwi.delete_managed_identity(row)
        s.flush()
        return _op(s, row.name, mwi.managed_identity_json(row), IDENTITY_TYPE)


def undelete_identity(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, set(), "")
    with call.write() as s:
        _, row = _identity(call, s, "iam.workloadIdentityPoolManagedIdentities.undelete")
        mwi.undelete_managed_identity(s, row)
        s.flush()
        return _op(s, row.name, mwi.managed_identity_json(row), IDENTITY_TYPE)


# -- attestation rules: of the pool, or of a managed identity -------------------------------------


def _rules_holder(call: Call, s: Session, level: str, verb: str) -> tuple[WorkloadIdentityPool, Any, str]:
    """(pool, the resource holding the rules, its name), once `verb` (get/set) is granted."""
    if level == "pool":
        pool = _pool(call, s, f"iam.workloadIdentityPools.{verb}AttestationRules")
        return pool, pool, pool.name
    pool, identity = _identity(call, s, f"iam.workloadIdentityPoolManagedIdentities.{verb}AttestationRules")
    return pool, identity, identity.name


def add_rule(level: str) -> Any:
    def handler(call: Call) -> dict[str, Any]:
        allowed_fields(call.body, {"attestationRule"}, "")
        with call.write() as s:
            pool, holder, name = _rules_holder(call, s, level, "set")
            mwi.rules_writable(s, pool, holder if level != "pool" else None)
            mwi.add_rule(holder, call.body.get("attestationRule"), compute_only=level != "pool")
            s.flush()
            return _op(s, name, {}, _response("AddAttestationRule"))
    return handler


def remove_rule(level: str) -> Any:
    def handler(call: Call) -> dict[str, Any]:
        allowed_fields(call.body, {"attestationRule"}, "")
        with call.write() as s:
            pool, holder, name = _rules_holder(call, s, level, "set")
            mwi.rules_writable(s, pool, holder if level != "pool" else None)
            mwi.remove_rule(holder, call.body.get("attestationRule"), compute_only=level != "pool")
            s.flush()
            return _op(s, name, {}, _response("RemoveAttestationRule"))
    return handler


def set_rules(level: str) -> Any:
    def handler(call: Call) -> dict[str, Any]:
        allowed_fields(call.body, {"attestationRules"}, "")
        with call.write() as s:
            pool, holder, name = _rules_holder(call, s, level, "set")
            mwi.rules_writable(s, pool, holder if level != "pool" else None)
            mwi.set_rules(holder, call.body.get("attestationRules"), compute_only=level != "pool")
            s.flush()
            return _op(s, name, {}, _response("SetAttestationRules"))
    return handler


def list_rules(level: str) -> Any:
    def handler(call: Call) -> dict[str, Any]:
        with call.read() as s:
            _, holder, _ = _rules_holder(call, s, level, "get")
            rules = mwi.list_rules(holder, call.arg("filter"))
        items, token = call.page(rules, default=RULES_DEFAULT, maximum=RULES_MAX)
        return _listed("attestationRules", items, token)
    return handler


# -- operations ---------------------------------------------------------------------------------


def get_operation(call: Call) -> dict[str, Any]:
    """A namespace's or managed identity's operation; a workload source's too (workload sources,
    deprecated by Google on 2024-10-11, have no create method in v1: none of theirs exists)."""
    p = call.params
    level = "ManagedIdentities" if "identity" in p else "Namespaces"
    with call.read() as s:
        project = _pool_project(call, s, f"iam.workloadIdentityPool{level}.get")
        name = f"{_pool_name(call, project)}/namespaces/{p['namespace']}"
        if "identity" in p:
            name += f"/managedIdentities/{p['identity']}"
        if "source" in p:
            name += f"/workloadSources/{p['source']}"
        name += f"/operations/{p['operation']}"
        call.touch(name=name)
        return operations.get(s, name)


def routes(state: ServerState) -> list[Route]:
    """Listed before keyless.api.iam.rest's: `GET .../{pool}:listAttestationRules` would otherwise
    be the pool's `get` of a pool named `{pool}:listAttestationRules`."""
    def write(method: str, path: str, handler: Any, audit_method: str) -> Route:
        return route(state, method, path, handler, service=SERVICE, method=WIF + audit_method)

    def read(path: str, handler: Any, audit_method: str) -> Route:
        return route(state, "GET", path, data_access_method(SERVICE, audit_method, handler, ADMIN_READ),
                     service=SERVICE)

    pool = "/v1/projects/{project}/locations/{location}/workloadIdentityPools/{pool}"
    ns = pool + "/namespaces/{namespace}"
    mi = ns + "/managedIdentities/{identity}"
    get_op = "google.longrunning.Operations.GetOperation"
    return [
        write("POST", pool + ":addAttestationRule", add_rule("pool"), "AddAttestationRule"),
        write("POST", pool + ":removeAttestationRule", remove_rule("pool"), "RemoveAttestationRule"),
        write("POST", pool + ":setAttestationRules", set_rules("pool"), "SetAttestationRules"),
        read(pool + ":listAttestationRules", list_rules("pool"), WIF + "ListAttestationRules"),
        write("POST", pool + "/namespaces", create_namespace, "CreateWorkloadIdentityPoolNamespace"),
        read(pool + "/namespaces", list_namespaces, WIF + "ListWorkloadIdentityPoolNamespaces"),
        read(ns, get_namespace, WIF + "GetWorkloadIdentityPoolNamespace"),
        write("PATCH", ns, patch_namespace, "UpdateWorkloadIdentityPoolNamespace"),
        write("DELETE", ns, delete_namespace, "DeleteWorkloadIdentityPoolNamespace"),
        write("POST", ns + ":undelete", undelete_namespace, "UndeleteWorkloadIdentityPoolNamespace"),
        read(ns + "/operations/{operation}", get_operation, get_op),
        write("POST", ns + "/managedIdentities", create_identity, "CreateWorkloadIdentityPoolManagedIdentity"),
        read(ns + "/managedIdentities", list_identities, WIF + "ListWorkloadIdentityPoolManagedIdentities"),
        read(mi + ":listAttestationRules", list_rules("identity"), WIF + "ListAttestationRules"),
        read(mi, get_identity, WIF + "GetWorkloadIdentityPoolManagedIdentity"),
        write("PATCH", mi, patch_identity, "UpdateWorkloadIdentityPoolManagedIdentity"),
        write("DELETE", mi, delete_identity, "DeleteWorkloadIdentityPoolManagedIdentity"),
        write("POST", mi + ":undelete", undelete_identity, "UndeleteWorkloadIdentityPoolManagedIdentity"),
        write("POST", mi + ":addAttestationRule", add_rule("identity"), "AddAttestationRule"),
        write("POST", mi + ":removeAttestationRule", remove_rule("identity"), "RemoveAttestationRule"),
        write("POST", mi + ":setAttestationRules", set_rules("identity"), "SetAttestationRules"),
        read(mi + "/operations/{operation}", get_operation, get_op),
        read(mi + "/workloadSources/{source}/operations/{operation}", get_operation, get_op),
    ]
