"""Pub/Sub schemas over REST (https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.schemas):
create, get, list, delete, commit, rollback, listRevisions, deleteRevision, validate,
validateMessage and the schema's IAM policy, mounted with the rest of Pub/Sub at /pubsub.

Permissions are Google's (https://cloud.google.com/pubsub/docs/access-control): pubsub.schemas.create,
get, list, delete (also deleteRevision), commit, rollback, listRevisions, validate (validate and
validateMessage), getIamPolicy, setIamPolicy. Audit entries as
https://cloud.google.com/pubsub/docs/audit-logging classifies them: CreateSchema, CommitSchema,
RollbackSchema, DeleteSchemaRevision, DeleteSchema and SetIamPolicy are Admin Activity; GetSchema,
ListSchemas, ListSchemaRevisions, ValidateSchema, ValidateMessage and GetIamPolicy are ADMIN_READ
Data Access entries, written where the project's auditConfigs ask.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.routing import Route

from keyless import projects
from keyless.api import iam_methods
from keyless.api.http import Call, allowed_fields, route
from keyless.api.pubsub.rest import IAM_POLICY, _data_access, _page, _project, _target, named_schema
from keyless.errors import InvalidArgument
from keyless.iam.evaluate import ResourceContext
from keyless.pubsub import names
from keyless.pubsub import schemas as schemas_domain
from keyless.pubsub.messages import MAX_MESSAGE_BYTES
from keyless.pubsub.names import SERVICE
from keyless.state import ServerState
from keyless.store.models import PsSchema

SCHEMA_SERVICE = "google.pubsub.v1.SchemaService."


def _schema(call: Call, s: Session, permission: str, *, for_update: bool = False) -> tuple[PsSchema, str | None]:
    """The schema of the path (`id` or `id@revision`), once `permission` is granted on it."""
    schema_id, revision_id = schemas_domain.split_revision(call.params["id"])
    project_id = _target(call, s, "schemas", permission, schema_id)
    return schemas_domain.get_schema(s, project_id, schema_id, for_update=for_update), revision_id


def _view(call: Call, default: str = "BASIC") -> str:
    """The SchemaView asked for; unset is BASIC for list and listRevisions, FULL for get."""
    view = schemas_domain.check_view(call.arg("view"))
    return default if view == "SCHEMA_VIEW_UNSPECIFIED" else view


def create_schema(call: Call) -> dict[str, Any]:
    schema_id = call.arg("schemaId") or ""
    if not schema_id:
        raise InvalidArgument("The schema ID must be specified (schemaId).")
    with call.write() as s:
        project_id = _target(call, s, "schemas", "pubsub.schemas.create", schema_id)
        row, rev = schemas_domain.create_schema(s, project_id, schema_id, call.body)
        return schemas_domain.schema_json(row, rev)


def get_schema(call: Call) -> dict[str, Any]:
    view = _view(call, "FULL")
    with call.read() as s:
        row, revision_id = _schema(call, s, "pubsub.schemas.get")
        return schemas_domain.schema_json(row, schemas_domain.revision(s, row, revision_id), view)


def list_schemas(call: Call) -> dict[str, Any]:
    view = _view(call)
    with call.read() as s:
        project_id = _project(call, s, "pubsub.schemas.list")
        rows = schemas_domain.list_schemas(s, project_id)
        newest = schemas_domain.newest_revisions(s, rows)
        everything = [schemas_domain.schema_json(r, newest[r.uid], view) for r in rows if r.uid in newest]
    return _page(call, "schemas", everything)


def list_revisions(call: Call) -> dict[str, Any]:
    view = _view(call)
    with call.read() as s:
        row, _ = _schema(call, s, "pubsub.schemas.listRevisions")
        everything = [schemas_domain.schema_json(row, rev, view) for rev in schemas_domain.revisions(s, row)]
    return _page(call, "schemas", everything)


def commit_schema(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"schema"}, "")
    with call.write() as s:
        row, _ = _schema(call, s, "pubsub.schemas.commit", for_update=True)
        return schemas_domain.schema_json(row, schemas_domain.commit(s, row, call.body.get("schema")))


def rollback_schema(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"revisionId"}, "")
    with call.write() as s:
        row, _ = _schema(call, s, "pubsub.schemas.rollback", for_update=True)
        return schemas_domain.schema_json(row, schemas_domain.rollback(s, row, call.body.get("revisionId")))


def delete_revision(call: Call) -> dict[str, Any]:
    with call.write() as s:
        row, revision_id = _schema(call, s, "pubsub.schemas.delete", for_update=True)
        revision_id = revision_id or call.arg("revisionId")  # the deprecated query parameter
        return schemas_domain.schema_json(row, schemas_domain.delete_revision(s, row, revision_id))


def delete_schema(call: Call) -> dict[str, Any]:
    with call.write() as s:
        row, revision_id = _schema(call, s, "pubsub.schemas.delete", for_update=True)
        if revision_id is not None:
            raise InvalidArgument("A schema revision is deleted with deleteRevision, not delete.")
        schemas_domain.delete_schema(s, row)
    return {}


def validate_schema(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"schema"}, "")
    with call.read() as s:
        _project(call, s, "pubsub.schemas.validate")
    schemas_domain.check_schema(call.body.get("schema"), "schema")
    return {}


def validate_message(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"name", "schema", "message", "encoding"}, "")
    body = call.body
    encoding = schemas_domain.check_encoding(body.get("encoding"), "encoding")
    data = _message_bytes(body.get("message"))
    if (body.get("name") is None) == (body.get("schema") is None):
        raise InvalidArgument("Exactly one of name and schema must be set in the ValidateMessageRequest.")
    with call.read() as s:
        _project(call, s, "pubsub.schemas.validate")
        if body.get("name") is not None:
            row, revision_id = named_schema(call, s, body["name"], "pubsub.schemas.get")
            rev = schemas_domain.revision(s, row, revision_id)
            schema_type, definition = rev.type, rev.definition
        else:
            schema_type, definition = schemas_domain.check_schema(body["schema"], "schema")
    try:
        schemas_domain.check_message(schema_type, definition, encoding, data)
    except schemas_domain.MISMATCH as exc:
        raise schemas_domain.message_failed(encoding, schema_type, str(exc)) from None
    return {}


def _message_bytes(text: Any) -> bytes:
    if text is None:
        return b""
    if not isinstance(text, str) or len(text) > 4 * (MAX_MESSAGE_BYTES // 3) + 4:
        raise InvalidArgument("Invalid value at 'message' (TYPE_BYTES)")
    clean = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(clean + "=" * (-len(clean) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"Invalid value at 'message' (TYPE_BYTES), Base64 decoding failed for "
                              f"\"{text[:100]}\"") from None


# -- the schema's IAM policy ----------------------------------------------------------------------


def _locate(permission: str) -> Callable[[Call, Session], str]:
    def locate(call: Call, s: Session) -> str:
        row, _ = _schema(call, s, permission)
        return schemas_domain.policy_resource(row.project_id, row.schema_id)

    return locate


def get_iam_policy(call: Call) -> dict[str, Any]:
    locate = _locate("pubsub.schemas.getIamPolicy")
    return iam_methods.get_iam_policy(call, lambda s: locate(call, s))


def set_iam_policy(call: Call) -> dict[str, Any]:
    locate = _locate("pubsub.schemas.setIamPolicy")
    return iam_methods.set_iam_policy(call, lambda s: locate(call, s), "schema")


def test_iam_permissions(call: Call) -> dict[str, Any]:
    given, schema_id = call.params["project"], call.params["id"]
    names.check_id(given, "schemas", schema_id)

    def chain(s: Session) -> tuple[list[str], ResourceContext] | None:
        project = projects.find_project(s, given, include_deleted=False)
        if project is None or schemas_domain.find_schema(s, project.project_id, schema_id) is None:
            return None
        return (names.chain(project.project_id, "schemas", schema_id),
                ResourceContext(schemas_domain.schema_name(project.project_id, schema_id), names.SCHEMA_TYPE, SERVICE))

    return iam_methods.test_iam_permissions(call, chain)


def routes(state: ServerState) -> list[Route]:
    def admin(http_method: str, path: str, handler: Callable[[Call], Any], method: str) -> Route:
        return route(state, http_method, path, handler, service=SERVICE, method=method)

    def read(http_method: str, path: str, handler: Callable[[Call], Any], method: str) -> Route:
        return route(state, http_method, path, _data_access(method, handler), service=SERVICE, audited=False)

    collection = "/v1/projects/{project}/schemas"
    one = collection + "/{id}"
    # Custom methods (`name:verb`) come before the plain routes they would also match.
    return [
        read("POST", collection + ":validate", validate_schema, SCHEMA_SERVICE + "ValidateSchema"),
        read("POST", collection + ":validateMessage", validate_message, SCHEMA_SERVICE + "ValidateMessage"),
        read("GET", one + ":getIamPolicy", get_iam_policy, IAM_POLICY + "GetIamPolicy"),
        read("POST", one + ":getIamPolicy", get_iam_policy, IAM_POLICY + "GetIamPolicy"),
        admin("POST", one + ":setIamPolicy", set_iam_policy, IAM_POLICY + "SetIamPolicy"),
        route(state, "POST", one + ":testIamPermissions", test_iam_permissions, service=SERVICE, audited=False),
        admin("POST", one + ":commit", commit_schema, SCHEMA_SERVICE + "CommitSchema"),
        admin("POST", one + ":rollback", rollback_schema, SCHEMA_SERVICE + "RollbackSchema"),
        read("GET", one + ":listRevisions", list_revisions, SCHEMA_SERVICE + "ListSchemaRevisions"),
        admin("DELETE", one + ":deleteRevision", delete_revision, SCHEMA_SERVICE + "DeleteSchemaRevision"),
        read("GET", one, get_schema, SCHEMA_SERVICE + "GetSchema"),
        admin("DELETE", one, delete_schema, SCHEMA_SERVICE + "DeleteSchema"),
        admin("POST", collection, create_schema, SCHEMA_SERVICE + "CreateSchema"),
        read("GET", collection, list_schemas, SCHEMA_SERVICE + "ListSchemas"),
    ]
