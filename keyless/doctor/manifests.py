"""Kubernetes manifests as the doctor reads them: multi-document YAML (ServiceAccount, Pod,
Deployment and the other pod-template kinds, Namespace), with the line each field sits on so
findings point at it (SARIF regions), and the key-file wiring the seeds tell us to hunt for
("search for secretKeyRef entries feeding GOOGLE_APPLICATION_CREDENTIALS").
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ANNOTATION = "iam.gke.io/gcp-service-account"
ADC_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
MAX_FILE_BYTES = 4 * 1024 * 1024  # a manifest bigger than this is not a manifest
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
# kind -> path from the object to its PodSpec
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


class ManifestError(ValueError):
    """A manifest file that cannot be read or parsed (the message names the file)."""


@dataclass
class Manifest:
    """One Kubernetes object from a file: its body, where it is, and how to find a field's line."""

    path: str
    body: dict[str, Any]
    line: int  # 1-based line of the document's first key
    node: Any = field(repr=False, default=None)

    @property
    def kind(self) -> str:
        return str(self.body.get("kind") or "")

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name") or "")

    @property
    def namespace(self) -> str:
        return str((self.body.get("metadata") or {}).get("namespace") or "default")

    def line_of(self, *path: str | int) -> int:
        """The 1-based line of the field at `path` (as deep as it exists), for SARIF regions."""
        node, line = self.node, self.line
        for step in path:
            if isinstance(node, yaml.MappingNode) and isinstance(step, str):
                match = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == step),
                             None)
                if match is None:
                    break
                line, node = match[0].start_mark.line + 1, match[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
                node = node.value[step]
                line = node.start_mark.line + 1
            else:
                break
        return line


def parse_text(text: str, path: str) -> list[Manifest]:
    """Every mapping document of a multi-document YAML (or JSON) text; `kind: List` is unrolled."""
    loader = yaml.SafeLoader(text)
    out: list[Manifest] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            body = loader.construct_document(node)
            if isinstance(body, dict) and body.get("kind") == "List" and isinstance(body.get("items"), list):
                items = node_field(node, "items")
                for i, item in enumerate(body["items"]):
                    if isinstance(item, dict):
                        sub = items.value[i] if isinstance(items, yaml.SequenceNode) else None
                        out.append(Manifest(path, item, (sub or node).start_mark.line + 1, sub))
            elif isinstance(body, dict):
                out.append(Manifest(path, body, node.start_mark.line + 1, node))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return out


def node_field(node: Any, key: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    return None


def _files(target: Path) -> Iterator[Path]:
    if target.is_dir():
        for p in sorted(target.rglob("*")):
            if p.is_file() and p.suffix in MANIFEST_SUFFIXES and not p.is_symlink():
                yield p
    elif target.is_file():
        yield target
    else:
        raise ManifestError(f"{target}: no such file or directory")


def load(targets: Iterable[str]) -> list[Manifest]:
    """The objects of every file named, or found under a directory named (.yaml/.yml/.json)."""
    out: list[Manifest] = []
    for target in targets:
        for p in _files(Path(target)):
            if p.stat().st_size > MAX_FILE_BYTES:
                raise ManifestError(f"{p}: larger than {MAX_FILE_BYTES} bytes")
            try:
                text = p.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise ManifestError(f"{p}: {exc}") from None
            out.extend(parse_text(text, str(p)))
    return out


# -- pod specs -----------------------------------------------------------------------------------


def pod_spec_path(body: dict[str, Any]) -> tuple[str, ...] | None:
    return POD_SPEC_PATHS.get(str(body.get("kind") or ""))


def pod_spec(body: dict[str, Any]) -> dict[str, Any] | None:
    """The PodSpec of a Pod or of a workload's pod template (None for other kinds)."""
    path = pod_spec_path(body)
    if path is None:
        return None
    node: Any = body
    for step in path:
        node = node.get(step) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def service_account_name(spec: dict[str, Any]) -> str:
    """The KSA a pod runs as: serviceAccountName (or the deprecated serviceAccount), else `default`."""
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


def _containers(spec: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    out = []
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            if isinstance(c, dict):
                out.append((kind, i, c))
    return out


@dataclass
class KeyFileUse:
    """How one workload feeds a service account key file to Application Default Credentials."""

    container: str
    container_path: tuple[str | int, ...]  # inside the PodSpec: ("containers", 0)
    env_index: int | None  # the GOOGLE_APPLICATION_CREDENTIALS entry in env
    key_path: str  # the file path the env names ("" when the env carries the key itself)
    secret_name: str  # the Kubernetes Secret holding the key
    volume: str | None  # the secret volume's name (None for a secretKeyRef)
    mount_index: int | None  # the volumeMount of that volume in the container


def _secret_volumes(spec: dict[str, Any]) -> dict[str, str]:
    vols: dict[str, str] = {}
    for v in spec.get("volumes") or []:
        if isinstance(v, dict) and isinstance(v.get("secret"), dict):
            vols[str(v.get("name"))] = str(v["secret"].get("secretName") or "")
        elif isinstance(v, dict) and isinstance(v.get("projected"), dict):
            for src in v["projected"].get("sources") or []:
                if isinstance(src, dict) and isinstance(src.get("secret"), dict):
                    vols[str(v.get("name"))] = str(src["secret"].get("name") or "")
    return vols


def key_file_uses(spec: dict[str, Any]) -> list[KeyFileUse]:
    """Containers whose GOOGLE_APPLICATION_CREDENTIALS comes from a Secret: a secretKeyRef, or a
    path inside a mounted secret volume."""
    vols = _secret_volumes(spec)
    out: list[KeyFileUse] = []
    for kind, ci, c in _containers(spec):
        for ei, env in enumerate(c.get("env") or []):
            if not isinstance(env, dict) or env.get("name") != ADC_ENV:
                continue
            ref = ((env.get("valueFrom") or {}).get("secretKeyRef") or {}) if isinstance(env.get("valueFrom"), dict) \
                else {}
            if ref:
                out.append(KeyFileUse(str(c.get("name")), (kind, ci), ei, "", str(ref.get("name") or ""), None, None))
                continue
            value = env.get("value")
            if not isinstance(value, str):
                continue
            for mi, m in enumerate(c.get("volumeMounts") or []):
                if not isinstance(m, dict) or m.get("name") not in vols:
                    continue
                mount = posixpath.normpath(str(m.get("mountPath") or "/"))
                target = posixpath.normpath(value)
                if target == mount or target.startswith(mount.rstrip("/") + "/"):
                    out.append(KeyFileUse(str(c.get("name")), (kind, ci), ei, value, vols[str(m["name"])],
                                          str(m["name"]), mi))
                    break
    return out
