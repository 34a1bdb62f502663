"""The set*, IP-rotation and upgrade methods of GKE clusters and node pools (container API v1,
https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters and
.../projects.locations.clusters.nodePools; issue #20).

Each method changes one field of the Cluster or NodePool resource, kept in the row's JSON `body`
(what clusters.get echoes) except a node pool's size, which is its nodes (GkeNode rows). Keyless
finishes every change before answering, so no upgrade is ever in flight: rollback is the no-op
Google describes for a completed upgrade, and the complete*Upgrade methods find nothing to complete.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.errors import FailedPrecondition, InvalidArgument
from keyless.gke import clusters
from keyless.store.models import GkeCluster, GkeNode, GkeNodePool, K8sObject

# Google's label rules (https://cloud.google.com/kubernetes-engine/docs/how-to/creating-managing-labels)
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
MAX_LABELS = 64
LOGGING_SERVICES = ("logging.googleapis.com/kubernetes", "none")
MONITORING_SERVICES = ("monitoring.googleapis.com/kubernetes", "none")
LEGACY_SERVICES = ("logging.googleapis.com", "monitoring.googleapis.com")  # gone since GKE 1.15
HH_MM = re.compile(r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$")
MAX_TEXT = 1024  # any free-text field (a recurrence rule, a timestamp): bounded before it is stored
MAX_ZONES = 16
MAX_AUTOSCALING_NODES = 1000  # per zone (https://cloud.google.com/kubernetes-engine/quotas)
MAX_UPGRADES = 10  # upgrade history kept per cluster for fetchClusterUpgradeInfo
RELEASE_CHANNELS = ("RAPID", "REGULAR", "STABLE", "EXTENDED")
UPGRADES = "_upgrades"  # the body key of the upgrade history (never echoed: cluster_json drops "_" keys)


def _int(value: Any, where: str) -> int:
    """An int32 as Google's JSON mapping accepts it (a number or a decimal string)."""
    if isinstance(value, bool):
        raise InvalidArgument(f"Invalid value at '{where}' (TYPE_INT32), {json.dumps(value)}")
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,10}", value):
        value = int(value)
    if not isinstance(value, int) or not -(2**31) <= value < 2**31:
        raise InvalidArgument(f"Invalid value at '{where}' (TYPE_INT32), {json.dumps(value)[:64]}")
    return value


def _bool(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidArgument(f"Invalid value at '{where}' (TYPE_BOOL), {json.dumps(value)[:64]}")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"Invalid value at '{where}': expected an object, got {json.dumps(value)[:100]}")
    return value


def _text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise InvalidArgument(f"Invalid value at '{where}' (TYPE_STRING), {json.dumps(value)[:64]}")
    return value


def _set(row: GkeCluster | GkeNodePool, field: str, value: Any) -> None:
    """Replace one field of the row's JSON body (a new dict: the JSON column tracks assignment only)."""
    body = {k: v for k, v in (row.body or {}).items() if k != field}
    if value not in (None, {}, []):
        body[field] = value
    row.body = body


def _field(row: GkeCluster | GkeNodePool | dict[str, Any], name: str) -> dict[str, Any]:
    """An object field of a row's body (or of a dict), {} when absent or, echoed from a create, not
    an object."""
    body = row if isinstance(row, dict) else (row.body or {})
    value = body.get(name)
    return value if isinstance(value, dict) else {}


def _standard_only(cluster: GkeCluster, what: str) -> None:
    if cluster.autopilot:
        raise FailedPrecondition(f"{what} is not supported on Autopilot clusters: GKE manages it.")


# -- cluster: labels --------------------------------------------------------------------------------

def label_fingerprint(labels: dict[str, str]) -> str:
    """Cluster.labelFingerprint: a digest of the labels, so it changes whenever they do."""
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:8]


