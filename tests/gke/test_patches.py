"""The patch formats of the Kubernetes API (keyless.gke.patches) and the protobuf bodies kubectl
≥ 1.32 sends (keyless.api.kubernetes.protobuf), on their own: the e2e tests drive them through
kubectl, these pin the edge cases kubectl rarely sends."""

from __future__ import annotations

import pytest

from keyless.api.kubernetes import protobuf as pb
from keyless.errors import InvalidArgument
from keyless.gke.patches import json_patch, merge_patch, strategic_merge_patch

pytestmark = pytest.mark.store_independent  # runs on the SQLite leg only (tests/conftest.py)

DEPLOYMENT = {"metadata": {"name": "my-app", "labels": {"app": "my-app", "tier": "web"}},
              "spec": {"template": {"spec": {"serviceAccountName": "my-app-ksa", "containers": [
                  {"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}]},
                  {"name": "sidecar", "image": "s:1"}]}}}}


def test_merge_patch_is_rfc_7386() -> None:
    patched = merge_patch(DEPLOYMENT, {"metadata": {"labels": {"tier": None, "team": "x"}},
                                       "spec": {"template": {"spec": {"containers": [{"name": "only"}]}}}})
    assert patched["metadata"]["labels"] == {"app": "my-app", "team": "x"}
    assert patched["spec"]["template"]["spec"]["containers"] == [{"name": "only"}]  # lists are replaced
    assert DEPLOYMENT["metadata"]["labels"]["tier"] == "web"  # the original is not touched


def test_strategic_merge_patch_merges_containers_by_name() -> None:
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
        "containers": [{"name": "app", "image": "a:2", "env": [{"name": "B", "value": "2"}]},
                       {"name": "sidecar", "$patch": "delete"}]}}}}
    containers = strategic_merge_patch(DEPLOYMENT, patch)["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "app", "image": "a:2", "env": [{"name": "A", "value": "1"},
                                                                  {"name": "B", "value": "2"}]}]
    replaced = strategic_merge_patch(DEPLOYMENT, {"metadata": {"labels": {"$patch": "replace", "only": "this"}}})
    assert replaced["metadata"]["labels"] == {"only": "this"}
    removed = strategic_merge_patch(DEPLOYMENT, {"spec": {"template": {"spec": {"serviceAccountName": None}}}})
    assert "serviceAccountName" not in removed["spec"]["template"]["spec"]
    with pytest.raises(InvalidArgument, match="merge key"):
        strategic_merge_patch(DEPLOYMENT, {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})


def test_json_patch_operations_and_bad_paths() -> None:
    patched = json_patch(DEPLOYMENT, [
        {"op": "add", "path": "/metadata/annotations", "value": {"iam.gke.io/gcp-service-account": "g@p.iam"}},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "a:3"},
        {"op": "remove", "path": "/spec/template/spec/containers/1"},
        {"op": "test", "path": "/metadata/name", "value": "my-app"}])
    assert patched["metadata"]["annotations"] == {"iam.gke.io/gcp-service-account": "g@p.iam"}
    assert [c["image"] for c in patched["spec"]["template"]["spec"]["containers"]] == ["a:3"]
    for bad in ([{"op": "remove", "path": "/nope"}], [{"op": "test", "path": "/metadata/name", "value": "x"}],
                [{"op": "replace", "path": "/spec/template/spec/containers/9", "value": 1}], {"op": "add"},
                [{"op": "frobnicate", "path": "/a"}]):
        with pytest.raises(InvalidArgument):
            json_patch(DEPLOYMENT, bad)


def _field(number: int, value: bytes | str) -> bytes:
    return pb._bytes(number, value)


def _body(kind: str, api_version: str, raw: bytes) -> bytes:
    return pb.MAGIC + _field(1, _field(1, api_version) + _field(2, kind)) + _field(2, raw)


def test_protobuf_service_account_as_kubectl_sends_it() -> None:
    # ObjectMeta: name, namespace, the empty strings Go writes, an annotation (a map entry)
    meta = (_field(1, "my-app-ksa") + _field(2, "") + _field(3, "production") + _field(5, "")
            + _field(12, _field(1, "iam.gke.io/gcp-service-account") + _field(2, "g@p.iam")))
    got = pb.decode(_body("ServiceAccount", "v1", _field(1, meta)))
    assert got == {"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "my-app-ksa", "namespace": "production",
                                "annotations": {"iam.gke.io/gcp-service-account": "g@p.iam"}}}
    spec = _field(1, "aud-1") + _field(1, "aud-2") + pb._key(4, 0) + pb._encode_varint(1200)
    token = pb.decode(_body("TokenRequest", "authentication.k8s.io/v1", _field(1, _field(1, "x")) + _field(2, spec)))
    assert token["spec"] == {"audiences": ["aud-1", "aud-2"], "expirationSeconds": 1200}


def test_protobuf_bodies_that_are_not_read_are_refused() -> None:
    sa = _field(1, _field(1, "x"))
    for bad in (b"not protobuf", pb.MAGIC + b"\x0a\xff", _body("Pod", "v1", sa),
                _body("ServiceAccount", "v1", sa + _field(9, "an unknown, non-empty field")),
                _body("ServiceAccount", "v1", _field(1, _field(1, b"\xff\xfe")))):
        with pytest.raises(InvalidArgument):
            pb.decode(bad)


def test_openapi_v2_document_names_the_patch_operations() -> None:
    doc = pb.openapi_v2([("/api/v1/namespaces/{namespace}/serviceaccounts/{name}", "patchServiceAccount",
                          {"group": "", "kind": "ServiceAccount", "version": "v1"}, ["fieldValidation"])])
    top = dict(pb.fields(doc))
    assert top[1] == b"2.0"
    named_path = dict(pb.fields(dict(pb.fields(top[8]))[2]))  # type: ignore[arg-type]
    assert named_path[1] == b"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
    assert b"fieldValidation" in named_path[2] and b"kind: \"ServiceAccount\"" in named_path[2]  # type: ignore[operator]
