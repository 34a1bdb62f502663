"""Cloud Resource Manager API (cloudresourcemanager.googleapis.com), v1 and v3: projects,
their IAM policies, and the operations `projects create` returns.

REST references: https://cloud.google.com/resource-manager/reference/rest/v1/projects and
/v3/projects. gcloud's `projects` commands use v1; google-auth's project lookup uses v1 by
number; v3 is served for newer clients.

v3 `projects.capabilityConfigs` (issue #20; the domain is keyless.capability_configs) answers
create, patch and delete with a done Operation, as the other v3 methods here, and writes their
Admin Activity entries; get and list write Data Access (ADMIN_READ) entries where the project's
auditConfigs enable them. Permissions: Google
documents none for CapabilityConfigs (its roles, as of the 2026-08 snapshot in
keyless/iam/predefined_roles.json, hold no `resourcemanager.capabilityConfigs.*`), so Keyless
checks those of the sibling Capability resource (v3 folders.capabilities get/patch), which the
basic roles do hold: `resourcemanager.capabilities.get` (viewer, editor, owner) for get and list,
`resourcemanager.capabilities.update` (editor, owner) for create, patch and delete, on the parent
project; the management project must be one the caller may `resourcemanager.projects.get`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.routing import Route

from keyless import capability_configs, operations, projects
from keyless.api import iam_methods
from keyless.api.http import Call, allowed_fields, data_access_method, object_field, route, update_mask
from keyless.audit.data_access import ADMIN_READ
from keyless.errors import InvalidArgument, PermissionDenied
from keyless.iam.policy import add_binding
from keyless.iam.principal import Principal
from keyless.state import ServerState
from keyless.store.models import Project

SERVICE = "cloudresourcemanager.googleapis.com"
V1_PROJECT_TYPE = "type.googleapis.com/google.cloudresourcemanager.v1.Project"
V3_PROJECT_TYPE = "type.googleapis.com/google.cloud.resourcemanager.v3.Project"


def _display(project_id: str) -> str:
    return f"//cloudresourcemanager.googleapis.com/projects/{project_id}"


def _visible_project(call: Call, s: Any, id_or_number: str, permission: str) -> Project:
    """Find a project the caller may act on; 403 (not 404) when it may not, as Google does."""
    row = projects.find_project(s, id_or_number)
    chain = projects.project_chain(row.project_id) if row else [projects.project_resource(id_or_number), projects.ROOT]
    pid = row.project_id if row else id_or_number
    call.touch(project_id=pid, name=f"projects/{pid}", type="project", labels={"project_id": pid})
    call.require(permission, chain, _display(id_or_number))
    if row is None:
        # Google never confirms that a project does not exist: it answers 403 to everyone.
        raise PermissionDenied("The caller does not have permission")
    return row


def _creator_member(principal: Principal) -> str:
    return principal.member


def create_project(call: Call, *, v3: bool = False) -> dict[str, Any]:
    body = call.body
    # every field of v1's and v3's Project: output-only ones ignored, as Google does (issue #19)
    allowed_fields(body, {"projectId", "name", "displayName", "labels", "parent", "projectNumber",
                          "lifecycleState", "createTime", "state", "etag", "updateTime", "deleteTime",
                          "configuredCapabilities", "isManagementProject", "managementType", "tags"}, "project")
    if body.get("tags"):
        raise InvalidArgument("Field 'tags' is not supported: Keyless does not implement resource tags.")
    project_id = body.get("projectId")
    pid = project_id if isinstance(project_id, str) else ""
    call.touch(project_id=pid, name=f"projects/{pid}", type="project", labels={"project_id": pid})
    call.require("resourcemanager.projects.create", [projects.ROOT], "//cloudresourcemanager.googleapis.com/")
    project_id = projects.validate_project_id(project_id)
    with call.write() as s:
        row = projects.create_project(s, project_id, name=body.get("displayName" if v3 else "name"),
                                      labels=body.get("labels"), parent=body.get("parent") if not v3 else None)
        s.flush()
        # The creator owns what it creates (https://cloud.google.com/resource-manager/docs/access-control-proj).
        add_binding(s, projects.project_resource(row.project_id), "roles/owner",
                    _creator_member(call.principal), call.state.role_exists(s), lambda m: None)
        if v3:
            name = f"operations/cp.{operations.new_id()}"
            return operations.record_done(s, name, projects.project_v3_json(row), response_type=V3_PROJECT_TYPE)
        name = f"operations/cp.{row.project_number}"
        return operations.record_done(s, name, projects.project_v1_json(row), response_type=V1_PROJECT_TYPE)


def get_project(call: Call) -> dict[str, Any]:
    with call.read() as s:
        row = _visible_project(call, s, call.params["project"], "resourcemanager.projects.get")
        return projects.project_v1_json(row)


def get_project_v3(call: Call) -> dict[str, Any]:
    with call.read() as s:
        row = _visible_project(call, s, call.params["project"], "resourcemanager.projects.get")
        return projects.project_v3_json(row)


def _listable(call: Call) -> list[Project]:
    with call.read() as s:
        rows = projects.list_projects(s)
    return [r for r in rows if call.state.authz.check(call.principal, "resourcemanager.projects.get",
                                                     projects.project_chain(r.project_id)).granted]


def list_projects(call: Call) -> dict[str, Any]:
    rows = _listable(call)
    flt = (call.arg("filter") or "").strip()
    if flt:
        rows = [r for r in rows if _matches_simple_filter(r, flt)]
    items, token = call.page([projects.project_v1_json(r) for r in rows])
    return {"projects": items, **({"nextPageToken": token} if token else {})}


def search_projects_v3(call: Call) -> dict[str, Any]:
    rows = _listable(call)
    query = (call.arg("query") or "").strip()  # v3 projects.search's `id:P`, `displayName:N`, `state:S` terms
    if query:
        rows = [r for r in rows if _matches_simple_filter(r, query)]
    items, token = call.page([projects.project_v3_json(r) for r in rows])
    return {"projects": items, **({"nextPageToken": token} if token else {})}


def _matches_simple_filter(row: Project, flt: str) -> bool:
    """The `field:value` / `field=value` terms gcloud sends for `projects list --filter`."""
    fields = {"id": row.project_id, "projectid": row.project_id, "name": row.display_name,
              "displayname": row.display_name, "lifecyclestate": row.lifecycle_state, "state": row.lifecycle_state,
              "projectnumber": row.project_number}
    for term in flt.replace(" AND ", " ").split():
        for sep in (":", "="):
            if sep in term:
                key, value = term.split(sep, 1)
                key = key.strip().lower().replace("_", "")
                value = value.strip().strip("\"'")
                if key in fields and fields[key] != value and value != "*":
                    return False
                break
    return True


def delete_project(call: Call) -> dict[str, Any]:
    with call.write() as s:
        row = _visible_project(call, s, call.params["project"], "resourcemanager.projects.delete")
        projects.delete_project(s, row.project_id)
    return {}


def undelete_project(call: Call) -> dict[str, Any]:
    with call.write() as s:
        row = _visible_project(call, s, call.params["project"], "resourcemanager.projects.undelete")
        projects.undelete_project(s, row.project_id)
    return {}


PROJECT_V1_FIELDS = {"projectId", "name", "labels", "parent", "projectNumber", "lifecycleState", "createTime",
                     "configuredCapabilities", "isManagementProject", "managementType", "tags"}


def update_project(call: Call) -> dict[str, Any]:
    """v1 `update` (PUT): the body is the whole Project; name and labels change (an absent one is
    cleared), parent may be set once; the rest is output only."""
    allowed_fields(call.body, PROJECT_V1_FIELDS, "project")
    if call.body.get("tags"):
        raise InvalidArgument("Field 'tags' is not supported: Keyless does not implement resource tags.")
    with call.write() as s:
        row = _visible_project(call, s, call.params["project"], "resourcemanager.projects.update")
        parent = call.body.get("parent")
        if parent is not None and parent != row.parent:
            if row.parent:
                raise InvalidArgument("A project's parent cannot be changed by update: use projects.move (v3).")
            given = object_field(call.body, "parent", "project")
            row.parent = projects.parse_parent(f"{given.get('type')}s/{given.get('id')}")
        projects.update_project(row, name=call.body.get("name"), labels=call.body.get("labels"),
                                fields={"name", "labels"})
        return projects.project_v1_json(row)


def _v3_op(s: Session, kind: str, row: Project) -> dict[str, Any]:
    name = f"operations/{kind}.{operations.new_id()}"
    return operations.record_done(s, name, projects.project_v3_json(row), response_type=V3_PROJECT_TYPE)


def patch_project_v3(call: Call) -> dict[str, Any]:
    """v3 `patch`: displayName and labels, by updateMask (default: the fields the body sets)."""
    allowed_fields(call.body, {"projectId", "name", "displayName", "labels", "parent", "state", "createTime",
                               "updateTime", "deleteTime", "etag", "configuredCapabilities",
                               "isManagementProject", "managementType", "tags"}, "project")
    mask = update_mask(call)
    if mask is None:
        mask = [f for f in ("displayName", "labels") if f in call.body]
    unknown = set(mask) - {"displayName", "labels"}
    if unknown:
        raise InvalidArgument(f"Invalid update_mask path: {sorted(unknown)[0]!r}: only displayName and labels "
                              "can be updated.")
    fields = {"name" if f == "displayName" else f for f in mask}
    with call.write() as s:
        row = _visible_project(call, s, call.params["project"], "resourcemanager.projects.update")
        projects.update_project(row, name=call.body.get("displayName"), labels=call.body.get("labels"),
                                fields=fields)
        return _v3_op(s, "pu", row)


def delete_project_v3(call: Call) -> dict[str, Any]:
    with call.write() as s:
        row = _visible_project(call, s, call.params["project"], "resourcemanager.projects.delete")
        projects.delete_project(s, row.project_id)
        return _v3_op(s, "dp", row)


def undelete_project_v3(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, set(), "")
    with call.write() as s:
        row = _visible_project(call, s, call.params["project"], "resourcemanager.projects.undelete")
        projects.undelete_project(s, row.project_id)
        return _v3_op(s, "up", row)


def move_project_v3(call: Call) -> dict[str, Any]:
    """v3 `move`: the project's parent becomes `destinationParent`. Keyless has one hierarchy root
    (projects.ROOT) standing for every organization and folder, so both permissions Google asks
    for (move on the project, create under the destination) are checked against it."""
    allowed_fields(call.body, {"destinationParent"}, "")
    destination = call.body.get("destinationParent")
    projects.parse_parent(destination)
    with call.write() as s:
        row = _visible_project(call, s, call.params["project"], "resourcemanager.projects.move")
        call.require("resourcemanager.projects.create", [projects.ROOT],
                     f"//cloudresourcemanager.googleapis.com/{destination}")
        projects.move_project(row, destination)
        return _v3_op(s, "mp", row)


CAPABILITY_GET = "resourcemanager.capabilities.get"
CAPABILITY_UPDATE = "resourcemanager.capabilities.update"


def _capability_op(s: Session, kind: str, response: dict[str, Any] | None, response_type: str) -> dict[str, Any]:
    """A done Operation whose metadata is the method's (empty) Create/Update/DeleteCapabilityConfigMetadata."""
    metadata = {"@type": f"type.googleapis.com/google.cloud.resourcemanager.v3.{kind}CapabilityConfigMetadata"}
    return operations.record_done(s, f"operations/cc.{operations.new_id()}", response, response_type=response_type,
                                  metadata=metadata)