def set_resource_labels(cluster: GkeCluster, labels: Any, fingerprint: Any) -> None:
    """SetLabelsRequest: the whole label set, refused when `labelFingerprint` is not the current one
    (a concurrent change since the caller's get)."""
    labels = _object(labels, "resource_labels")
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(f"A cluster can have at most {MAX_LABELS} resource labels.")
    for key, value in labels.items():
        if not LABEL_KEY.match(key):
            raise InvalidArgument(f"Invalid resource label key \"{key[:64]}\": keys must start with a lowercase "
                                  "letter and contain only lowercase letters, digits, '_' and '-' (at most 63).")
        if not isinstance(value, str) or not LABEL_VALUE.match(value):
            raise InvalidArgument(f"Invalid value for resource label \"{key}\": values contain only lowercase "
                                  "letters, digits, '_' and '-' (at most 63).")
    current = (cluster.body or {}).get("resourceLabels")
    if fingerprint != label_fingerprint(current if isinstance(current, dict) else {}):
        raise FailedPrecondition("Labels could not be set due to fingerprint mismatch: get the cluster for its "
                                 "current labelFingerprint and retry.")
    _set(cluster, "resourceLabels", dict(labels))


# -- cluster: settings ------------------------------------------------------------------------------

def set_legacy_abac(cluster: GkeCluster, enabled: Any) -> None:
    _standard_only(cluster, "Legacy ABAC")
    _set(cluster, "legacyAbac", {"enabled": True} if _bool(enabled, "enabled") else None)


def _service(value: Any, where: str, allowed: tuple[str, ...], legacy: str) -> str:
    name = _text(value, where) or allowed[0]  # "" is the Kubernetes-native service (GKE 1.14+)
    if name == legacy:
        raise InvalidArgument(f"{where} \"{legacy}\" (the legacy service) is not available as of GKE 1.15: "
                              f"use \"{allowed[0]}\".")
    if name not in allowed:
        raise InvalidArgument(f"Invalid {where} \"{name[:128]}\": must be one of {', '.join(allowed)}.")
    return name


def set_logging(cluster: GkeCluster, service: Any) -> None:
    _set(cluster, "loggingService", _service(service, "loggingService", LOGGING_SERVICES, LEGACY_SERVICES[0]))


def set_monitoring(cluster: GkeCluster, service: Any) -> None:
    _set(cluster, "monitoringService",
         _service(service, "monitoringService", MONITORING_SERVICES, LEGACY_SERVICES[1]))


def set_locations(cluster: GkeCluster, locations: Any) -> None:
    """SetLocationsRequest: zones of the cluster's region; a zonal cluster's own zone stays in."""
    if not isinstance(locations, list) or not locations or len(locations) > MAX_ZONES:
        raise InvalidArgument(f"locations must list between 1 and {MAX_ZONES} zones.")
    region = cluster.location if cluster.location.count("-") == 1 else cluster.location.rsplit("-", 1)[0]
    for zone in locations:
        if not isinstance(zone, str) or not clusters.LOCATION.match(zone) or zone.count("-") != 2:
            raise InvalidArgument(f"Invalid zone \"{str(zone)[:64]}\" in locations.")
        if not zone.startswith(region + "-"):
            raise InvalidArgument(f"Zone \"{zone}\" is not in the cluster's region \"{region}\".")
    if cluster.location.count("-") == 2 and cluster.location not in locations:
        raise InvalidArgument(f"locations must include the cluster's primary zone \"{cluster.location}\".")
    _set(cluster, "locations", list(dict.fromkeys(locations)))


def locations(cluster: GkeCluster) -> list[str]:
    """Cluster.locations: as set, else the cluster's zone (its region's `-a` zone for a regional one)."""
    named = (cluster.body or {}).get("locations")
    if isinstance(named, list) and named and all(isinstance(z, str) for z in named):
        return list(named)
    return [cluster.location if cluster.location.count("-") == 2 else f"{cluster.location}-a"]


ADDONS = ("agentSandboxConfig", "cloudRunConfig", "configConnectorConfig", "dnsCacheConfig",
          "gcePersistentDiskCsiDriverConfig", "gcpFilestoreCsiDriverConfig", "gcsFuseCsiDriverConfig",
          "gkeBackupAgentConfig", "highScaleCheckpointingConfig", "horizontalPodAutoscaling", "httpLoadBalancing",
          "kubernetesDashboard", "lustreCsiDriverConfig", "networkPolicyConfig", "nodeReadinessConfig",
          "parallelstoreCsiDriverConfig", "podSnapshotConfig", "rayOperatorConfig", "sliceControllerConfig",
          "slurmOperatorConfig", "statefulHaConfig", "wizSensorConfig")  # AddonsConfig's fields (discovery, v1)
