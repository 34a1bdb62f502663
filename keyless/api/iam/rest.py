"""IAM API (iam.googleapis.com v1): service accounts and their keys and policies, roles, and
workload identity pools and providers; the deprecated signBlob and signJwt, which are IAM
Credentials' (keyless.api.iamcredentials.signing).

REST reference: https://cloud.google.com/iam/docs/reference/rest. Mutations of pools and
providers answer long-running operations (already done) that gcloud polls by name.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from sqlalchemy.orm import Session
from starlette.routing import Route

from keyless import operations, projects
from keyless.api import iam_methods
from keyless.api.http import Call, allowed_fields, object_field, route, string_field, update_mask
from keyless.api.iamcredentials import signing
from keyless.doctor import targets
from keyless.doctor.targets import Target
from keyless.errors import InvalidArgument, NotFound
from keyless.federation import pools, provider_keys
from keyless.iam import condition_lint, grantable
from keyless.iam import roles as roles_domain
from keyless.iam import service_account_keys as keys_domain
from keyless.iam import service_accounts as sa_domain
from keyless.iam.evaluate import permission_denied
from keyless.iam.predefined import get_predefined_role, known_permissions, role_to_json
from keyless.state import ServerState
from keyless.storage.buckets import with_convenience_members
from keyless.store.models import Project, ServiceAccount, WorkloadIdentityPool, WorkloadIdentityPoolProvider

SERVICE = "iam.googleapis.com"
ADMIN = "google.iam.admin.v1."
WIF = "google.iam.v1.WorkloadIdentityPools."
POOL_TYPE = "type.googleapis.com/google.iam.v1.WorkloadIdentityPool"
PROVIDER_TYPE = "type.googleapis.com/google.iam.v1.WorkloadIdentityPoolProvider"
PROVIDER_KEY_TYPE = "type.googleapis.com/google.iam.v1.WorkloadIdentityPoolProviderKey"


# -- resolution helpers: find the resource, authorise, name it for the audit log ---------------


def _project(call: Call, s: Any, id_or_number: str, permission: str, *, pool: str = "") -> Project:
    """The project, once `permission` is granted on it (or on its workload identity `pool`: a
    grant in a pool's own policy applies to the pool and its providers, as on Google)."""
    row = projects.find_project(s, id_or_number)
    chain = projects.project_chain(row.project_id) if row else [projects.project_resource(id_or_number), projects.ROOT]
    if row is not None and pool:
        chain = [pools.pool_name(row.project_number, pool), *chain]
    pid = row.project_id if row else id_or_number
    call.touch(project_id=pid)
    if call.record is not None and not call.record.resource_name:
        call.touch(name=f"projects/{pid}", type="project", labels={"project_id": pid})
    call.require(permission, chain, f"projects/{id_or_number}")
    if row is None:
        raise NotFound(f"Project '{id_or_number}' not found.")
    if row.lifecycle_state != "ACTIVE":
        raise NotFound(f"Project '{id_or_number}' is pending deletion.")
    return row


def _service_account(call: Call, s: Any, permission: str, *, name: str | None = None) -> ServiceAccount:
    project, account = sa_domain.parse_name(name or f"projects/{call.params['project']}/serviceAccounts/"
                                                    f"{call.params['account']}")
    row = sa_domain.find(s, account)
    if row is None:
        p = projects.find_project(s, project) if project != "-" else None
        chain = projects.project_chain(p.project_id) if p else [projects.ROOT]
        call.touch(project_id=p.project_id if p else "", name=f"projects/{project}/serviceAccounts/{account}",
                   type="service_account")
        call.require(permission, chain, f"projects/{project}/serviceAccounts/{account}")
        raise NotFound(f"Unknown service account: {account}" if "@" in account or account.isdigit()
                       else f"Invalid service account identifier: {account}")
    call.touch(project_id=row.project_id, name=f"projects/-/serviceAccounts/{row.unique_id}",
               type="service_account",
               labels={"email_id": row.email, "project_id": row.project_id, "unique_id": row.unique_id})
    call.require(permission, sa_domain.sa_chain(row), f"projects/-/serviceAccounts/{row.unique_id}")
    return row


# -- service accounts --------------------------------------------------------------------------


def create_service_account(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"accountId", "serviceAccount"}, "")
    account_id = string_field(call.body, "accountId", "")
    sa = object_field(call.body, "serviceAccount", "")
    allowed_fields(sa, {"displayName", "description", "name", "projectId", "email", "uniqueId", "etag",
                        "oauth2ClientId", "disabled"}, "service_account")
    display = string_field(sa, "displayName", "service_account")
    description = string_field(sa, "description", "service_account")
    with call.write() as s:
        project = _project(call, s, call.params["project"], "iam.serviceAccounts.create")
        row = sa_domain.create(s, project.project_id, account_id, display, description)
        call.touch(name=f"projects/{project.project_id}/serviceAccounts/{row.unique_id}", type="service_account",
                   labels={"email_id": row.email, "project_id": row.project_id, "unique_id": row.unique_id})
        return sa_domain.sa_json(row)