def _config_target(call: Call, s: Session, permission: str) -> Project:
    """The parent project, authorised; the audit entry names the CapabilityConfig."""
    row = _visible_project(call, s, call.params["project"], permission)
    config = call.params.get("config") or call.arg("capabilityConfigId") or ""
    call.touch(name=f"projects/{row.project_number}/capabilityConfigs/{config[:30]}" if config else "")
    return row


def create_capability_config(call: Call) -> dict[str, Any]:
    config_id = capability_configs.validate_id(call.arg("capabilityConfigId"))
    number = capability_configs.management_project_number(call.body.get("managementProject"))
    with call.write() as s:
        row = _config_target(call, s, CAPABILITY_UPDATE)
        management = projects.find_project(s, number, include_deleted=False)
        chain = projects.project_chain(management.project_id) if management else [f"projects/{number}", projects.ROOT]
        call.require("resourcemanager.projects.get", chain, _display(number))
        if management is None:  # never confirmed missing, as projects.get
            raise PermissionDenied("The caller does not have permission")
        config = capability_configs.create(s, row, config_id, call.body, management)
        s.flush()
        return _capability_op(s, "Create", capability_configs.as_json(row, config), capability_configs.RESPONSE_TYPE)


def get_capability_config(call: Call) -> dict[str, Any]:
    with call.read() as s:
        row = _config_target(call, s, CAPABILITY_GET)
        return capability_configs.as_json(row, capability_configs.find(s, row, call.params["config"]))