DEFAULT_ADDONS = {"networkPolicyConfig": {"disabled": True}, "gcePersistentDiskCsiDriverConfig": {"enabled": True}}


def addons(cluster: GkeCluster) -> dict[str, Any]:
    """Cluster.addonsConfig: GKE's defaults (network policy off, the PD CSI driver on) under what was set."""
    named = (cluster.body or {}).get("addonsConfig")
    return {**DEFAULT_ADDONS, **(named if isinstance(named, dict) else {})}


def _addon(value: Any, where: str, depth: int) -> None:
    """An addon's config: flags and short strings, with nested configs (rayOperatorConfig's
    logging and monitoring) one level down at most."""
    for key, item in _object(value, where).items():
        if isinstance(item, dict) and depth > 1:
            _addon(item, f"{where}.{key[:64]}", depth - 1)
        elif not isinstance(item, (bool, str, int)) or isinstance(item, str) and len(item) > MAX_TEXT:
            raise InvalidArgument(f"Invalid value at '{where}.{key[:64]}'.")


def set_addons(cluster: GkeCluster, config: Any) -> None:
    """SetAddonsConfigRequest: the addons named are replaced, the others kept."""
    config = _object(config, "addons_config")
    if not config:
        raise InvalidArgument("addonsConfig must name at least one addon.")
    for name, value in config.items():
        if name not in ADDONS:
            raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{name[:64]}\" at "
                                  "'addons_config': Cannot find field.")
        _addon(value, f"addons_config.{name}", 2)
    if cluster.autopilot and "networkPolicyConfig" in config:
        raise FailedPrecondition("Network policy is not supported on Autopilot clusters (they use GKE Dataplane V2).")
    merged = {**addons(cluster), **config}
    if _field(merged, "networkPolicyConfig").get("disabled", True) and _field(cluster, "networkPolicy").get("enabled"):
        raise FailedPrecondition("The NetworkPolicy addon cannot be disabled while network policy is enabled: "
                                 "disable network policy first.")
    _set(cluster, "addonsConfig", merged)


def set_network_policy(cluster: GkeCluster, policy: Any) -> None:
    """SetNetworkPolicyRequest: enabling needs the NetworkPolicy addon on first (gcloud's two steps)."""
    _standard_only(cluster, "Network policy")
    policy = _object(policy, "network_policy")
    enabled = _bool(policy.get("enabled"), "network_policy.enabled")
    provider = policy.get("provider") or "PROVIDER_UNSPECIFIED"
    if provider not in ("PROVIDER_UNSPECIFIED", "CALICO"):
        raise InvalidArgument(f"Invalid value at 'network_policy.provider' (type.googleapis.com/"
                              f"google.container.v1.NetworkPolicy.Provider), {json.dumps(provider)[:64]}")
    if enabled and _field(addons(cluster), "networkPolicyConfig").get("disabled", True):
        raise FailedPrecondition("Network policy cannot be enabled while the NetworkPolicy addon is disabled: "
                                 "enable the addon first (addonsConfig.networkPolicyConfig.disabled=false).")
    _set(cluster, "networkPolicy", {"enabled": True, "provider": "CALICO"} if enabled else None)


def _time(value: Any, where: str) -> str:
    _instant(value, where)
    return str(value)


def _instant(value: Any, where: str) -> datetime:
    text = _text(value, where)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise InvalidArgument(f"Invalid value at '{where}' (type.googleapis.com/google.protobuf.Timestamp), "
                              f"{json.dumps(text)[:64]}")
    return when


def maintenance_policy(cluster: GkeCluster) -> dict[str, Any]:
    """Cluster.maintenancePolicy with its resourceVersion (a digest of the policy)."""
    named = (cluster.body or {}).get("maintenancePolicy")
    policy = {k: v for k, v in named.items() if k != "resourceVersion"} if isinstance(named, dict) else {}
    return {**policy, "resourceVersion": hashlib.sha256(json.dumps(policy, sort_keys=True).encode()).hexdigest()[:8]}