def get_service_account(call: Call) -> dict[str, Any]:
    with call.read() as s:
        return sa_domain.sa_json(_service_account(call, s, "iam.serviceAccounts.get"))


def list_service_accounts(call: Call) -> dict[str, Any]:
    with call.read() as s:
        project = _project(call, s, call.params["project"], "iam.serviceAccounts.list")
        rows = sa_domain.list_accounts(s, project.project_id)
    items, token = call.page([sa_domain.sa_json(r) for r in rows])
    return {"accounts": items, **({"nextPageToken": token} if token else {})} if items else {}


def patch_service_account(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"serviceAccount", "updateMask"}, "")
    body = object_field(call.body, "serviceAccount", "")
    with call.write() as s:
        row = _service_account(call, s, "iam.serviceAccounts.update")
        mask = call.body.get("updateMask") or call.arg("updateMask")
        if mask is not None and not isinstance(mask, str):
            raise InvalidArgument("updateMask must be a comma-separated string of field paths.")
        return sa_domain.sa_json(sa_domain.patch(row, body, mask))


def update_service_account(call: Call) -> dict[str, Any]:
    """The older PUT `update`: the body is the ServiceAccount itself."""
    with call.write() as s:
        row = _service_account(call, s, "iam.serviceAccounts.update")
        return sa_domain.sa_json(sa_domain.patch(row, call.body, "displayName,description"))


def delete_service_account(call: Call) -> dict[str, Any]:
    with call.write() as s:
        sa_domain.delete(s, _service_account(call, s, "iam.serviceAccounts.delete"))
    return {}


def set_service_account_disabled(disabled: bool) -> Any:
    def handler(call: Call) -> dict[str, Any]:
        with call.write() as s:
            perm = "iam.serviceAccounts.disable" if disabled else "iam.serviceAccounts.enable"
            sa_domain.set_disabled(_service_account(call, s, perm), disabled)
        return {}
    return handler


def undelete_service_account(call: Call) -> dict[str, Any]:
    account = call.params["account"]
    if not account.isdigit():
        raise InvalidArgument("Undelete takes the service account's unique id, not its email.")
    with call.write() as s:
        row = s.get(ServiceAccount, account)
        if row is None:
            call.require("iam.serviceAccounts.undelete", [projects.ROOT], f"projects/-/serviceAccounts/{account}")
            raise NotFound(f"Unknown service account: {account}")
        call.touch(project_id=row.project_id, name=f"projects/-/serviceAccounts/{row.unique_id}",
                   type="service_account",
                   labels={"email_id": row.email, "project_id": row.project_id, "unique_id": row.unique_id})
        call.require("iam.serviceAccounts.undelete", projects.project_chain(row.project_id),
                     f"projects/{row.project_id}")
        restored = sa_domain.undelete(s, account)
        return {"restoredAccount": sa_domain.sa_json(restored)}


def get_sa_iam_policy(call: Call) -> dict[str, Any]:
    return iam_methods.get_iam_policy(call, lambda s: sa_domain.sa_resource(
        _service_account(call, s, "iam.serviceAccounts.getIamPolicy")))


def set_sa_iam_policy(call: Call) -> dict[str, Any]:
    return iam_methods.set_iam_policy(call, lambda s: sa_domain.sa_resource(
        _service_account(call, s, "iam.serviceAccounts.setIamPolicy")), "serviceAccount")


def test_sa_iam_permissions(call: Call) -> dict[str, Any]:
    def chain(s: Session) -> tuple[list[str], None] | None:
        row = sa_domain.find(s, call.params["account"])
        return (sa_domain.sa_chain(row), None) if row is not None else None

    return iam_methods.test_iam_permissions(call, chain)


# -- service account keys ----------------------------------------------------------------------


def create_key(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"privateKeyType", "keyAlgorithm"}, "")
    with call.write() as s:
        sa = _service_account(call, s, "iam.serviceAccountKeys.create")
        row, data = keys_domain.create(s, sa, call.body, call.state.settings.base_url)
        body = keys_domain.key_json(sa, row)
        if call.record is not None:
            call.record.response = {"name": body["name"], "keyType": row.key_type}
        return {**body, "privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE", "privateKeyData": data}


def sign_blob(call: Call) -> dict[str, Any]:
    """Deprecated v1 signBlob: iamcredentials' signBlob with IAM v1's field names, no delegates."""
    allowed_fields(call.body, {"bytesToSign"}, "")
    key_id, signature = signing.sign_blob(call, "bytesToSign", method=ADMIN + "SignBlob", service=SERVICE)
    return {"keyId": key_id, "signature": base64.b64encode(signature).decode()}


def sign_jwt(call: Call) -> dict[str, Any]:
    """Deprecated v1 signJwt: iamcredentials' signJwt, no delegates; claims without `exp` get one
    an hour ahead, as this method's documentation says."""
    allowed_fields(call.body, {"payload"}, "")
    key_id, jwt = signing.sign_jwt(call, method=ADMIN + "SignJwt", service=SERVICE, default_lifetime=3600)
    return {"keyId": key_id, "signedJwt": jwt}