def list_capability_configs(call: Call) -> dict[str, Any]:
    size = call.arg("pageSize")
    # "If unspecified, at most 100 ... values above 100 will be coerced to 100."
    if size is None or (size.lstrip("-").isdigit() and (int(size) > 100 or int(size) == 0)):
        call.query["pageSize"] = ["100"]
    with call.read() as s:
        row = _config_target(call, s, CAPABILITY_GET)
        items = [capability_configs.as_json(row, c) for c in capability_configs.list_configs(s, row)]
    page, token = call.page(items)
    return {"capabilityConfigs": page, **({"nextPageToken": token} if token else {})} if page else {}


def patch_capability_config(call: Call) -> dict[str, Any]:
    mask = update_mask(call)
    with call.write() as s:
        row = _config_target(call, s, CAPABILITY_UPDATE)
        config = capability_configs.find(s, row, call.params["config"], for_update=True)
        capability_configs.patch(config, row, call.body, mask)
        return _capability_op(s, "Update", capability_configs.as_json(row, config), capability_configs.RESPONSE_TYPE)


def delete_capability_config(call: Call) -> dict[str, Any]:
    with call.write() as s:
        row = _config_target(call, s, CAPABILITY_UPDATE)
        config = capability_configs.find(s, row, call.params["config"], for_update=True)
        capability_configs.check_etag(config, call.arg("etag"))
        s.delete(config)
        return _capability_op(s, "Delete", None, "type.googleapis.com/google.protobuf.Empty")