def set_maintenance_policy(cluster: GkeCluster, policy: Any) -> None:
    """SetMaintenancePolicyRequest: an empty policy clears it; a stale resourceVersion is refused."""
    policy = dict(_object(policy, "maintenance_policy"))
    version = _text(policy.pop("resourceVersion", None), "maintenance_policy.resource_version")
    if version and version != maintenance_policy(cluster)["resourceVersion"]:
        raise FailedPrecondition("The maintenance policy was changed since it was read (resourceVersion mismatch): "
                                 "get the cluster and retry with its current resourceVersion.")
    window = _object(policy.pop("window", None), "maintenance_policy.window")
    budget = _object(policy.pop("disruptionBudget", None), "maintenance_policy.disruption_budget")
    if policy:
        raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{next(iter(policy))[:64]}\" at "
                              "'maintenance_policy': Cannot find field.")
    stored: dict[str, Any] = {}
    daily = _object(window.get("dailyMaintenanceWindow"), "maintenance_policy.window.daily_maintenance_window")
    recurring = _object(window.get("recurringWindow"), "maintenance_policy.window.recurring_window")
    if daily and recurring:
        raise InvalidArgument("A maintenance window is either daily or recurring, not both.")
    if daily:
        start = _text(daily.get("startTime"), "maintenance_policy.window.daily_maintenance_window.start_time")
        if not HH_MM.match(start):
            raise InvalidArgument(f"Invalid daily maintenance window start time \"{start[:32]}\": expected \"HH:MM\".")
        stored["dailyMaintenanceWindow"] = {"startTime": start, "duration": "PT4H0M0S"}
    if recurring:
        span = _object(recurring.get("window"), "maintenance_policy.window.recurring_window.window")
        start = _time(span.get("startTime"), "maintenance_policy.window.recurring_window.window.start_time")
        end = _time(span.get("endTime"), "maintenance_policy.window.recurring_window.window.end_time")
        if _instant(end, "end_time") <= _instant(start, "start_time"):
            raise InvalidArgument("The maintenance window's end time must be after its start time.")
        rule = _text(recurring.get("recurrence"), "maintenance_policy.window.recurring_window.recurrence")
        if not rule.startswith("FREQ="):
            raise InvalidArgument(f"Invalid recurrence \"{rule[:64]}\": expected an RFC 5545 RRULE such as "
                                  "\"FREQ=WEEKLY;BYDAY=SA,SU\".")
        stored["recurringWindow"] = {"window": {"startTime": start, "endTime": end}, "recurrence": rule}
    legacy = _object(window.get("recurringMaintenanceWindow"),
                     "maintenance_policy.window.recurring_maintenance_window")
    if legacy:
        if daily or recurring or len(json.dumps(legacy)) > MAX_TEXT:
            raise InvalidArgument("Invalid value at 'maintenance_policy.window.recurring_maintenance_window'.")
        stored["recurringMaintenanceWindow"] = legacy
    exclusions = _object(window.get("maintenanceExclusions"), "maintenance_policy.window.maintenance_exclusions")
    if len(exclusions) > 20:
        raise InvalidArgument("A cluster can have at most 20 maintenance exclusions.")
    if exclusions:
        stored["maintenanceExclusions"] = {
            str(name)[:64]: {"startTime": _time(_object(span, "exclusion").get("startTime"), "exclusion.start_time"),
                             "endTime": _time(_object(span, "exclusion").get("endTime"), "exclusion.end_time")}
            for name, span in exclusions.items()}
    out: dict[str, Any] = {"window": stored} if stored else {}
    if budget:
        out["disruptionBudget"] = {k: _text(budget.get(k), f"maintenance_policy.disruption_budget.{k}")
                                   for k in ("minorVersionDisruptionInterval", "patchVersionDisruptionInterval")
                                   if budget.get(k)}
    _set(cluster, "maintenancePolicy", out)


MASTER_AUTH_ACTIONS = ("SET_PASSWORD", "GENERATE_PASSWORD", "SET_USERNAME")
BASIC_AUTH_REMOVED = ("Basic authentication was removed for GKE cluster versions >= 1.19. Instructions for choosing "
                      "an alternative authentication method can be found at: "
                      "https://cloud.google.com/kubernetes-engine/docs/how-to/api-server-authentication.")