def upload_key(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"publicKeyData"}, "")
    with call.write() as s:
        sa = _service_account(call, s, "iam.serviceAccountKeys.create")
        row = keys_domain.upload(s, sa, call.body.get("publicKeyData"))
        body = keys_domain.key_json(sa, row)
        if call.record is not None:
            call.record.response = {"name": body["name"], "keyType": row.key_type, "keyOrigin": row.key_origin}
        return body


def list_keys(call: Call) -> dict[str, Any]:
    types = set(call.args("keyTypes")) - {"KEY_TYPE_UNSPECIFIED"}
    with call.read() as s:
        sa = _service_account(call, s, "iam.serviceAccountKeys.list")
        rows = [r for r in keys_domain.list_keys(s, sa) if not types or r.key_type in types]
        return {"keys": [keys_domain.key_json(sa, r) for r in rows]} if rows else {}


def get_key(call: Call) -> dict[str, Any]:
    with call.read() as s:
        sa = _service_account(call, s, "iam.serviceAccountKeys.get")
        row = keys_domain.get(s, sa, call.params["key"])
        return keys_domain.key_json(sa, row, public_key_type=call.arg("publicKeyType") or "TYPE_X509_PEM_FILE")


def delete_key(call: Call) -> dict[str, Any]:
    with call.write() as s:
        sa = _service_account(call, s, "iam.serviceAccountKeys.delete")
        keys_domain.user_managed(keys_domain.get(s, sa, call.params["key"])).deleted = True
    return {}


def set_key_disabled(disabled: bool) -> Any:
    def handler(call: Call) -> dict[str, Any]:
        with call.write() as s:
            perm = "iam.serviceAccountKeys.disable" if disabled else "iam.serviceAccountKeys.enable"
            sa = _service_account(call, s, perm)
            keys_domain.user_managed(keys_domain.get(s, sa, call.params["key"])).disabled = disabled
        return {}
    return handler


# -- roles -------------------------------------------------------------------------------------


def _role_view(body: dict[str, Any], view: str | None) -> dict[str, Any]:
    if view == "FULL":
        return body
    return {k: v for k, v in body.items() if k != "includedPermissions"}


def list_predefined_roles(call: Call) -> dict[str, Any]:
    view = call.arg("view")
    items, token = call.page([_role_view(r, view) for r in roles_domain.list_predefined_roles()])
    return {"roles": items, **({"nextPageToken": token} if token else {})}


def describe_predefined_role(call: Call) -> dict[str, Any]:
    role = get_predefined_role(f"roles/{call.params['role']}")
    if role is None:
        raise NotFound(f"The role named roles/{call.params['role']} was not found.")
    return role_to_json(role)


def _role_parent(call: Call, s: Any, permission: str) -> str:
    """`projects/P` or `organizations/N`, the parent of the custom roles a call acts on, once
    `permission` is granted there. Keyless's resource hierarchy has one root standing for every
    organization (keyless.projects.ROOT): an organization's roles are authorised against it."""
    role = call.params.get("role", "")
    if "organization" in call.params:
        parent = f"organizations/{call.params['organization']}"
        if not roles_domain.ORGANIZATION.match(parent):
            raise InvalidArgument(f"Invalid organization name: {parent[:100]!r}.")
        call.touch(name=f"{parent}/roles/{role}", type="iam_role",
                   labels={"organization_id": call.params["organization"], "role_name": role})
        call.require(permission, [projects.ROOT], parent)
        return parent
    project = _project(call, s, call.params["project"], permission)
    call.touch(name=f"projects/{project.project_id}/roles/{role}", type="iam_role",
               labels={"project_id": project.project_id, "role_name": role})
    return f"projects/{project.project_id}"


def _role_name(call: Call, parent: str) -> str:
    return f"{parent}/roles/{call.params['role']}"


def create_role(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"roleId", "role"}, "")
    role = object_field(call.body, "role", "")
    allowed_fields(role, {"title", "description", "includedPermissions", "stage", "etag", "name", "deleted"}, "role")
    with call.write() as s:
        parent = _role_parent(call, s, "iam.roles.create")
        row = roles_domain.create_custom_role(s, parent, call.body.get("roleId", ""), role)
        call.touch(name=row.name)
        if call.record is not None:
            call.record.resource_labels = {**call.record.resource_labels, "role_name": row.name}
        return roles_domain.custom_role_json(row)


def get_role(call: Call) -> dict[str, Any]:
    with call.read() as s:
        parent = _role_parent(call, s, "iam.roles.get")
        return roles_domain.custom_role_json(roles_domain.get_custom_role(s, _role_name(call, parent)))


def list_roles(call: Call) -> dict[str, Any]:
    with call.read() as s:
        parent = _role_parent(call, s, "iam.roles.list")
        if parent.startswith("organizations/"):
            rows = roles_domain.list_organization_roles(s, parent, call.flag("showDeleted"))
        else:
            rows = roles_domain.list_custom_roles(s, parent.removeprefix("projects/"), call.flag("showDeleted"))
    items, token = call.page([_role_view(roles_domain.custom_role_json(r), call.arg("view")) for r in rows])
    return {"roles": items, **({"nextPageToken": token} if token else {})} if items else {}