def list_org_policies(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"pageSize", "pageToken"}, "")
    with call.read() as s:
        row = _visible_project(call, s, call.params["project"], "orgpolicy.policies.list")
        policies = projects.list_org_policies(row)
    return {"policies": policies} if policies else {}


def list_available_constraints(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"pageSize", "pageToken"}, "")
    with call.read() as s:
        _visible_project(call, s, call.params["project"], "orgpolicy.constraints.list")
    return {"constraints": projects.AVAILABLE_CONSTRAINTS}


def get_iam_policy(call: Call) -> dict[str, Any]:
    return iam_methods.get_iam_policy(call, lambda s: projects.project_resource(
        _visible_project(call, s, call.params["project"], "resourcemanager.projects.getIamPolicy").project_id))


def set_iam_policy(call: Call) -> dict[str, Any]:
    return iam_methods.set_iam_policy(call, lambda s: projects.project_resource(
        _visible_project(call, s, call.params["project"], "resourcemanager.projects.setIamPolicy").project_id),
        "project")


def test_iam_permissions(call: Call) -> dict[str, Any]:
    def chain(s: Session) -> tuple[list[str], None] | None:
        row = projects.find_project(s, call.params["project"])
        return (projects.project_chain(row.project_id), None) if row is not None else None

    return iam_methods.test_iam_permissions(call, chain)


def get_ancestry(call: Call) -> dict[str, Any]:
    with call.read() as s:
        row = _visible_project(call, s, call.params["project"], "resourcemanager.projects.get")
    ancestors = [{"resourceId": {"type": "project", "id": row.project_id}}]
    if row.parent:
        ancestors.append({"resourceId": row.parent})
    return {"ancestor": ancestors}


def set_org_policy(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"policy"}, "")
    with call.write() as s:
        row = _visible_project(call, s, call.params["project"], "orgpolicy.policy.set")
        return projects.set_org_policy(row, object_field(call.body, "policy", ""))


def get_org_policy(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"constraint"}, "")
    with call.read() as s:
        row = _visible_project(call, s, call.params["project"], "orgpolicy.policy.get")
        return projects.get_org_policy(row, call.body.get("constraint"))