def set_master_auth(cluster: GkeCluster, action: Any, update: Any) -> None:
    """SetMasterAuthRequest. Every Keyless cluster runs GKE >= 1.19, where basic authentication is
    gone: the only change left is SET_USERNAME to "" (keep it off); the rest is Google's refusal."""
    update = _object(update, "update")
    if action not in MASTER_AUTH_ACTIONS:
        raise InvalidArgument(f"Invalid value at 'action' (type.googleapis.com/google.container.v1."
                              f"SetMasterAuthRequest.Action), {json.dumps(action)[:64]}")
    username = _text(update.get("username"), "update.username")
    if action != "SET_USERNAME" or username:
        raise InvalidArgument(BASIC_AUTH_REMOVED)
    if _object(update.get("clientCertificateConfig"), "update.client_certificate_config").get("issueClientCertificate"):
        raise InvalidArgument("Client certificates can only be issued when a cluster is created.")
    _set(cluster, "masterAuth", None)  # nothing but the CA, which cluster_json adds


# -- cluster: IP rotation ---------------------------------------------------------------------------

ROTATION = "_ipRotation"  # body key: whether an IP rotation is under way, and with credentials


def start_ip_rotation(cluster: GkeCluster, rotate_credentials: Any) -> None:
    if (cluster.body or {}).get(ROTATION):
        raise FailedPrecondition(f"Cluster \"{cluster.name}\" already has an IP rotation in progress: complete it "
                                 "first.")
    _set(cluster, ROTATION, {"rotateCredentials": _bool(rotate_credentials, "rotate_credentials"),
                             "startTime": rfc3339(datetime.now(UTC))})


def complete_ip_rotation(cluster: GkeCluster) -> None:
    if not (cluster.body or {}).get(ROTATION):
        raise FailedPrecondition(f"Cluster \"{cluster.name}\" has no IP rotation in progress to complete.")
    _set(cluster, ROTATION, None)


# -- cluster: versions and upgrades -----------------------------------------------------------------

def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"[0-9]+", version))


def master_version(cluster: GkeCluster) -> str:
    return str((cluster.body or {}).get("currentMasterVersion") or clusters.VERSION)


def resolve_version(wanted: Any) -> str:
    """UpdateMasterRequest.masterVersion: "latest", "-", "1.X", "1.X.Y" or "1.X.Y-gke.N" among the
    versions Keyless offers (clusters.VERSIONS)."""
    text = _text(wanted, "master_version")
    if text == "latest":
        return max(clusters.VERSIONS, key=_key)
    if text == "-":
        return clusters.VERSION
    matching = [v for v in clusters.VERSIONS if v == text or v.startswith(text + ".") or v.startswith(text + "-")]
    if not text or not matching:
        raise InvalidArgument(f"Master version \"{text[:64]}\" is unsupported. Valid versions: "
                              f"{', '.join(sorted(clusters.VERSIONS, key=_key, reverse=True))}.")
    return max(matching, key=_key)


def update_master(cluster: GkeCluster, wanted: Any) -> None:
    """Google's rules: no downgrade of the minor version, and one minor version at a time."""
    current, target = master_version(cluster), resolve_version(wanted)
    if _key(target)[:2] < _key(current)[:2]:
        raise FailedPrecondition(f"Master cannot be downgraded from {current} to {target}.")
    if _key(target)[1] > _key(current)[1] + 1:
        raise FailedPrecondition(f"Master cannot be upgraded more than one minor version at a time "
                                 f"({current} to {target}).")
    now = rfc3339(datetime.now(UTC))
    history = list((cluster.body or {}).get(UPGRADES) or [])[-(MAX_UPGRADES - 1):]
    history.append({"state": "SUCCEEDED", "startType": "MANUAL", "initialVersion": current, "targetVersion": target,
                    "startTime": now, "endTime": now})
    _set(cluster, "currentMasterVersion", target)
    _set(cluster, UPGRADES, history)


def _targets(current: str) -> dict[str, str]:
    minor = _key(current)[:2]
    patch = [v for v in clusters.VERSIONS if _key(v)[:2] == minor and _key(v) > _key(current)]
    nxt = [v for v in clusters.VERSIONS if _key(v)[:2] == (minor[0], minor[1] + 1)]
    out = {}
    if patch:
        out["patchTargetVersion"] = max(patch, key=_key)
    if nxt:
        out["minorTargetVersion"] = max(nxt, key=_key)
    return out