def patch_role(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"title", "description", "includedPermissions", "stage", "etag", "name", "deleted"},
                   "role")
    with call.write() as s:
        parent = _role_parent(call, s, "iam.roles.update")
        row = roles_domain.update_custom_role(s, _role_name(call, parent), call.body, update_mask(call))
        return roles_domain.custom_role_json(row)


def delete_role(call: Call) -> dict[str, Any]:
    with call.write() as s:
        parent = _role_parent(call, s, "iam.roles.delete")
        return roles_domain.custom_role_json(roles_domain.delete_custom_role(s, _role_name(call, parent)))


def undelete_role(call: Call) -> dict[str, Any]:
    with call.write() as s:
        parent = _role_parent(call, s, "iam.roles.undelete")
        return roles_domain.custom_role_json(roles_domain.undelete_custom_role(s, _role_name(call, parent)))


def query_testable_permissions(call: Call) -> dict[str, Any]:
    """Permissions testable on a resource; gcloud asks before creating or updating a custom role.

    gcloud builds `fullResourceName` from its endpoint override (e.g.
    `//127.0.0.1:8080/cloudresourcemanager/projects/p`), so only the trailing resource matters.
    """
    allowed_fields(call.body, {"fullResourceName", "pageSize", "pageToken"}, "")
    name = string_field(call.body, "fullResourceName", "")
    if not name.startswith("//") or "/projects/" not in name and "/organizations/" not in name:
        raise InvalidArgument(f"Invalid full resource name: {name!r}.")
    size = call.body.get("pageSize", 100)
    start = call.body.get("pageToken") or "0"
    if not isinstance(size, int) or not isinstance(start, str) or not start.isdigit():
        raise InvalidArgument("Invalid page token or page size.")
    perms = sorted(known_permissions())
    size = max(1, min(size, 1000))
    begin = int(start)
    chunk = perms[begin:begin + size]
    body: dict[str, Any] = {"permissions": [{"name": p, "stage": "GA", "customRolesSupportLevel": "SUPPORTED"}
                                            for p in chunk]}
    if begin + size < len(perms):
        body["nextPageToken"] = str(begin + size)
    return body


_RESOURCE_TAIL = re.compile(r"((?:projects|organizations|folders)/.*)$")


def _target(call: Call, s: Session, full_name: Any, permission_of: dict[str, str]) -> Target:
    """The resource a full resource name names, once the caller may read its policy. gcloud may
    build the name from its endpoint override (`//127.0.0.1:8080/iam/projects/p/...`): the host
    and Keyless's path prefix are not part of the resource."""
    if not isinstance(full_name, str) or not full_name.startswith("//") or len(full_name) > 2048:
        raise InvalidArgument(f"Invalid full resource name: {str(full_name)[:200]!r}.")
    host, _, path = full_name[2:].partition("/")
    tail = _RESOURCE_TAIL.search(path) if not host.endswith(".googleapis.com") else None
    try:
        target = targets.resolve(s, f"//{host}/{path}" if tail is None else tail.group(1))
    except InvalidArgument as exc:
        raise InvalidArgument(f"Invalid full resource name: {full_name[:200]!r}.") from exc
    call.touch(project_id=target.project_id)
    if target.kind in ("bucket", "object", "managed folder"):
        # projectOwner:P & co. in the bucket's policy, as Cloud Storage checks its own getIamPolicy
        principal = with_convenience_members(call.state.authz, call.principal, target.project_id)
        decision = call.state.authz.check(principal, permission_of[target.kind], target.chain)
        if call.record is not None:
            call.record.authorize(full_name, permission_of[target.kind], decision.granted)
        if not decision.granted:
            raise permission_denied(permission_of[target.kind], full_name)
    else:
        call.require(permission_of[target.kind], target.chain, full_name)
    if not target.exists:
        raise NotFound(f"The {target.kind} {full_name[:200]} does not exist.")
    return target


def query_grantable_roles(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"fullResourceName", "view", "pageSize", "pageToken"}, "")
    view = call.body.get("view", "BASIC")
    if view not in ("BASIC", "FULL"):
        raise InvalidArgument(f"Invalid value at 'view' (type.googleapis.com/google.iam.admin.v1.RoleView), "
                              f"\"{str(view)[:50]}\"")
    size, start = call.body.get("pageSize") or 300, call.body.get("pageToken") or "0"
    if not isinstance(size, int) or not 0 < size <= 3000 or not isinstance(start, str) or not start.isdigit():
        raise InvalidArgument("Invalid page token or page size.")
    with call.read() as s:
        target = _target(call, s, call.body.get("fullResourceName"), grantable.GET_POLICY_PERMISSION)
        found = grantable.grantable_roles(s, target, full=view == "FULL")
    begin = int(start)
    if begin > len(found):
        raise InvalidArgument("Invalid page token or page size.")
    body: dict[str, Any] = {"roles": found[begin:begin + size]}
    if begin + size < len(found):
        body["nextPageToken"] = str(begin + size)
    return body


def query_auditable_services(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"fullResourceName"}, "")
    with call.read() as s:
        target = _target(call, s, call.body.get("fullResourceName"), grantable.GET_POLICY_PERMISSION)
    return {"services": [{"name": name} for name in grantable.auditable_services(target)]}


