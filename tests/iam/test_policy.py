"""IAM policy semantics: etags, versions and conditions, update masks, concurrent writers."""

from __future__ import annotations

import threading

import pytest

from keyless.errors import Aborted, InvalidArgument
from keyless.iam.policy import EMPTY_ETAG, policy_json, set_policy
from keyless.projects import create_project, project_resource
from keyless.state import ServerState

RESOURCE = project_resource("my-project")


@pytest.fixture
def st(state: ServerState) -> ServerState:
    with state.db.write() as s:
        create_project(s, "my-project", number="123456789")
    return state


def _set(st: ServerState, policy: dict, mask: str | None = None):
    with st.db.write() as s:
        return policy_json(set_policy(s, RESOURCE, policy, mask, st.role_exists(s), st.member_check(s)), 3)


def _get(st: ServerState, version: int = 3) -> dict:
    with st.db.read() as s:
        from keyless.iam.policy import get_policy_row
        return policy_json(get_policy_row(s, RESOURCE), version)


def test_empty_policy_has_googles_empty_etag(st: ServerState) -> None:
    assert _get(st) == {"version": 1, "etag": EMPTY_ETAG}


def test_stale_etag_is_aborted_and_changes_nothing(st: ServerState) -> None:
    first = _set(st, {"bindings": [{"role": "roles/viewer", "members": ["user:a@example.com"]}],
                      "etag": EMPTY_ETAG})
    with pytest.raises(Aborted, match="concurrent policy changes"):
        _set(st, {"bindings": [{"role": "roles/editor", "members": ["user:b@example.com"]}], "etag": EMPTY_ETAG})
    assert _get(st) == first
    assert first["etag"] != EMPTY_ETAG


def test_write_without_etag_overwrites(st: ServerState) -> None:
    _set(st, {"bindings": [{"role": "roles/viewer", "members": ["user:a@example.com"]}]})
    out = _set(st, {"bindings": [{"role": "roles/editor", "members": ["user:b@example.com"]}]})
    assert out["bindings"] == [{"role": "roles/editor", "members": ["user:b@example.com"]}]


def test_bindings_are_merged_deduplicated_and_empty_ones_dropped(st: ServerState) -> None:
    out = _set(st, {"bindings": [
        {"role": "roles/viewer", "members": ["user:b@example.com", "user:a@example.com"]},
        {"role": "roles/viewer", "members": ["user:a@example.com"]},
        {"role": "roles/editor", "members": []},
    ]})
    assert out["bindings"] == [{"role": "roles/viewer", "members": ["user:a@example.com", "user:b@example.com"]}]


def test_conditions_need_version_3_and_render_withcond_at_version_1(st: ServerState) -> None:
    cond = {"expression": 'resource.name.startsWith("projects/_/buckets/my-app-bucket")', "title": "only-app-bucket"}
    binding = {"role": "roles/storage.objectViewer", "members": ["user:a@example.com"], "condition": cond}
    with pytest.raises(InvalidArgument, match="version 3"):
        _set(st, {"bindings": [binding], "version": 1})
    out = _set(st, {"bindings": [binding], "version": 3})
    assert out["version"] == 3 and out["bindings"][0]["condition"] == cond
    v1 = _get(st, 1)
    assert v1["version"] == 1
    assert v1["bindings"][0]["role"].startswith("roles/storage.objectViewer_withcond_")
    assert "condition" not in v1["bindings"][0]
    # a version-1 write would silently drop the condition: Google refuses it
    with pytest.raises(InvalidArgument):
        _set(st, {"bindings": v1["bindings"], "version": 1, "etag": v1["etag"]})


def test_bad_condition_is_refused_with_the_compiler_message(st: ServerState) -> None:
    with pytest.raises(InvalidArgument, match="Condition expression is invalid"):
        _set(st, {"version": 3, "bindings": [{"role": "roles/viewer", "members": ["user:a@example.com"],
                                              "condition": {"expression": "resource.name.startsWith(", "title": "t"}}]})


def test_unknown_role_and_malformed_member_are_invalid_argument(st: ServerState) -> None:
    with pytest.raises(InvalidArgument, match=r"Role \(roles/nope\) does not exist"):
        _set(st, {"bindings": [{"role": "roles/nope", "members": ["user:a@example.com"]}]})
    with pytest.raises(InvalidArgument):
        _set(st, {"bindings": [{"role": "roles/viewer", "members": ["a@example.com"]}]})
    assert _get(st) == {"version": 1, "etag": EMPTY_ETAG}  # nothing partial was stored


def test_missing_service_account_is_refused_but_opaque_principals_are_not(st: ServerState) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        _set(st, {"bindings": [{"role": "roles/viewer",
                                "members": ["serviceAccount:ghost@my-project.iam.gserviceaccount.com"]}]})
    # the seeds' "silently grants nothing" trap: well-formed, names nothing, accepted
    member = ("principal://iam.googleapis.com/projects/999/locations/global/workloadIdentityPools/"
              "PROJECT_ID.svc.id.goog/subject/ns/tenant-42/sa/app-ksa")
    out = _set(st, {"bindings": [{"role": "roles/storage.objectViewer", "members": [member]}]})
    assert out["bindings"][0]["members"] == [member]


def test_audit_configs_change_only_when_the_mask_names_them(st: ServerState) -> None:
    audit = [{"service": "iam.googleapis.com", "auditLogConfigs": [
        {"logType": "DATA_READ", "exemptedMembers": ["user:quiet@example.com"]}]}]
    out = _set(st, {"bindings": [{"role": "roles/viewer", "members": ["user:a@example.com"]}],
                    "auditConfigs": audit})
    assert "auditConfigs" not in out  # default mask is bindings,etag
    out = _set(st, {"auditConfigs": audit}, mask="auditConfigs")
    assert out["auditConfigs"] == audit
    assert out["bindings"] == [{"role": "roles/viewer", "members": ["user:a@example.com"]}]
    with pytest.raises(InvalidArgument):
        _set(st, {"auditConfigs": [{"service": "iam.googleapis.com",
                                    "auditLogConfigs": [{"logType": "EVERYTHING"}]}]}, mask="auditConfigs")


def test_concurrent_read_modify_write_never_loses_a_binding(st: ServerState) -> None:
    """Many writers doing gcloud's add-iam-policy-binding loop (get, add, set with etag, retry on 409)."""
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            while True:
                current = _get(st)
                bindings = current.get("bindings", []) + [{"role": "roles/viewer", "members": [f"user:u{i}@example.com"]}]
                try:
                    _set(st, {"bindings": bindings, "etag": current["etag"], "version": 3})
                    return
                except Aborted:
                    continue
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    members = _get(st)["bindings"][0]["members"]
    assert sorted(members) == sorted(f"user:u{i}@example.com" for i in range(12))