def cluster_upgrade_info(cluster: GkeCluster) -> dict[str, Any]:
    """ClusterUpgradeInfo: where the control plane can go next, and the upgrades it went through."""
    channel = _field(cluster, "releaseChannel").get("channel")
    return {"autoUpgradeStatus": ["ACTIVE" if channel in RELEASE_CHANNELS or cluster.autopilot else "UNKNOWN"],
            **_targets(master_version(cluster)),
            "upgradeDetails": list((cluster.body or {}).get(UPGRADES) or [])}


def node_pool_upgrade_info(cluster: GkeCluster, pool: GkeNodePool) -> dict[str, Any]:
    """NodePoolUpgradeInfo: nodes follow the control plane, so their targets are up to its version."""
    targets = {k: v for k, v in _targets(clusters.VERSION).items() if _key(v) <= _key(master_version(cluster))}
    auto = management(cluster, pool).get("autoUpgrade")
    return {"autoUpgradeStatus": ["ACTIVE" if auto else "UNKNOWN"], **targets, "upgradeDetails": []}


def complete_control_plane_upgrade(cluster: GkeCluster) -> None:
    raise FailedPrecondition(f"Cluster \"{cluster.name}\" has no rollback-safe control plane upgrade in progress "
                             "to complete.")


def autopilot_compatibility(s: Session, cluster: GkeCluster) -> dict[str, Any]:
    """CheckAutopilotCompatibilityResponse: what of the cluster Autopilot would refuse or change,
    from what Keyless knows of it (Workload Identity, node metadata, ABAC, privileged pods)."""
    if cluster.autopilot:
        return {"summary": "The cluster is an Autopilot cluster.", "issues": []}
    now = rfc3339(datetime.now(UTC))
    issues: list[dict[str, Any]] = []

    def issue(kind: str, constraint: str, text: str, subjects: list[str]) -> None:
        issues.append({"incompatibilityType": kind, "constraintType": constraint, "description": text,
                       "subjects": subjects, "lastObservation": now,
                       "documentationUrl": "https://cloud.google.com/kubernetes-engine/docs/concepts/autopilot-security"})

    if not cluster.workload_pool:
        issue("ADDITIONAL_CONFIG_REQUIRED", "workload-identity",
              "Autopilot clusters always use Workload Identity Federation for GKE; this cluster has no workload "
              "pool.", [clusters.cluster_path(cluster)])
    legacy = [p.name for p in clusters.node_pools(s, cluster) if p.workload_metadata_mode != clusters.GKE_METADATA]
    if legacy:
        issue("ADDITIONAL_CONFIG_REQUIRED", "gke-metadata-server",
              "Autopilot nodes run the GKE metadata server; these node pools expose the Compute Engine metadata "
              "server to pods.", legacy)
    if _field(cluster, "legacyAbac").get("enabled"):
        issue("INCOMPATIBILITY", "legacy-abac", "Autopilot does not support legacy ABAC authorization.",
              [clusters.cluster_path(cluster)])
    privileged = []
    for pod in s.scalars(select(K8sObject).where(K8sObject.cluster_id == cluster.id, K8sObject.kind == "Pod")):
        spec = _field(pod.body or {}, "spec")
        named = spec.get("containers")
        containers: list[Any] = named if isinstance(named, list) else []
        if spec.get("hostNetwork") is True or any(
                isinstance(c, dict) and isinstance(c.get("securityContext"), dict)
                and c["securityContext"].get("privileged") is True for c in containers):
            privileged.append(f"{pod.namespace}/{pod.name}")
    if privileged:
        issue("INCOMPATIBILITY", "autogke-no-host-network-privileged",
              "Autopilot refuses privileged containers and pods on the host network.", privileged[:100])
    summary = (f"{len(issues)} issue(s) found that would need attention before converting to Autopilot."
               if issues else "No compatibility issues found.")
    return {"summary": summary, "issues": issues}


# -- node pools ---------------------------------------------------------------------------------------

def management(cluster: GkeCluster, pool: GkeNodePool) -> dict[str, Any]:
    """NodePool.management: as set, else GKE's defaults (auto-repair and auto-upgrade on)."""
    named = (pool.body or {}).get("management")
    return dict(named) if isinstance(named, dict) else {"autoRepair": True, "autoUpgrade": True}