def lint_policy(call: Call) -> dict[str, Any]:
    """Only the request's condition is linted; a named resource is checked for the caller's right to
    read its policy (https://cloud.google.com/iam/docs/linting-policies#required-roles), never read."""
    allowed_fields(call.body, {"fullResourceName", "condition"}, "")
    condition = object_field(call.body, "condition", "")
    if "condition" not in call.body:
        raise InvalidArgument("condition is required: the IAM object to lint.")
    allowed_fields(condition, {"expression", "title", "description", "location"}, "condition")
    if call.body.get("fullResourceName") is not None:
        with call.read() as s:
            _target(call, s, call.body["fullResourceName"], grantable.GET_POLICY_PERMISSION)
    results = condition_lint.lint_condition(condition)
    return {"lintResults": results} if results else {}


# -- workload identity pools and providers ------------------------------------------------------


def _location(call: Call) -> None:
    if call.params.get("location") != "global":
        raise InvalidArgument(f"Location '{call.params.get('location')}' is not supported: workload identity "
                              "pools live in location 'global'.")


def _pool_project(call: Call, s: Any, permission: str) -> Project:
    _location(call)
    project = _project(call, s, call.params["project"], permission, pool=call.params.get("pool", ""))
    call.touch(name=pools.pool_name(project.project_number, call.params.get("pool", "")),
               type="audited_resource", labels={"project_id": project.project_id, "service": SERVICE})
    return project


def _pool_body(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"name", "displayName", "description", "state", "disabled", "expireTime",
                               "sessionDuration", "mode", *POOL_UNIMPLEMENTED}, "workload_identity_pool")
    _refuse_unimplemented(call.body, POOL_UNIMPLEMENTED)
    return call.body


# Fields of Google's discovery document whose features Keyless does not have: known (never "Unknown
# name", which would say Google lacks them), and refused by name when set (issue #19).
POOL_UNIMPLEMENTED = {"inlineCertificateIssuanceConfig": "managed workload identities' certificate issuance",
                      "inlineTrustConfig": "managed workload identities' trust configuration"}
PROVIDER_UNIMPLEMENTED = {"saml": "SAML providers", "x509": "X.509 providers",
                          "actorProviders": "actor providers"}


def _refuse_unimplemented(body: dict[str, Any], fields: dict[str, str]) -> None:
    for name, feature in fields.items():
        if body.get(name) not in (None, {}, []):
            raise InvalidArgument(f"Field '{name}' is not supported: Keyless does not implement {feature}.")


def _op(s: Any, resource: str, body: dict[str, Any], response_type: str) -> dict[str, Any]:
    return operations.record_done(s, f"{resource}/operations/{operations.new_id()}", body,
                                  response_type=response_type)


def create_pool(call: Call) -> dict[str, Any]:
    body = _pool_body(call)
    pool_id = call.arg("workloadIdentityPoolId")
    if not pool_id:
        raise InvalidArgument("workloadIdentityPoolId is required.")
    with call.write() as s:
        call.params["pool"] = pool_id
        project = _pool_project(call, s, "iam.workloadIdentityPools.create")
        row = pools.create_pool(s, project.project_number, pool_id, body)
        s.flush()
        return _op(s, row.name, pools.pool_json(row), POOL_TYPE)


def _pool_name(call: Call, project: Project) -> str:
    return pools.pool_name(project.project_number, call.params["pool"])


def get_pool(call: Call) -> dict[str, Any]:
    with call.read() as s:
        project = _pool_project(call, s, "iam.workloadIdentityPools.get")
        return pools.pool_json(pools.get_pool(s, _pool_name(call, project)))


def list_pools(call: Call) -> dict[str, Any]:
    with call.read() as s:
        project = _pool_project(call, s, "iam.workloadIdentityPools.list")
        rows = pools.list_pools(s, project.project_number, call.flag("showDeleted"))
    items, token = call.page([pools.pool_json(r) for r in rows])
    return {"workloadIdentityPools": items, **({"nextPageToken": token} if token else {})} if items else {}


def _mask_or_fields(call: Call, body: dict[str, Any], candidates: tuple[str, ...]) -> list[str]:
    mask = update_mask(call)
    if mask is None:
        mask = [f for f in candidates if f in body]
    if not mask:
        raise InvalidArgument("updateMask is required.")
    return mask


def patch_pool(call: Call) -> dict[str, Any]:
    body = _pool_body(call)
    with call.write() as s:
        project = _pool_project(call, s, "iam.workloadIdentityPools.update")
        row = pools.get_pool(s, _pool_name(call, project))
        pools.update_pool(row, body, _mask_or_fields(call, body, ("displayName", "description", "disabled")))
        s.flush()
        return _op(s, row.name, pools.pool_json(row), POOL_TYPE)


def delete_pool(call: Call) -> dict[str, Any]:
    with call.write() as s:
        project = _pool_project(call, s, "iam.workloadIdentityPools.delete")
        row = pools.delete_pool(pools.get_pool(s, _pool_name(call, project)))
        s.flush()
        return _op(s, row.name, pools.pool_json(row), POOL_TYPE)


