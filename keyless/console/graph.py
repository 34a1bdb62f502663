"""The identity graph of one project, as the console draws it: workload identity pools -> providers
(issuer, mapping, condition) -> the principal/principalSet members their tokens become -> service
accounts (impersonation edges, labelled with the role) -> grants (a role on a resource) ->
resources (the project, buckets, secrets); and GKE clusters -> namespaces -> KSAs -> the GSAs they
are annotated with. Conditional grants carry their expression; the doctor's lint findings sit on
the nodes and edges they name.

Read from the doctor's `Setup` snapshot (keyless.doctor.model), filtered by what the viewer may read
through the same permissions the APIs check (resourcemanager.projects.getIamPolicy on the project,
iam.workloadIdentityPools.list, container.clusters.list, each resource's getIamPolicy). The layout
is layered and computed here (a Sugiyama-style column per kind, ordered by the barycentre of each
node's neighbours), so the browser only draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from keyless.doctor import targets
from keyless.doctor.lint import lint
from keyless.doctor.model import Setup
from keyless.doctor.rules import Finding
from keyless.errors import KeylessError
from keyless.iam.grantable import GET_POLICY_PERMISSION
from keyless.projects import ROOT, project_chain

# Columns, left to right: where an identity comes from, who it becomes, what it reaches.
LAYERS = {"pool": 0, "cluster": 0, "provider": 1, "namespace": 1, "member": 2, "ksa": 2,
          "serviceAccount": 3, "grant": 4, "resource": 5}
KINDS = tuple(LAYERS)
COLUMN_WIDTH = 330  # a node (200 px) and the gap its edges' labels sit in (a role's name, ~120 px)
ROW_HEIGHT = 34
MAX_TEXT = 200
HUB_DEGREE = 25
SWEEPS = 4  # barycentre passes (down and up); more barely changes the crossings at these sizes

# (permission, chain, target) -> granted for the viewer; the target (a bucket, a secret) when the
# check is on one, for its convenience members and its condition context, as its API checks it
Allowed = Callable[[str, list[str], "targets.Target | None"], bool]


@dataclass
class Node:
    id: str
    kind: str
    label: str
    details: dict[str, Any] = field(default_factory=dict)
    findings: list[dict[str, str]] = field(default_factory=list)
    x: int = 0
    y: int = 0

    def as_json(self) -> dict[str, Any]:
        out = {"id": self.id, "kind": self.kind, "label": self.label, "x": self.x, "y": self.y,
               "details": self.details}
        if self.findings:
            out["findings"] = self.findings
        return out


@dataclass
class Edge:
    source: str
    target: str
    label: str = ""
    condition: str | None = None
    findings: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "target": self.target, "label": self.label}
        if self.condition:
            out["condition"] = self.condition
        if self.findings:
            out["findings"] = self.findings
        return out


@dataclass
class Graph:
    project: str
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # what the viewer may not read, and why
    _seen: set[tuple[str, str, str, str | None]] = field(default_factory=set)

    def node(self, id: str, kind: str, label: str, **details: Any) -> Node:
        found = self.nodes.get(id)
        if found is None:
            found = self.nodes[id] = Node(id, kind, label, {k: v for k, v in details.items() if v not in (None, "")})
        return found

    def edge(self, source: str, target: str, label: str = "", condition: str | None = None) -> None:
        key = (source, target, label, condition)
        if key not in self._seen:  # a member bound twice with the same role draws one edge
            self._seen.add(key)
            self.edges.append(Edge(source, target, label, condition))

    def as_json(self, total: int | None = None) -> dict[str, Any]:
        height = max((n.y for n in self.nodes.values()), default=0) + ROW_HEIGHT
        return {"project": self.project, "nodes": [n.as_json() for n in self.nodes.values()],
                "edges": [e.as_json() for e in self.edges], "hidden": self.hidden,
                "width": (max(LAYERS.values()) + 1) * COLUMN_WIDTH, "height": height,
                "total": len(self.nodes) if total is None else total, "layers": LAYERS, "columnWidth": COLUMN_WIDTH}


def _in_project(resource: str, project_id: str, number: str) -> bool:
    return any(resource == f"projects/{p}" or resource.startswith(f"projects/{p}/") for p in (project_id, number))


def build(state: Any, setup: Setup, project_id: str, allowed: Allowed) -> Graph:
    """The graph of `project_id` as a viewer for whom `allowed(permission, chain)` holds sees it
    (the caller has already required resourcemanager.projects.getIamPolicy on the project)."""
    project = setup.project_by_id(project_id)
    number = project.number if project else ""
    chain = project_chain(project_id)
    g = Graph(project_id)
    accounts = {a.email: a for a in setup.accounts}
    # -- pools and providers --------------------------------------------------------------------
    pools_visible = allowed("iam.workloadIdentityPools.list", chain, None)
    if not pools_visible:
        g.hidden.append("workload identity pools: permission iam.workloadIdentityPools.list denied")
    pool_nodes: dict[tuple[str, str], str] = {}
    for pool in setup.pools if pools_visible else []:
        if pool.project_number != number or pool.state != "ACTIVE":
            continue
        pid = pool.name
        g.node(pid, "pool", pool.pool_id, name=pool.name, disabled=pool.disabled or None)
        pool_nodes[(pool.project_number, pool.pool_id)] = pid
        for p in setup.providers_of(pool):
            issuer = (p.oidc or {}).get("issuerUri") or ("AWS account " + str((p.aws or {}).get("accountId"))
                                                          if p.aws else "")
            # named with its pool: "prov-0" alone says nothing where ten pools each have one
            g.node(p.name, "provider", f"{pool.pool_id}/{p.provider_id}", name=p.name, issuer=issuer,
                   mapping=p.attribute_mapping,
                   condition=p.attribute_condition, disabled=p.disabled or None)
            g.edge(pid, p.name, "provider")
    # -- service accounts, also those nothing reaches yet -----------------------------------------
    if allowed("iam.serviceAccounts.list", chain, None):
        for a in setup.accounts:
            if a.project_id == project_id:
                _account_node(g, a.email, accounts)
    else:
        g.hidden.append("service accounts not in a binding: permission iam.serviceAccounts.list denied")
    # -- GKE --------------------------------------------------------------------------------------
    clusters_visible = allowed("container.clusters.list", chain, None)
    if not clusters_visible:
        g.hidden.append("GKE clusters: permission container.clusters.list denied")
    for c in setup.clusters if clusters_visible else []:
        if c.project_id != project_id:
            continue
        cid = f"cluster:{c.id}"
        g.node(cid, "cluster", c.name, location=c.location, workloadPool=c.workload_pool,
               autopilot=c.autopilot or None)
    for o in setup.service_accounts() if clusters_visible else []:
        if o.cluster is None or o.cluster.project_id != project_id:
            continue
        cid, nsid = f"cluster:{o.cluster.id}", f"namespace:{o.cluster.id}/{o.namespace}"
        g.node(nsid, "namespace", o.namespace, cluster=o.cluster.name)
        g.edge(cid, nsid, "namespace")
        workload_pool = o.cluster.workload_pool or f"{project_id}.svc.id.goog"
        kid = f"serviceAccount:{workload_pool}[{o.namespace}/{o.name}]"
        annotation = o.annotations().get("iam.gke.io/gcp-service-account")
        g.node(kid, "ksa", f"{o.namespace}/{o.name}", member=kid, cluster=o.cluster.name,
               annotation=annotation if isinstance(annotation, str) else None)
        g.edge(nsid, kid, "KSA")
        if isinstance(annotation, str) and annotation:
            _account_node(g, annotation, accounts)
            g.edge(kid, f"serviceAccount:{annotation}", "annotation")
    # -- bindings ---------------------------------------------------------------------------------
    readable: dict[str, bool] = {}
    with state.db.read() as session:  # one read for every resource's name (buckets, secrets)
        _bindings(g, setup, project_id, number, chain, allowed, accounts, pool_nodes, readable, session)
    _attach_findings(g, lint(setup))
    _dead_ends(g)
    return g


def _dead_ends(g: Graph) -> None:
    """A provider no binding follows (its pool's members are bound nowhere the viewer can read):
    its tokens exchange, and reach nothing. Not a doctor rule (nothing is wrong in any one policy),
    but what a reader of the graph must be told, as a warning on the provider."""
    if any("getIamPolicy denied" in h for h in g.hidden):
        return  # a binding the viewer may not read may well follow it
    leads = {e.source for e in g.edges}
    for n in list(g.nodes.values()):
        if n.kind == "provider" and n.id not in leads:
            pool = n.id.split("/providers/")[0].rsplit("/", 1)[-1]
            n.findings.append({
                "rule": "graph", "severity": "warning", "title": "Provider leads nowhere",
                "message": f"no binding names an identity of pool {pool}: tokens this provider accepts are exchanged "
                           "but may impersonate no service account and reach no resource (a removed binding?).",
                "fix": f"gcloud iam service-accounts add-iam-policy-binding SA_EMAIL --role=roles/iam.workloadIdentityUser "
                       f'--member="principalSet://iam.googleapis.com/{n.id.split("/providers/")[0]}/attribute.NAME/VALUE"'})


def _bindings(g: Graph, setup: Setup, project_id: str, number: str, chain: list[str], allowed: Allowed,
              accounts: dict[str, Any], pool_nodes: dict[tuple[str, str], str], readable: dict[str, Any],
              session: Any) -> None:
    for b in setup.bindings:
        resource = b.resource
        account = setup.account_of_resource(resource)
        if account is not None:
            if account.project_id != project_id:
                continue
            key_chain = [resource, *chain]
            permission = "iam.serviceAccounts.getIamPolicy"
            target = None
        else:
            target = _target(session, resource, readable)
            if target is None or (target.project_id != project_id and not _in_project(resource, project_id, number)):
                continue
            key_chain = target.chain
            permission = GET_POLICY_PERMISSION.get(target.kind, "resourcemanager.projects.getIamPolicy")
        if resource not in readable:
            readable[resource] = allowed(permission, key_chain, target)
            if not readable[resource]:
                g.hidden.append(f"the policy of {setup.describe(resource)}: permission {permission} denied")
        if not readable[resource]:
            continue
        source = _member_node(g, b.member, b.parsed, accounts, pool_nodes, setup)
        condition = (b.condition or {}).get("expression") or None
        if account is not None:
            _account_node(g, account.email, accounts)
            g.edge(source, f"serviceAccount:{account.email}", b.role, condition)
            continue
        rid = f"resource:{resource}"
        shown = setup.describe(resource)
        g.node(rid, "resource", "gs://" + shown.split("/", 3)[3] if shown.startswith("projects/_/buckets/") else shown,
               name=resource)
        gid = f"grant:{b.role}@{resource}"
        g.node(gid, "grant", b.role, role=b.role, resource=setup.describe(resource), on=short_name(setup, resource))
        g.edge(source, gid, "", condition)
        g.edge(gid, rid, "on")


def short_name(setup: Setup, resource: str) -> str:
    """What a grant box says it is on, beside its role (issue #21: "which bucket? click each"): a
    bucket as gs://NAME, a secret or project by kind and id, a service account by its email's local
    part, anything else by its last segment."""
    account = setup.account_of_resource(resource)
    if account is not None:
        return str(account.email).split("@", 1)[0]
    if resource == ROOT:
        return "the root (organization)"
    parts = resource.split("/")
    if len(parts) >= 4 and parts[:3] == ["projects", "_", "buckets"]:
        return "gs://" + parts[3] + ("/" + "/".join(parts[5:]) if len(parts) > 5 else "")
    if len(parts) == 2 and parts[0] == "projects":
        return f"project {parts[1]}"
    if len(parts) >= 2 and parts[-2] in ("secrets", "versions") and "secrets" in parts:
        return f"secret {parts[parts.index('secrets') + 1]}" + (f" v{parts[-1]}" if parts[-2] == "versions" else "")
    return parts[-1]




def policy_readable(session: Any, setup: Setup, resource: str, allowed: Allowed, cache: dict[str, Any]) -> bool:
    """Whether the viewer may read the allow policy of `resource` (an account's, a bucket's, a
    secret's, a project's, the root's), as the graph decides which bindings to draw."""
    key = "readable:" + resource
    if key not in cache:
        account = setup.account_of_resource(resource)
        if account is not None:
            cache[key] = allowed("iam.serviceAccounts.getIamPolicy", [resource, *project_chain(account.project_id)], None)
        elif resource == ROOT:
            cache[key] = allowed("resourcemanager.projects.getIamPolicy", [ROOT], None)
        else:
            target = _target(session, resource, cache)
            cache[key] = target is not None and allowed(
                GET_POLICY_PERMISSION.get(target.kind, "resourcemanager.projects.getIamPolicy"), target.chain, target)
    return bool(cache[key])


def node_id(member: str) -> str:
    """The graph's node for a binding's member: a service account's by its lower-cased email."""
    if member.startswith("serviceAccount:") and "@" in member:
        return member.lower()
    return member


def _target(s: Any, resource: str, cache: dict[str, Any]) -> targets.Target | None:
    key = "target:" + resource
    if key not in cache:
        try:
            cache[key] = targets.resolve(s, resource)
        except KeylessError:
            cache[key] = None  # the root, folders: not drawn in a project's graph
    found: targets.Target | None = cache[key]
    return found


def _account_node(g: Graph, email: str, accounts: dict[str, Any]) -> str:
    account = accounts.get(email.lower())
    nid = f"serviceAccount:{email.lower()}"
    # an annotation that is no email (KL012) names no account: say so, not a second "deploy-sa"
    label = email.split("@")[0] if "@" in email else f"{email} (not an email)"
    g.node(nid, "serviceAccount", label, email=email.lower(),
           exists=account is not None, disabled=(account.disabled or None) if account else None,
           project=account.project_id if account else None)
    return nid


def _member_node(g: Graph, member: str, parsed: Any, accounts: dict[str, Any],
                 pool_nodes: dict[tuple[str, str], str], setup: Setup) -> str:
    """The node a binding's member is: a GSA node for a service account of this store, the KSA node
    for a GKE member (legacy form), else a member node, linked from its pool's providers."""
    if parsed is not None and parsed.kind == "serviceAccount" and parsed.email and not parsed.is_gke:
        return _account_node(g, parsed.email, accounts)
    if member in g.nodes:
        return member
    kind = parsed.kind if parsed is not None else "member"
    label = member if len(member) <= 64 else "…" + member[-63:]
    if parsed is not None and parsed.pool_type == "workload" and parsed.pool_id:
        label = (f"{parsed.selector or kind}: " +
                 (parsed.subject or parsed.attribute_value or parsed.group or "*"))
        if parsed.selector == "*" or not parsed.selector:
            label = f"every identity in {parsed.pool_id}"
        elif parsed.attribute_name:
            label = f"{parsed.attribute_name}: {parsed.attribute_value}"
    gke = parsed is not None and parsed.is_gke and kind in ("serviceAccount", "principal", "principalSet")
    g.node(member, "ksa" if gke else "member", label, member=member, type=kind)
    if parsed is not None and parsed.pool_type == "workload" and parsed.pool_id:
        pid = pool_nodes.get((parsed.project_number or "", parsed.pool_id))
        if pid is not None:
            pool = setup.pool(parsed.project_number or "", parsed.pool_id)
            providers = setup.providers_of(pool) if pool is not None else []
            for p in providers:
                g.edge(p.name, member, "maps to")
            if not providers:
                g.edge(pid, member, "pool")
    return member


def _attach_findings(g: Graph, findings: list[Finding]) -> None:
    """Each finding on the node it is about (its object names the node exactly), else on the edges
    whose two ends it names (a binding: member and account), else on the nodes its object names."""
    names: dict[str, list[str]] = {}
    exact: dict[str, str] = {}
    for n in g.nodes.values():
        # a KSA is named in cluster findings (KL011-KL014, KL027) as the doctor's model labels it
        ksa = f"ServiceAccount {n.label}" if n.kind == "ksa" else None
        for key in (n.details.get("member"), n.details.get("email"), n.details.get("name"), n.id, ksa):
            if isinstance(key, str) and len(key) > 6:
                names.setdefault(n.id, []).append(key)
                exact.setdefault(key, n.id)

    def mentions(text: str, node_id: str) -> bool:
        return any(k in text for k in names.get(node_id, ()))

    def nested(a: str, b: str) -> bool:  # a provider's name contains its pool's: not two ends
        return any(x in y or y in x for x in names.get(a, ()) for y in names.get(b, ()))

    for f in findings:
        shown = {"rule": f.rule.id, "severity": f.level, "title": f.rule.title, "message": f.message[:600],
                 "fix": f.fix[:600]}
        text = f"{f.object} {f.message}"
        if f.object in exact:  # about a member's binding: its edges to what the message names
            nid = exact[f.object]
            edges = [e for e in g.edges if e.source == nid and mentions(f.message, e.target)]
            for e in edges:
                e.findings.append(shown)
            if not edges:
                g.nodes[nid].findings.append(shown)
            continue
        edges = [e for e in g.edges if mentions(text, e.source) and mentions(text, e.target)
                 and not nested(e.source, e.target)]
        for e in edges:
            e.findings.append(shown)
        if not edges:
            for nid in names:
                if mentions(f.object, nid):
                    g.nodes[nid].findings.append(shown)


# -- condensing: readable at thousands of nodes -----------------------------------------------------

CONVENIENCE = ("projectOwner:", "projectEditor:", "projectViewer:")
GROUP_MIN = 6  # grants of one role on this many resources of one kind are drawn as one box


def condense(g: Graph, *, legacy: bool = False, expand: frozenset[str] = frozenset()) -> list[str]:
    """Make `g` readable at scale, in place, and say what was folded: Cloud Storage's automatic
    bindings of the project's basic roles to every bucket's legacy roles (projectOwner:P ->
    roles/storage.legacyBucketOwner, ...) are left out unless `legacy`; a role granted on
    GROUP_MIN or more resources of one kind is one box ("objectViewer on 76 buckets"), and the
    resources only it reaches one box too, unless its key (ROLE@KIND) is in `expand`."""
    notes: list[str] = []
    if not legacy:
        automatic = {id(e) for e in g.edges if e.source.startswith(CONVENIENCE)
                     and g.nodes[e.target].kind == "grant"
                     and str(g.nodes[e.target].details.get("role", "")).startswith("roles/storage.legacy")}
        if automatic:
            _drop_edges(g, automatic)
            notes.append(f"{len(automatic)} automatic legacy bucket bindings (projectOwner:, projectEditor:, "
                         "projectViewer:) hidden")
    groups: dict[str, list[Node]] = {}
    grant_target = {e.source: e.target for e in g.edges if e.label == "on"}
    for n in g.nodes.values():
        if n.kind == "grant":
            kind = _resource_kind(grant_target.get(n.id, ""))
            groups.setdefault(f"{n.details.get('role')}@{kind}", []).append(n)
    for key, members in groups.items():
        if len(members) < GROUP_MIN or key in expand:
            continue
        role, kind = key.rsplit("@", 1)
        ids = {n.id for n in members}
        gid, rid = f"grants:{key}", f"resources:{key}"
        resources = [e.target for e in g.edges if e.source in ids]
        wanted = set(resources)
        sources: dict[str, set[str]] = {}
        for e in g.edges:
            if e.target in wanted:
                sources.setdefault(e.target, set()).add(e.source)
        only_here = [r for r in dict.fromkeys(resources) if sources[r] <= ids]
        g.nodes[gid] = Node(gid, "grant", f"{role.removeprefix('roles/')} on {len(members)} {kind}s",
                            {"role": role, "group": key, "grants": len(members),
                             "resources": [g.nodes[r].label for r in dict.fromkeys(resources)][:100]})
        if only_here:
            g.nodes[rid] = Node(rid, "resource", f"{len(only_here)} {kind}s",
                                {"group": key, "resources": [g.nodes[r].label for r in only_here][:100]})
        fold = {**{i: gid for i in ids}, **{r: rid for r in only_here}}
        edges, seen = [], set()
        for e in g.edges:
            source, target = fold.get(e.source, e.source), fold.get(e.target, e.target)
            k = (source, target, e.label, e.condition)
            if k in seen:
                continue
            seen.add(k)
            edges.append(Edge(source, target, e.label, e.condition, e.findings))
        g.edges = edges
        for i in fold:
            del g.nodes[i]
        notes.append(f"{len(members)} grants of {role} on {kind}s grouped")
    notes.extend(_fold_hubs(g, expand))
    return notes


HUB_EDGES = 25  # a node with more neighbours of one kind on one side than this has them drawn as one box
NOUNS = {"member": "members", "serviceAccount": "service accounts", "ksa": "KSAs", "grant": "grants",
         "resource": "resources", "provider": "providers", "namespace": "namespaces", "pool": "pools",
         "cluster": "clusters"}


def _fold_hubs(g: Graph, expand: frozenset[str]) -> list[str]:
    """A hub (more than HUB_EDGES neighbours of one kind on one side: 400 users granted one role,
    a pool-wide provider mapping to every repository) has those neighbours drawn as one box, "400
    members", their edges going to the box, unless its key (hub:ID<KIND or hub:ID>KIND) is in
    `expand`. One pass from the degrees of the drawn graph: a neighbour that is itself a hub, or a
    box already, stays; each node is folded into one box at most. The box keeps every folded id
    (the browser highlights it when a path reaches one of them) and their findings."""
    sides: dict[tuple[str, str, str], list[str]] = {}
    for e in g.edges:
        sides.setdefault((e.target, "<", g.nodes[e.source].kind), []).append(e.source)
        sides.setdefault((e.source, ">", g.nodes[e.target].kind), []).append(e.target)
    degree: dict[str, int] = {}
    for e in g.edges:
        degree[e.source] = degree.get(e.source, 0) + 1
        degree[e.target] = degree.get(e.target, 0) + 1
    fold: dict[str, str] = {}
    notes = []
    hubs = sorted(((hub, way, kind, list(dict.fromkeys(near))) for (hub, way, kind), near in sides.items()),
                  key=lambda h: (-len(h[3]), h[0], h[1], h[2]))
    for hub, way, kind, near in hubs:
        if len(near) <= HUB_EDGES or hub in fold:
            continue
        key = f"hub:{hub}{way}{kind}"
        folded = [i for i in near if i not in fold and degree.get(i, 0) <= HUB_EDGES
                  and not i.startswith(("grants:", "resources:", "hub:"))]
        if len(folded) <= HUB_EDGES or key in expand:
            continue
        box = Node(key, kind, f"{len(folded)} {NOUNS.get(kind, kind + 's')}",
                   {"group": key, "hub": g.nodes[hub].label, "members": [g.nodes[i].label for i in folded][:100],
                    "ids": folded})
        seen: set[tuple[str, str]] = set()
        for i in folded:
            for f in g.nodes[i].findings:
                if (f["rule"], f["severity"]) not in seen and len(box.findings) < 20:
                    seen.add((f["rule"], f["severity"]))
                    box.findings.append(f)
            fold[i] = key
        g.nodes[key] = box
        notes.append(f"{len(folded)} {NOUNS.get(kind, kind + 's')} {'of' if way == '<' else 'from'} "
                     f"{g.nodes[hub].label} in one box")
    if fold:
        edges, kept = [], set()
        for e in g.edges:
            source, target = fold.get(e.source, e.source), fold.get(e.target, e.target)
            k = (source, target, e.label, e.condition)
            if k not in kept:
                kept.add(k)
                edges.append(Edge(source, target, e.label, e.condition, e.findings))
        g.edges = edges
        for i in fold:
            del g.nodes[i]
    return notes


def _resource_kind(node_id: str) -> str:
    name = node_id.removeprefix("resource:")
    if "/buckets/" in name:
        return "bucket"
    if "/secrets/" in name:
        return "secret"
    return "project" if name.count("/") == 1 else "resource"


def _drop_edges(g: Graph, dropped: set[int]) -> None:
    """Remove the edges whose id() is in `dropped`, then the grants and members left without an
    edge in (and the grants' own edges)."""
    g.edges = [e for e in g.edges if id(e) not in dropped]
    while True:
        targets = {e.target for e in g.edges}
        linked = {e.source for e in g.edges} | targets
        orphans = {i for i, n in g.nodes.items() if i not in linked and n.kind == "member"}
        orphans |= {i for i, n in g.nodes.items() if n.kind == "grant" and i not in targets}
        if not orphans:
            return
        for i in orphans:
            del g.nodes[i]
        g.edges = [e for e in g.edges if e.source not in orphans and e.target not in orphans]


# -- filtering and layout ------------------------------------------------------------------------


def select(g: Graph, kinds: set[str] | None = None, text: str = "", limit: int = 5000) -> Graph:
    """The subgraph of nodes of `kinds` whose label or id contains `text`, with every path through
    them (so a match shows all it comes from and all it reaches, not its neighbours only)."""
    text = text.strip().lower()[:MAX_TEXT]
    keep = {n.id for n in g.nodes.values() if kinds is None or n.kind in kinds}
    if text:
        hits = {i for i in keep if text in i.lower() or text in g.nodes[i].label.lower()}
        near = _closure(g, hits, forward=True) | _closure(g, hits, forward=False)
        keep = {i for i in near if kinds is None or g.nodes[i].kind in kinds}
    ids = list(keep)[:limit] if len(keep) > limit else keep
    out = Graph(g.project, {i: g.nodes[i] for i in g.nodes if i in ids}, hidden=g.hidden)
    out.edges = [e for e in g.edges if e.source in out.nodes and e.target in out.nodes]
    return out


def _closure(g: Graph, start: set[str], forward: bool) -> set[str]:
    """`start` and every node reachable from it along the edges (`forward`) or against them."""
    nxt: dict[str, list[str]] = {}
    for e in g.edges:
        a, b = (e.source, e.target) if forward else (e.target, e.source)
        nxt.setdefault(a, []).append(b)
    seen, todo = set(start), list(start)
    while todo:
        for m in nxt.get(todo.pop(), ()):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def _centre(g: Graph, near: list[str], row: dict[str, float], layer: int, own: float,
            hubs: set[str]) -> float:
    rows = [row[j] for j in near if LAYERS[g.nodes[j].kind] != layer and j not in hubs]
    return sum(rows) / len(rows) if rows else own


def layout(g: Graph) -> Graph:
    """Columns by kind; within a column, order by the barycentre of the neighbours' rows, sweeping
    left to right and back, which untangles the common fan-in/fan-out shapes."""
    columns: dict[int, list[str]] = {}
    for n in sorted(g.nodes.values(), key=lambda n: (n.kind, n.label)):
        columns.setdefault(LAYERS[n.kind], []).append(n.id)
    neighbours: dict[str, list[str]] = {i: [] for i in g.nodes}
    for e in g.edges:
        neighbours[e.source].append(e.target)
        neighbours[e.target].append(e.source)
    tallest = max((len(c) for c in columns.values()), default=1)
    # a node bound everywhere (projectOwner:P on every bucket) would pull all its neighbours to one
    # place: it does not steer the order
    hubs = {i for i, near in neighbours.items() if len(near) > HUB_DEGREE}

    def spread(col: list[str]) -> float:  # short columns are spread over the tallest one's height
        return max(1.0, tallest / max(len(col), 1))

    row = {i: k * spread(col) for col in columns.values() for k, i in enumerate(col)}
    order = sorted(columns)
    for sweep in range(SWEEPS):
        for layer in (order if sweep % 2 == 0 else list(reversed(order))):
            col = columns[layer]
            centres = {i: _centre(g, neighbours[i], row, layer, row[i], hubs) for i in col}
            col.sort(key=centres.__getitem__)
            gap = spread(col)
            for k, i in enumerate(col):
                row[i] = k * gap
    for layer, col in columns.items():
        gap = spread(col)
        for k, i in enumerate(col):
            g.nodes[i].x = layer * COLUMN_WIDTH + 10
            g.nodes[i].y = int((k * gap + (gap - 1) / 2) * ROW_HEIGHT) + 10
    return g