def set_management(cluster: GkeCluster, pool: GkeNodePool, value: Any) -> None:
    _standard_only(cluster, "Node pool management")
    value = _object(value, "management")
    auto_repair = _bool(value.get("autoRepair"), "management.auto_repair")
    auto_upgrade = _bool(value.get("autoUpgrade"), "management.auto_upgrade")
    channel = _field(cluster, "releaseChannel").get("channel")
    if channel in RELEASE_CHANNELS and not auto_upgrade:
        raise FailedPrecondition(f"Auto-upgrade cannot be disabled on node pools of a cluster enrolled in the "
                                 f"{channel} release channel.")
    _set(pool, "management", {"autoRepair": auto_repair, "autoUpgrade": auto_upgrade})


def set_autoscaling(cluster: GkeCluster, pool: GkeNodePool, value: Any) -> None:
    """NodePoolAutoscaling: 0 <= min <= max; the per-zone and total bounds exclude each other."""
    _standard_only(cluster, "Node pool autoscaling")
    value = _object(value, "autoscaling")
    if not _bool(value.get("enabled"), "autoscaling.enabled"):
        _set(pool, "autoscaling", None)
        return
    zone = [k for k in ("minNodeCount", "maxNodeCount") if value.get(k) not in (None, 0)]
    total = [k for k in ("totalMinNodeCount", "totalMaxNodeCount") if value.get(k) not in (None, 0)]
    if zone and total:
        raise InvalidArgument("The total_*_node_count fields are mutually exclusive with the *_node_count fields.")
    low_key, high_key = ("totalMinNodeCount", "totalMaxNodeCount") if total else ("minNodeCount", "maxNodeCount")
    low = _int(value.get(low_key, 0), f"autoscaling.{low_key}")
    high = _int(value.get(high_key, 0), f"autoscaling.{high_key}")
    if low < 0 or high < 1 or low > high or high > MAX_AUTOSCALING_NODES:
        raise InvalidArgument(f"Invalid autoscaling bounds: {low_key} ({low}) must be at least 0 and at most "
                              f"{high_key} ({high}), which must be between 1 and {MAX_AUTOSCALING_NODES}.")
    policy = value.get("locationPolicy") or "BALANCED"
    if policy not in ("BALANCED", "ANY", "LOCATION_POLICY_UNSPECIFIED"):
        raise InvalidArgument(f"Invalid value at 'autoscaling.location_policy', {json.dumps(policy)[:64]}")
    _set(pool, "autoscaling", {"enabled": True, low_key: low, high_key: high,
                               "locationPolicy": "BALANCED" if policy == "LOCATION_POLICY_UNSPECIFIED" else policy,
                               **({"autoprovisioned": True} if value.get("autoprovisioned") is True else {})})


def set_size(s: Session, cluster: GkeCluster, pool: GkeNodePool, count: Any) -> None:
    """SetNodePoolSizeRequest: the pool gets exactly `count` nodes. New nodes join as create's do;
    removed ones are those running no pod first, newest name last (GKE's instance group picks
    freely). Pods bound to a removed node stay, as after nodePools.delete."""
    _standard_only(cluster, "Resizing a node pool")
    count = _int(count, "node_count")
    if not 0 <= count <= clusters.MAX_NODES:
        raise InvalidArgument(f"node_count must be between 0 and {clusters.MAX_NODES}.")
    nodes = list(s.scalars(select(GkeNode).where(GkeNode.node_pool_id == pool.id).order_by(GkeNode.name)).all())
    if count < len(nodes):
        busy = {str(_field(p.body or {}, "spec").get("nodeName")) for p in s.scalars(
            select(K8sObject).where(K8sObject.cluster_id == cluster.id, K8sObject.kind == "Pod"))}
        for node in sorted(nodes, key=lambda n: (n.name in busy, n.name))[:len(nodes) - count]:
            s.delete(node)
    pool.node_count = count
    if count > len(nodes):
        clusters.add_nodes(s, cluster, pool, count - len(nodes))


def rollback(cluster: GkeCluster, pool: GkeNodePool) -> None:
    """RollbackNodePoolUpgradeRequest: a no-op after a completed upgrade, which is every upgrade here."""
    _standard_only(cluster, "Rolling back a node pool upgrade")


def complete_node_pool_upgrade(cluster: GkeCluster, pool: GkeNodePool) -> None:
    raise FailedPrecondition(f"Node pool \"{pool.name}\" has no blue-green upgrade in progress to complete.")