def undelete_pool(call: Call) -> dict[str, Any]:
    with call.write() as s:
        project = _pool_project(call, s, "iam.workloadIdentityPools.undelete")
        row = pools.undelete_pool(pools.get_pool(s, _pool_name(call, project)))
        s.flush()
        return _op(s, row.name, pools.pool_json(row), POOL_TYPE)


def get_pool_iam_policy(call: Call) -> dict[str, Any]:
    def locate(s: Session) -> str:
        project = _pool_project(call, s, "iam.workloadIdentityPools.getIamPolicy")
        return pools.get_pool(s, _pool_name(call, project)).name

    return iam_methods.get_iam_policy(call, locate)


def set_pool_iam_policy(call: Call) -> dict[str, Any]:
    def locate(s: Session) -> str:
        project = _pool_project(call, s, "iam.workloadIdentityPools.setIamPolicy")
        return pools.get_pool(s, _pool_name(call, project)).name

    return iam_methods.set_iam_policy(call, locate, "workloadIdentityPool")


def test_pool_iam_permissions(call: Call) -> dict[str, Any]:
    def chain(s: Session) -> tuple[list[str], None] | None:
        _location(call)
        project = projects.find_project(s, call.params["project"], include_deleted=False)
        if project is None:
            return None
        name = _pool_name(call, project)
        if s.get(WorkloadIdentityPool, name) is None:
            return None
        return [name, *projects.project_chain(project.project_id)], None

    return iam_methods.test_iam_permissions(call, chain)


def get_operation(call: Call) -> dict[str, Any]:
    with call.read() as s:
        _location(call)
        project = _project(call, s, call.params["project"], "iam.workloadIdentityPools.get", pool=call.params["pool"])
        p = call.params
        name = f"{p['pool']}/providers/{p['provider']}" if "provider" in p else p["pool"]
        if "key" in p:
            name += f"/keys/{p['key']}"
        return operations.get(s, f"projects/{project.project_number}/locations/global/workloadIdentityPools/"
                                 f"{name}/operations/{p['operation']}")


def _provider_body(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"name", "displayName", "description", "state", "disabled", "attributeMapping",
                               "attributeCondition", "oidc", "aws", "expireTime", *PROVIDER_UNIMPLEMENTED},
                   "workload_identity_pool_provider")
    _refuse_unimplemented(call.body, PROVIDER_UNIMPLEMENTED)
    return call.body


def _provider_name(call: Call, project: Project) -> str:
    return f"{_pool_name(call, project)}/providers/{call.params['provider']}"


def _audit_request(call: Call, kind: str, **fields: Any) -> None:
    """The entry's AuditLog.request, as Google logs a provider's create and update (the request's
    type and fields): what the console's "what changed" view reads an edited condition or mapping from."""
    if call.record is not None:
        call.record.request = {"@type": f"type.googleapis.com/google.iam.v1.{kind}", **fields}


def create_provider(call: Call) -> dict[str, Any]:
    body = _provider_body(call)
    provider_id = call.arg("workloadIdentityPoolProviderId")
    if not provider_id:
        raise InvalidArgument("workloadIdentityPoolProviderId is required.")
    with call.write() as s:
        project = _pool_project(call, s, "iam.workloadIdentityPoolProviders.create")
        pool = pools.get_pool(s, _pool_name(call, project))
        row = pools.create_provider(s, pool, provider_id, body,
                                    allow_insecure_loopback=call.state.settings.allow_insecure_issuers)
        s.flush()
        call.touch(name=row.name)
        _audit_request(call, "CreateWorkloadIdentityPoolProviderRequest", parent=pool.name,
                       workloadIdentityPoolProviderId=provider_id, workloadIdentityPoolProvider=body)
        return _op(s, row.name, pools.provider_json(row), PROVIDER_TYPE)


def get_provider(call: Call) -> dict[str, Any]:
    with call.read() as s:
        project = _pool_project(call, s, "iam.workloadIdentityPoolProviders.get")
        return pools.provider_json(pools.get_provider(s, _provider_name(call, project)))


def list_providers(call: Call) -> dict[str, Any]:
    with call.read() as s:
        project = _pool_project(call, s, "iam.workloadIdentityPoolProviders.list")
        pool = pools.get_pool(s, _pool_name(call, project))
        rows = pools.list_providers(s, pool, call.flag("showDeleted"))
    items, token = call.page([pools.provider_json(r) for r in rows])
    return {"workloadIdentityPoolProviders": items, **({"nextPageToken": token} if token else {})} if items else {}


def patch_provider(call: Call) -> dict[str, Any]:
    body = _provider_body(call)
    with call.write() as s:
        project = _pool_project(call, s, "iam.workloadIdentityPoolProviders.update")
        row = pools.get_provider(s, _provider_name(call, project))
        call.touch(name=row.name)
        mask = _mask_or_fields(call, body, ("displayName", "description", "disabled", "attributeMapping",
                                            "attributeCondition", "oidc", "aws"))
        pools.update_provider(row, body, mask, allow_insecure_loopback=call.state.settings.allow_insecure_issuers)
        s.flush()
        _audit_request(call, "UpdateWorkloadIdentityPoolProviderRequest", updateMask=",".join(mask),
                       workloadIdentityPoolProvider={**{k: body[k] for k in mask if k in body}, "name": row.name})
        return _op(s, row.name, pools.provider_json(row), PROVIDER_TYPE)