def clear_org_policy(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"constraint", "etag"}, "")
    with call.write() as s:
        row = _visible_project(call, s, call.params["project"], "orgpolicy.policy.set")
        projects.clear_org_policy(row, call.body.get("constraint"))
    return {}


def get_operation(call: Call) -> dict[str, Any]:
    with call.read() as s:
        return operations.get(s, f"operations/{call.params['operation']}")


def routes(state: ServerState) -> list[Route]:
    def r(method: str, path: str, handler: Any, audit_method: str = "", **kw: Any) -> Route:
        return route(state, method, path, handler, service=SERVICE, method=audit_method, **kw)

    return [
        r("POST", "/v1/projects", create_project, "CreateProject"),
        r("GET", "/v1/projects", list_projects),
        r("GET", "/v1/projects/{project}", get_project),
        r("PUT", "/v1/projects/{project}", update_project, "UpdateProject"),
        r("POST", "/v1/projects/{project}:listOrgPolicies", list_org_policies),
        r("POST", "/v1/projects/{project}:listAvailableOrgPolicyConstraints", list_available_constraints),
        r("DELETE", "/v1/projects/{project}", delete_project, "DeleteProject"),
        r("POST", "/v1/projects/{project}:undelete", undelete_project, "UndeleteProject"),
        r("POST", "/v1/projects/{project}:getIamPolicy", get_iam_policy),
        r("POST", "/v1/projects/{project}:setIamPolicy", set_iam_policy, "SetIamPolicy"),
        r("POST", "/v1/projects/{project}:testIamPermissions", test_iam_permissions),
        r("POST", "/v1/projects/{project}:getAncestry", get_ancestry),
        r("POST", "/v1/projects/{project}:setOrgPolicy", set_org_policy, "SetOrgPolicy"),
        r("POST", "/v1/projects/{project}:getOrgPolicy", get_org_policy),
        r("POST", "/v1/projects/{project}:getEffectiveOrgPolicy", get_org_policy),
        r("POST", "/v1/projects/{project}:clearOrgPolicy", clear_org_policy, "ClearOrgPolicy"),
        r("GET", "/v1/operations/{operation}", get_operation),
        r("POST", "/v3/projects", lambda c: create_project(c, v3=True), "CreateProject"),
        r("GET", "/v3/projects", search_projects_v3),
        r("GET", "/v3/projects:search", search_projects_v3),
        r("GET", "/v3/projects/{project}", get_project_v3),
        r("PATCH", "/v3/projects/{project}", patch_project_v3, "UpdateProject"),
        r("DELETE", "/v3/projects/{project}", delete_project_v3, "DeleteProject"),
        r("POST", "/v3/projects/{project}:undelete", undelete_project_v3, "UndeleteProject"),
        r("POST", "/v3/projects/{project}:move", move_project_v3, "MoveProject"),
        r("POST", "/v3/projects/{project}:getIamPolicy", get_iam_policy),
        r("POST", "/v3/projects/{project}:setIamPolicy", set_iam_policy, "SetIamPolicy"),
        r("POST", "/v3/projects/{project}:testIamPermissions", test_iam_permissions),
        r("GET", "/v3/operations/{operation}", get_operation),
        r("POST", "/v3/projects/{project}/capabilityConfigs", create_capability_config, "CreateCapabilityConfig"),
        # get and list are ADMIN_READ: Data Access entries where the project's auditConfigs ask for them
        r("GET", "/v3/projects/{project}/capabilityConfigs", data_access_method(
            SERVICE, "ListCapabilityConfigs", list_capability_configs, ADMIN_READ), audited=False),
        r("GET", "/v3/projects/{project}/capabilityConfigs/{config}", data_access_method(
            SERVICE, "GetCapabilityConfig", get_capability_config, ADMIN_READ), audited=False),
        r("PATCH", "/v3/projects/{project}/capabilityConfigs/{config}", patch_capability_config,
          "UpdateCapabilityConfig"),
        r("DELETE", "/v3/projects/{project}/capabilityConfigs/{config}", delete_capability_config,
          "DeleteCapabilityConfig"),
    ]