def delete_provider(call: Call) -> dict[str, Any]:
    with call.write() as s:
        project = _pool_project(call, s, "iam.workloadIdentityPoolProviders.delete")
        row = pools.delete_provider(pools.get_provider(s, _provider_name(call, project)))
        call.touch(name=row.name)
        s.flush()
        return _op(s, row.name, pools.provider_json(row), PROVIDER_TYPE)


def undelete_provider(call: Call) -> dict[str, Any]:
    with call.write() as s:
        project = _pool_project(call, s, "iam.workloadIdentityPoolProviders.undelete")
        row = pools.undelete_provider(s, pools.get_provider(s, _provider_name(call, project)))
        call.touch(name=row.name)
        s.flush()
        return _op(s, row.name, pools.provider_json(row), PROVIDER_TYPE)


# -- providers' keys ----------------------------------------------------------------------------


def _key_provider(call: Call, s: Any, permission: str) -> WorkloadIdentityPoolProvider:
    project = _pool_project(call, s, permission)
    provider = pools.get_provider(s, _provider_name(call, project))
    key = call.params.get("key")
    call.touch(name=f"{provider.name}/keys/{key}" if key else provider.name)
    return provider


def create_provider_key(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"name", "keyData", "state", "use", "expireTime"}, "workload_identity_pool_provider_key")
    allowed_fields(object_field(call.body, "keyData", "workload_identity_pool_provider_key"),
                   {"format", "notBeforeTime", "notAfterTime", "key", "keySpec"},
                   "workload_identity_pool_provider_key.key_data")
    key_id = call.arg("workloadIdentityPoolProviderKeyId")
    if not key_id:
        raise InvalidArgument("workloadIdentityPoolProviderKeyId is required.")
    call.params["key"] = key_id
    with call.write() as s:
        provider = _key_provider(call, s, "iam.workloadIdentityPoolProviderKeys.create")
        row = provider_keys.create_key(s, provider, key_id, call.body)
        s.flush()
        return _op(s, row.name, provider_keys.key_json(row), PROVIDER_KEY_TYPE)


def _key_name(provider: WorkloadIdentityPoolProvider, call: Call) -> str:
    return f"{provider.name}/keys/{call.params['key']}"


def get_provider_key(call: Call) -> dict[str, Any]:
    with call.read() as s:
        provider = _key_provider(call, s, "iam.workloadIdentityPoolProviderKeys.get")
        return provider_keys.key_json(provider_keys.get_key(s, _key_name(provider, call)))


def list_provider_keys(call: Call) -> dict[str, Any]:
    with call.read() as s:
        provider = _key_provider(call, s, "iam.workloadIdentityPoolProviderKeys.list")
        rows = provider_keys.list_keys(s, provider, show_deleted=call.flag("showDeleted"))
    items, token = call.page([provider_keys.key_json(r) for r in rows])
    return {"workloadIdentityPoolProviderKeys": items, **({"nextPageToken": token} if token else {})} \
        if items else {}


def delete_provider_key(call: Call) -> dict[str, Any]:
    with call.write() as s:
        provider = _key_provider(call, s, "iam.workloadIdentityPoolProviderKeys.delete")
        row = provider_keys.delete_key(provider_keys.get_key(s, _key_name(provider, call)))
        s.flush()
        return _op(s, row.name, provider_keys.key_json(row), PROVIDER_KEY_TYPE)


def undelete_provider_key(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, set(), "")
    with call.write() as s:
        provider = _key_provider(call, s, "iam.workloadIdentityPoolProviderKeys.undelete")
        row = provider_keys.undelete_key(provider_keys.get_key(s, _key_name(provider, call)))
        s.flush()
        return _op(s, row.name, provider_keys.key_json(row), PROVIDER_KEY_TYPE)


def routes(state: ServerState) -> list[Route]:
    def r(method: str, path: str, handler: Any, audit_method: str = "", **kw: Any) -> Route:
        return route(state, method, path, handler, service=SERVICE, method=audit_method, **kw)

    sa = "/v1/projects/{project}/serviceAccounts/{account}"
    pool = "/v1/projects/{project}/locations/{location}/workloadIdentityPools/{pool}"
    prov = pool + "/providers/{provider}"
    return [
        r("POST", "/v1/projects/{project}/serviceAccounts", create_service_account, ADMIN + "CreateServiceAccount"),
        r("GET", "/v1/projects/{project}/serviceAccounts", list_service_accounts),
        r("GET", sa, get_service_account),
        r("PATCH", sa, patch_service_account, ADMIN + "PatchServiceAccount"),
        r("PUT", sa, update_service_account, ADMIN + "UpdateServiceAccount"),
        r("DELETE", sa, delete_service_account, ADMIN + "DeleteServiceAccount"),
        r("POST", sa + ":disable", set_service_account_disabled(True), ADMIN + "DisableServiceAccount"),
        r("POST", sa + ":enable", set_service_account_disabled(False), ADMIN + "EnableServiceAccount"),
        r("POST", sa + ":undelete", undelete_service_account, ADMIN + "UndeleteServiceAccount"),
        r("POST", sa + ":getIamPolicy", get_sa_iam_policy),
        r("POST", sa + ":setIamPolicy", set_sa_iam_policy, ADMIN + "SetIAMPolicy"),
        r("POST", sa + ":testIamPermissions", test_sa_iam_permissions),
        r("POST", sa + ":signBlob", sign_blob, audited=False),
        r("POST", sa + ":signJwt", sign_jwt, audited=False),
        r("POST", sa + "/keys", create_key, ADMIN + "CreateServiceAccountKey"),
        r("GET", sa + "/keys", list_keys),
        r("POST", sa + "/keys:upload", upload_key, ADMIN + "UploadServiceAccountKey"),
        r("GET", sa + "/keys/{key}", get_key),
        r("DELETE", sa + "/keys/{key}", delete_key, ADMIN + "DeleteServiceAccountKey"),
        r("POST", sa + "/keys/{key}:disable", set_key_disabled(True), ADMIN + "DisableServiceAccountKey"),
        r("POST", sa + "/keys/{key}:enable", set_key_disabled(False), ADMIN + "EnableServiceAccountKey"),
        r("POST", "/v1/permissions:queryTestablePermissions", query_testable_permissions),
        r("POST", "/v1/roles:queryGrantableRoles", query_grantable_roles),
        r("POST", "/v1/iamPolicies:queryAuditableServices", query_auditable_services),
        r("POST", "/v1/iamPolicies:lintPolicy", lint_policy),
        r("GET", "/v1/roles", list_predefined_roles),
        r("GET", "/v1/roles/{role}", describe_predefined_role),
        r("POST", "/v1/projects/{project}/roles", create_role, ADMIN + "CreateRole"),
        r("GET", "/v1/projects/{project}/roles", list_roles),
        r("GET", "/v1/projects/{project}/roles/{role}", get_role),
        r("PATCH", "/v1/projects/{project}/roles/{role}", patch_role, ADMIN + "UpdateRole"),
        r("DELETE", "/v1/projects/{project}/roles/{role}", delete_role, ADMIN + "DeleteRole"),
        r("POST", "/v1/projects/{project}/roles/{role}:undelete", undelete_role, ADMIN + "UndeleteRole"),
        r("POST", "/v1/organizations/{organization}/roles", create_role, ADMIN + "CreateRole"),
        r("GET", "/v1/organizations/{organization}/roles", list_roles),
        r("GET", "/v1/organizations/{organization}/roles/{role}", get_role),
        r("PATCH", "/v1/organizations/{organization}/roles/{role}", patch_role, ADMIN + "UpdateRole"),
        r("DELETE", "/v1/organizations/{organization}/roles/{role}", delete_role, ADMIN + "DeleteRole"),
        r("POST", "/v1/organizations/{organization}/roles/{role}:undelete", undelete_role, ADMIN + "UndeleteRole"),
        r("POST", "/v1/projects/{project}/locations/{location}/workloadIdentityPools", create_pool,
          WIF + "CreateWorkloadIdentityPool"),
        r("GET", "/v1/projects/{project}/locations/{location}/workloadIdentityPools", list_pools),
        r("GET", pool, get_pool),
        r("PATCH", pool, patch_pool, WIF + "UpdateWorkloadIdentityPool"),
        r("DELETE", pool, delete_pool, WIF + "DeleteWorkloadIdentityPool"),
        r("POST", pool + ":undelete", undelete_pool, WIF + "UndeleteWorkloadIdentityPool"),
        r("POST", pool + ":getIamPolicy", get_pool_iam_policy),
        r("POST", pool + ":setIamPolicy", set_pool_iam_policy, WIF + "SetIamPolicy"),
        r("POST", pool + ":testIamPermissions", test_pool_iam_permissions),
        r("POST", pool + "/providers", create_provider, WIF + "CreateWorkloadIdentityPoolProvider"),
        r("GET", pool + "/providers", list_providers),
        r("GET", prov, get_provider),
        r("PATCH", prov, patch_provider, WIF + "UpdateWorkloadIdentityPoolProvider"),
        r("DELETE", prov, delete_provider, WIF + "DeleteWorkloadIdentityPoolProvider"),
        r("POST", prov + ":undelete", undelete_provider, WIF + "UndeleteWorkloadIdentityPoolProvider"),
        r("GET", pool + "/operations/{operation}", get_operation),
        r("GET", prov + "/operations/{operation}", get_operation),
        r("POST", prov + "/keys", create_provider_key, WIF + "CreateWorkloadIdentityPoolProviderKey"),
        r("GET", prov + "/keys", list_provider_keys),
        r("GET", prov + "/keys/{key}", get_provider_key),
        r("DELETE", prov + "/keys/{key}", delete_provider_key, WIF + "DeleteWorkloadIdentityPoolProviderKey"),
        r("POST", prov + "/keys/{key}:undelete", undelete_provider_key, WIF + "UndeleteWorkloadIdentityPoolProviderKey"),
        r("GET", prov + "/keys/{key}/operations/{operation}", get_operation),
    ]
