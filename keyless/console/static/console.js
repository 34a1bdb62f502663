// Keyless console: fills the server-rendered views from /console/api/* (same-origin, the session
// cookie); no framework, no inline script (the CSP forbids it). Errors are shown as Google's
// status and message, never swallowed.
"use strict";

const $ = (sel) => document.querySelector(sel);
const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

async function api(path, options) {
  const opts = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
  if (opts.method === "POST") {
    opts.headers["Content-Type"] = "application/json";
    opts.headers["X-CSRF-Token"] = csrf();
  }
  const response = await fetch(path, opts);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const e = body.error || {};
    throw new Error(`${e.code || response.status} ${e.status || ""}: ${e.message || response.statusText}`);
  }
  return body;
}

function showError(err) {
  const box = $("#error");
  if (!box) return;
  if (err) { box.textContent = err.message || String(err); box.hidden = false; }
  else { box.textContent = ""; box.hidden = true; }
}

async function fillProjects() {
  const select = $("#project");
  const params = new URLSearchParams(location.search);
  const { projects } = await api("/console/api/projects");
  for (const p of projects) select.append(el("option", { value: p.projectId, text: p.projectId }));
  const wanted = params.get("project") || localStorage.getItem("keyless.project");
  if (wanted) {
    if (![...select.options].some((o) => o.value === wanted)) select.append(el("option", { value: wanted, text: wanted }));
    select.value = wanted;
  }
  if (!select.value && projects.length === 0) select.append(el("option", { value: "", text: "(no project visible)" }));
  select.addEventListener("change", () => localStorage.setItem("keyless.project", select.value));
}

// -- identity graph ---------------------------------------------------------------------------

// A box holds one line of LABEL_CHARS (12 px) or, for a grant, its role (11 px) over what it is on
// (10 px), each cut to what the drawn text's measured width lets fit (fitText), from ROLE_CHARS/ON_CHARS
const NODE_W = 200, NODE_H = 28, TOP = 16, LABEL_CHARS = 27, ROLE_CHARS = 34, ON_CHARS = 36;
const SEVERITY_RANK = { error: 3, warning: 2, info: 1, note: 1 };

async function graphView() {
  await fillProjects().catch(showError);
  const params = new URLSearchParams(location.search);
  if (params.get("q")) $("#q").value = params.get("q");
  if (params.get("kind")) $("#kind").value = params.get("kind");
  $("#apply").addEventListener("click", loadGraph);
  $("#legacy").addEventListener("change", loadGraph);
  $("#q").addEventListener("keydown", (e) => { if (e.key === "Enter") loadGraph(); });
  await loadGraph();
}

const expanded = new Set();  // grouped grants (ROLE@KIND) the reader opened

async function loadGraph() {
  showError(null);
  const canvas = $("#canvas");
  const q = new URLSearchParams({ project: $("#project").value, q: $("#q").value });
  if ($("#kind").value) q.append("kind", $("#kind").value);
  if ($("#legacy").checked) q.set("legacy", "1");
  for (const key of expanded) q.append("expand", key);
  const started = performance.now();
  let g;
  try {
    g = await api(`/console/api/graph?${q}`);
  } catch (err) {
    canvas.replaceChildren();
    $("#status").textContent = "";
    showError(err);
    return;
  }
  drawGraph(canvas, g);
  const hidden = $("#hidden");
  hidden.hidden = g.hidden.length === 0;
  hidden.textContent = g.hidden.length ? "Not shown (your permissions): " + g.hidden.join("; ") : "";
  const folded = $("#folded");
  folded.hidden = !(g.folded || []).length;
  folded.textContent = (g.folded || []).length ? "Folded for reading: " + g.folded.join("; ") + "." : "";
  requestAnimationFrame(() => {
    const ms = Math.round(performance.now() - started);
    $("#status").textContent = `${g.nodes.length} of ${g.total} nodes, ${g.edges.length} edges · ` +
      `built in ${Math.round(g.buildSeconds * 1000)} ms, drawn in ${ms} ms`;
    document.body.dataset.rendered = String(ms);
  });
}

// The worst severity among findings: the class that colours a node or an edge (error red,
// warning amber, info blue), so a warning does not read as an error.
function severityOf(findings) {
  let worst = null;
  for (const f of findings || []) if (!worst || (SEVERITY_RANK[f.severity] || 0) > SEVERITY_RANK[worst]) worst = f.severity;
  return worst;
}

// A label that fits its box: whole when short; else its last path segments (a bucket's, a secret's,
// a member's end tells nodes apart) after "…", never a cut through the middle of a segment unless one
// segment alone is too long.
function fitLabel(label, max) {
  if (label.length <= max) return label;
  const parts = label.split("/");
  let kept = parts.pop();
  while (parts.length && kept.length + parts[parts.length - 1].length + 2 <= max) kept = parts.pop() + "/" + kept;
  if (kept.length + 1 <= max) return "…" + (label.length > kept.length ? "/" : "") + kept.replace(/^\//, "");
  return kept.slice(0, max - 1) + "…";
}

// Edges leave a box's right side and enter the next box's left side; one that skips columns crosses
// each column between its boxes (in the free lane nearest its straight line), never under a box.
function edgePath(a, b, byColumn, column) {
  const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2 + TOP, x2 = b.x, y2 = b.y + NODE_H / 2 + TOP;
  const points = [[x1, y1]];
  const from = Math.round((a.x - 10) / column), to = Math.round((b.x - 10) / column);
  for (let c = from + 1; c < to; c++) {
    const cx = c * column + 10;
    const y = lane(byColumn.get(c) || [], y1 + (y2 - y1) * ((cx - x1) / Math.max(1, x2 - x1)));
    points.push([cx - 8, y], [cx + NODE_W + 8, y]);  // entering the column's lane, leaving it
  }
  points.push([x2, y2]);
  let d = `M${x1},${y1}`;
  for (let i = 1; i < points.length; i++) {
    const [px, py] = points[i - 1], [x, y] = points[i];
    if (i % 2 === 0 && i < points.length - 1) d += ` L${x},${y}`;  // across a column, between its boxes
    else { const mid = (px + x) / 2; d += ` C${mid},${py} ${mid},${y} ${x},${y}`; }
  }
  const [ex, ey] = points[1];
  return { d, mid: [(x1 + ex) / 2, (y1 + ey) / 2] };  // the middle of the first gap: where a label goes
}

// A label's baseline: `y`, or the next free line below it when another label of the same gap is
// there already (two edges between one pair of nodes: an annotation and a binding).
function placeLabel(placed, x, y) {
  const key = Math.round(x / 20);
  const taken = placed.get(key) || [];
  let at = y;
  while (taken.some((t) => Math.abs(t - at) < 12)) at += 12;
  taken.push(at);
  placed.set(key, taken);
  return at;
}

// The y nearest `y` that no box of the column covers (boxes sorted by y).
function lane(boxes, y) {
  for (const top of boxes) {
    const lo = top + TOP - 3, hi = top + TOP + NODE_H + 3;
    if (y >= lo && y <= hi) return (y - lo < hi - y) ? lo : hi;
  }
  return y;
}

function drawGraph(canvas, g) {
  const column = g.columnWidth;
  graphEdges = g.edges;
  graphBoxes = new Map(g.nodes.filter((n) => n.details.ids).map((n) => [n.id, n.details.ids]));
  const root = svg("svg", { width: g.width, height: Math.max(g.height + TOP + 12, 200), class: "graph", role: "img",
                             "aria-label": `identity graph of ${g.project}` });
  const byId = new Map(g.nodes.map((n) => [n.id, n]));
  const byColumn = new Map();
  for (const n of g.nodes) {
    const c = Math.round((n.x - 10) / column);
    if (!byColumn.has(c)) byColumn.set(c, []);
    byColumn.get(c).push(n.y);
  }
  byColumn.forEach((ys) => ys.sort((p, q) => p - q));
  const heads = svg("g", { class: "columns" });
  const names = ["pools, clusters", "providers, namespaces", "members, KSAs", "service accounts", "grants", "resources"];
  names.forEach((name, i) => { const t = svg("text", { x: i * column + 10, y: 12, class: "column" }); t.textContent = name; heads.append(t); });
  root.append(heads);
  const edges = svg("g", { class: "edges" });
  const labels = svg("g", { class: "edge-labels" });
  const placed = new Map();
  for (const e of g.edges) {
    const a = byId.get(e.source), b = byId.get(e.target);
    if (!a || !b) continue;
    const route = edgePath(a, b, byColumn, column);
    const severity = severityOf(e.findings);
    const cls = ["edge", e.condition ? "conditional" : "", severity ? `finding sev-${severity}` : ""].join(" ").trim();
    const path = svg("path", { d: route.d, class: cls, "data-source": e.source, "data-target": e.target });
    const title = svg("title", {});
    title.textContent = `${e.label || "edge"}${e.condition ? " if " + e.condition : ""}`;
    path.append(title);
    path.addEventListener("click", () => showEdge(e, a, b));
    edges.append(path);
    if (e.label.startsWith("roles/") || e.label === "annotation") {
      // on the edge, in the gap after its source: edges into one account from different rows keep apart
      const [lx, ly] = route.mid;
      const t = svg("text", { x: lx, y: placeLabel(placed, lx, ly - 3), class: "edge-label" + (severity ? ` finding sev-${severity}` : ""),
                              "data-source": e.source, "data-target": e.target });
      t.textContent = e.label.replace(/^roles\/[a-z]+\./, "").replace(/^roles\//, "");
      t.addEventListener("click", () => showEdge(e, a, b));
      labels.append(t);
    }
  }
  root.append(edges);
  const nodes = svg("g", { class: "nodes" });
  for (const n of g.nodes) {
    const severity = severityOf(n.findings);
    const group = svg("g", { class: `node kind-${n.kind}${severity ? ` finding sev-${severity}` : ""}`,
                             transform: `translate(${n.x},${n.y + TOP})`, "data-id": n.id, tabindex: "0" });
    group.append(svg("rect", { width: NODE_W, height: NODE_H, rx: 5 }));
    const on = n.kind === "grant" ? n.details.on : null;  // which bucket, secret, project: readable without a click
    const t = svg("text", { x: 8, y: on ? 12 : 18, class: on ? "role-line fit" : "" });
    if (on) t.dataset.full = n.label.replace(/^roles\//, "");
    t.textContent = on ? fitLabel(t.dataset.full, ROLE_CHARS) : fitLabel(n.label, LABEL_CHARS);
    const title = svg("title", {});
    title.textContent = `${n.kind}: ${n.label}${on ? ` on ${n.details.resource || on}` : ""}`;
    group.append(t);
    if (on) {
      const second = svg("text", { x: 8, y: 24, class: "on fit" });
      second.dataset.full = on;
      second.textContent = fitLabel(on, ON_CHARS);
      group.append(second);
    }
    group.append(title);
    group.addEventListener("click", () => showNode(n));
    group.addEventListener("keydown", (ev) => { if (ev.key === "Enter") showNode(n); });
    nodes.append(group);
  }
  root.append(nodes, labels);
  canvas.replaceChildren(root);
  root.querySelectorAll("text.fit").forEach(fitText);
}

// A grant's line, drawn: shortened (fitLabel, a character at a time) until its measured width fits
// the box (a 11 px role of wide letters would overflow at a length that fits narrow ones).
function fitText(t) {
  const room = NODE_W - 14;
  for (let max = t.textContent.length; max > 8 && t.getComputedTextLength() > room; max--) {
    t.textContent = fitLabel(t.dataset.full, max - 1);
  }
}

function detailsList(obj) {
  const dl = el("dl");
  for (const [k, v] of Object.entries(obj)) {
    dl.append(el("dt", { text: k }), el("dd", {}, typeof v === "object" ? el("pre", { text: JSON.stringify(v, null, 2) }) : String(v)));
  }
  return dl;
}

function findingsList(findings) {
  if (!findings) return null;
  return el("div", { class: "findings" }, el("h3", { text: "Doctor findings" }),
    ...findings.map((f) => el("div", { class: `finding-item sev-${f.severity}` },
      el("strong", { text: `${f.severity.toUpperCase()} ${f.rule}: ${f.title}` }), el("p", { text: f.message }),
      el("p", {}, "Fix: ", el("code", { text: f.fix })))));
}

function openDetails(...children) {
  const box = $("#details");
  box.hidden = false;
  box.replaceChildren(el("button", { type: "button", class: "close", "aria-label": "close", text: "×",
                                     onclick: () => { box.hidden = true; highlight(null); } }), ...children);
}

// Every path through a node: what it reaches (following edges) and what reaches it (against them),
// as far as they go; the rest of the graph is dimmed.
let graphEdges = [];
let graphBoxes = new Map();  // a hub's box -> the ids folded into it

function reach(start, forward) {
  const next = new Map();
  for (const e of graphEdges) {
    const [from, to] = forward ? [e.source, e.target] : [e.target, e.source];
    if (!next.has(from)) next.set(from, []);
    next.get(from).push(to);
  }
  const seen = new Set([start]), todo = [start];
  while (todo.length) for (const m of next.get(todo.pop()) || []) if (!seen.has(m)) { seen.add(m); todo.push(m); }
  return seen;
}

function highlight(id) {
  if (id === null) {
    if (asking) { asking.abort(); asking = null; }
    const svgRoot = document.querySelector("svg.graph");
    if (svgRoot) svgRoot.classList.remove("focused");
    return;
  }
  const down = reach(id, true), up = reach(id, false);
  mark(id, up, down);
  const status = $("#path-status");
  if (status) status.textContent = `${up.size - 1} nodes reach it, it reaches ${down.size - 1}`;
}

// Marks what reaches `id` (up) and what it reaches (down); an edge is on a path when both its ends
// are on the same side; the rest is dimmed.
function mark(id, up, down) {
  const svgRoot = document.querySelector("svg.graph");
  if (!svgRoot) return;
  for (const [box, ids] of graphBoxes) {  // a box is on a path when one of its members is
    if (ids.some((i) => up.has(i))) up.add(box);
    if (ids.some((i) => down.has(i))) down.add(box);
  }
  svgRoot.classList.add("focused");
  svgRoot.querySelectorAll(".node").forEach((x) => {
    x.classList.toggle("on-path", down.has(x.dataset.id) || up.has(x.dataset.id));
    x.classList.toggle("reaches", up.has(x.dataset.id) && x.dataset.id !== id);
    x.classList.toggle("reached", down.has(x.dataset.id) && x.dataset.id !== id);
  });
  svgRoot.querySelectorAll("path.edge, text.edge-label").forEach((x) => {
    const s = x.dataset.source, t = x.dataset.target;
    x.classList.toggle("on-path", (down.has(s) && down.has(t)) || (up.has(s) && up.has(t)));
  });
}

// A principal or a resource is answered by the doctor's access analysis (one request per
// selection; a newer selection or ACCESS_WAIT ms abort it): what the principal reaches, through
// impersonation and workload identity, or who reaches the resource. How one becomes the principal
// (its provider, pool, KSA) is the graph's own paths to it.
const ASKED_KINDS = new Set(["serviceAccount", "member", "ksa", "resource"]);
const ACCESS_WAIT = 10000;
let asking = null;

async function askDoctor(n) {
  if (asking) asking.abort();
  const controller = new AbortController();
  asking = controller;
  const timer = setTimeout(() => controller.abort(), ACCESS_WAIT);
  document.body.dataset.access = "pending";
  $("#path-status").textContent = "Asking the doctor's access analysis…";
  let answer;
  try {
    answer = await api(`/console/api/access?${new URLSearchParams({ project: $("#project").value, node: n.id })}`,
                       { signal: controller.signal });
  } catch (err) {
    if (asking !== controller) return;  // another selection, or the panel closed
    asking = null;
    highlight(n.id);
    const status = $("#path-status");
    if (status) status.textContent += ` (graph paths only: ${err.name === "AbortError" ? "no answer in time" : err.message})`;
    document.body.dataset.access = "failed";
    return;
  } finally {
    clearTimeout(timer);
  }
  if (asking !== controller) return;
  asking = null;
  const doctor = new Set(answer.nodes);
  const resource = answer.direction === "reachedBy";
  mark(n.id, resource ? doctor : reach(n.id, false), resource ? new Set([n.id]) : doctor);
  const count = (key) => new Set(answer.accesses.map((a) => a[key])).size;
  const permissions = new Set(answer.accesses.flatMap((a) => a.permissions)).size;
  $("#path-status").textContent = resource
    ? `The doctor: ${count("identity")} identities reach it (${answer.total} accesses)`
    : `The doctor: it reaches ${count("resource")} resources with ${permissions} permissions (${answer.total} accesses); ` +
      `${reach(n.id, false).size - 1} nodes reach it`;
  if (answer.hidden) $("#path-status").textContent += `; ${answer.hidden} left out (policies you may not read)`;
  $("#access-list").replaceChildren(...answer.accesses.map((a) => el("li", { class: "access" },
    el("span", { class: "who", text: resource ? a.identity : a.resource }), " ",
    el("span", { class: "role", text: a.role }),
    el("span", { class: "perms", text: ` (${a.permissions.length} permission${a.permissions.length === 1 ? "" : "s"})` }),
    a.via ? el("span", { class: "via", text: " via " + a.via.map((h) => h.serviceAccount).join(" → ") }) : null,
    a.condition ? el("span", { class: "condition", text: ` if ${a.condition}` }) : null)));
  document.body.dataset.access = "done";
}

function showNode(n) {
  document.querySelectorAll(".node.selected").forEach((x) => x.classList.remove("selected"));
  const g = document.querySelector(`.node[data-id="${CSS.escape(n.id)}"]`);
  if (g) g.classList.add("selected");
  openDetails(el("h2", { text: n.label }), el("p", { class: "kind", text: n.kind }),
    el("p", { id: "path-status", class: "hint" }),
    el("p", {}, el("code", { text: n.id })),
    n.details.group ? el("button", { type: "button", class: "expand",
      text: n.details.group.startsWith("hub:") ? `Expand into ${n.label}` : "Expand into one box per grant",
      onclick: () => { expanded.add(n.details.group); loadGraph(); } }) : "",
    detailsList(n.details), findingsList(n.findings) || "", el("ul", { id: "access-list", class: "access-list" }));
  if (ASKED_KINDS.has(n.kind) && !n.details.group) askDoctor(n);
  else { if (asking) { asking.abort(); asking = null; } highlight(n.id); }
}

function showEdge(e, a, b) {
  openDetails(el("h2", { text: e.label || "edge" }),
    el("p", { text: `${a.label} → ${b.label}` }),
    e.condition ? el("p", { class: "condition" }, "Condition: ", el("code", { text: e.condition })) : "",
    findingsList(e.findings) || "");
}

// -- IAM (the project's page: by principal, by role, inherited marked) ------------------------------

let iamData = null, iamBy = "principal";

async function iamView() {
  await fillProjects().catch(showError);
  document.querySelectorAll(".view-by .by").forEach((b) => b.addEventListener("click", () => {
    document.querySelectorAll(".view-by .by").forEach((x) => x.classList.toggle("current", x === b));
    iamBy = b.dataset.by;
    drawIam();
  }));
  $("#q").addEventListener("input", drawIam);
  $("#project").addEventListener("change", loadIam);
  await loadIam();
}

async function loadIam() {
  showError(null);
  try {
    iamData = await api(`/console/api/iam?${new URLSearchParams({ project: $("#project").value })}`);
  } catch (err) { iamData = null; $("#iam-table thead").replaceChildren(); $("#iam-table tbody").replaceChildren(); showError(err); return; }
  const hidden = $("#hidden");
  hidden.hidden = !iamData.hidden.length;
  hidden.textContent = iamData.hidden.length ? "Not shown (your permissions): " + iamData.hidden.join("; ") : "";
  drawIam();
}

function grantCell(grant, what) {
  return el("li", { class: grant.inherited ? "inherited" : "" }, el("span", { class: "what", text: what }),
    grant.condition ? el("span", { class: "condition", title: grant.condition.expression || "",
                                   text: `condition: ${grant.condition.title || grant.condition.expression}` }) : null,
    grant.inherited ? el("span", { class: "badge", text: `inherited from ${grant.from}` }) : null);
}

function drawIam() {
  if (!iamData) return;
  const q = $("#q").value.trim().toLowerCase();
  const byPrincipal = iamBy === "principal";
  const rows = byPrincipal ? iamData.byPrincipal : iamData.byRole;
  const shown = rows.filter((r) => !q || JSON.stringify(r).toLowerCase().includes(q));
  $("#iam-table thead").replaceChildren(el("tr", {}, el("th", { text: byPrincipal ? "Principal" : "Role" }),
    el("th", { text: byPrincipal ? "Roles" : "Principals" })));
  $("#iam-table tbody").replaceChildren(...shown.map((r) => el("tr", { "data-key": byPrincipal ? r.member : r.role },
    el("td", { class: "key", text: byPrincipal ? r.member : r.role }),
    el("td", {}, el("ul", {}, ...(byPrincipal ? r.roles.map((g) => grantCell(g, g.role)) : r.members.map((g) => grantCell(g, g.member))))))));
  $("#status").textContent = `${shown.length} ${byPrincipal ? "principals" : "roles"}`;
}

// -- audit timeline ---------------------------------------------------------------------------

let newest = null, tailTimer = null, nextPage = null, pagedQuery = null, severity = "", focusEntry = null;
const RPC = { 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
  6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED",
  11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED" };
const statusName = (code) => RPC[code] || `status ${code}`;

async function timelineView() {
  await fillProjects().catch(showError);
  const params = new URLSearchParams(location.search);
  if (params.get("filter")) $("#filter").value = params.get("filter");
  focusEntry = params.get("entry");  // the entry view: one entry, opened (the "what changed" view links here)
  if (focusEntry) $("#filter").value = `insertId="${focusEntry.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
  $("#apply").addEventListener("click", () => loadEntries(false));
  $("#filter").addEventListener("keydown", (e) => { if (e.key === "Enter") loadEntries(false); });
  $("#range").addEventListener("change", () => loadEntries(false));
  $("#tail").addEventListener("change", scheduleTail);
  $("#more").addEventListener("click", loadOlder);
  document.querySelectorAll(".sev-filter").forEach((b) => b.addEventListener("click", () => {
    document.querySelectorAll(".sev-filter").forEach((x) => x.classList.toggle("current", x === b));
    severity = b.dataset.severity;
    loadEntries(false);
  }));
  await loadEntries(false);
}

function scheduleTail() {
  clearTimeout(tailTimer);
  if ($("#tail").checked) tailTimer = setTimeout(() => loadEntries(true).finally(scheduleTail), 2000);
}

function entryQuery() {
  const text = $("#filter").value.trim();
  const filter = severity ? (text ? `(${text}) AND severity>=${severity}` : `severity>=${severity}`) : text;
  const q = new URLSearchParams({ project: $("#project").value, filter });
  const range = Number($("#range").value);
  if (range) q.set("since", new Date(Date.now() - range * 1000).toISOString());
  return q;
}

// Each query applied (not a tail) starts a generation; an answer that comes back after a newer query
// was applied is dropped: a tail still on its way would otherwise prepend the old filter's entries
// to the new list and draw the old filter's histogram over the new one.
let generation = 0;

async function loadEntries(tail) {
  const mine = tail ? generation : ++generation;
  const q = entryQuery();
  if (tail && newest) q.set("after", newest);
  let page;
  try {
    page = await api(`/console/api/entries?${q}`);
  } catch (err) {
    if (mine !== generation) return;
    if (!tail) {
      $("#entries").replaceChildren(); $("#flows").replaceChildren(); $("#histogram").replaceChildren();
      $("#histogram-note").hidden = true;
      histogramAsked++;  // a histogram still on its way belongs to the query that failed
    }
    showError(err);
    return;
  }
  if (mine !== generation) return;
  showError(null);
  const list = $("#entries");
  if (!tail) {
    list.replaceChildren(); $("#flows").replaceChildren(); newest = null;
    nextPage = page.nextPageToken || null;
    pagedQuery = q;  // older pages continue this very query (its time range fixed when it was made)
  }
  list.prepend(...page.entries.map(entryRow));
  if (page.entries.length) newest = page.entries[0].timestamp;
  if (page.flows) drawFlows(page.flows);
  if (!tail) $("#query-hint").replaceChildren(...(page.hint ? [el("pre", { class: "hint", text: page.hint })] : []));
  afterEntries();
  if (!tail || page.entries.length) await loadHistogram(q);
  if (!tail) scheduleTail();
}

// Logs Explorer's histogram: the whole time range counted on the server (same filter, same
// permission as the entries), not only the entries loaded; the newest histogram asked for wins.
let histogramAsked = 0;
async function loadHistogram(q) {
  const asked = ++histogramAsked;
  const hq = new URLSearchParams(q);
  hq.delete("after");
  let answer;
  try { answer = await api(`/console/api/histogram?${hq}`); } catch (err) { showError(err); return; }
  if (asked !== histogramAsked) return;
  drawHistogram(answer);
  const note = $("#histogram-note");
  note.hidden = !answer.capped;
  note.textContent = answer.capped ? `Histogram: ${answer.capped}.` : "";
}

async function loadOlder() {  // paging past the first page, as Logs Explorer's "load older"
  if (!nextPage || !pagedQuery) return;
  const q = new URLSearchParams(pagedQuery);
  q.set("pageToken", nextPage);
  let page;
  try { page = await api(`/console/api/entries?${q}`); } catch (err) { showError(err); return; }
  nextPage = page.nextPageToken || null;
  $("#entries").append(...page.entries.map(entryRow));
  afterEntries();
}

function afterEntries() {
  const list = $("#entries");
  $("#more").hidden = !nextPage;
  $("#status").textContent = `${list.children.length} entries` + (nextPage ? " (more older)" : "") +
    ($("#tail").checked ? " · tailing" : "");
}

// The server's counts per time bucket and severity (stacked bars, as Logs Explorer's histogram).
function drawHistogram(h) {
  const box = $("#histogram");
  if (!h.total) { box.replaceChildren(); return; }
  const W = 800, H = 60, n = h.buckets.length;
  const top = Math.max(...h.buckets.map((c) => c.bad + c.ok));
  const chart = svg("svg", { width: W, height: H + 14, class: "histogram-chart", role: "img",
                             "aria-label": `${h.total} entries over time`, "data-total": h.total });
  h.buckets.forEach((c, i) => {
    const x = i * (W / n), w = Math.max(1, W / n - 2);
    const hOk = (c.ok / top) * H, hBad = (c.bad / top) * H;
    if (c.ok) chart.append(svg("rect", { x, y: H - hOk - hBad, width: w, height: hOk, class: "bar ok", "data-count": c.ok }));
    if (c.bad) chart.append(svg("rect", { x, y: H - hBad, width: w, height: hBad, class: "bar bad", "data-count": c.bad }));
  });
  const from = svg("text", { x: 0, y: H + 12 }); from.textContent = h.start.replace(/\.\d+Z/, "Z");
  const to = svg("text", { x: W, y: H + 12, "text-anchor": "end" }); to.textContent = h.end.replace(/\.\d+Z/, "Z");
  chart.append(from, to);
  box.replaceChildren(chart);
}

function entryRow(entry) {
  const p = entry.protoPayload || {};
  const auth = p.authenticationInfo || {};
  const status = (p.status || {}).code || 0;
  const diagnosis = (p.metadata || {}).diagnosis;
  const refusedExchange = status && p.serviceName === "sts.googleapis.com";
  const audience = ((p.request || {}).audience || "").replace("//iam.googleapis.com/", "");
  const who = auth.principalEmail || auth.principalSubject ||
    (refusedExchange ? `no principal (refused): ${audience.split("/workloadIdentityPools/").pop()}` : "");
  const labels = (entry.resource || {}).labels || {};
  let resource = p.resourceName || "";
  if (resource.includes("/serviceAccounts/") && labels.email_id) resource = resource.replace(/\/serviceAccounts\/[^/]+$/, `/serviceAccounts/${labels.email_id}`);
  const summary = el("summary", {},
    el("span", { class: "ts", text: entry.timestamp }),
    el("span", { class: `sev ${entry.severity || "DEFAULT"}`, text: entry.severity || "DEFAULT" }),
    el("span", { class: "method", text: p.methodName || entry.logName }),
    el("span", { class: "who", text: who }),
    el("span", { class: "res", text: resource }),
    status ? el("span", { class: "denied", text: statusName(status) }) : null);
  const cause = diagnosis && diagnosis.cause ? el("div", { class: "diagnosis" },
    el("p", { class: "cause", text: `Cause: ${diagnosis.cause}` }), el("p", {}, "Fix: ", el("code", { text: diagnosis.fix || "" }))) : null;
  const explain = (status === 7 || refusedExchange) ? el("a", { href: `/console/explain?entry=${encodeURIComponent(entry.insertId)}`, class: "explain-link", text: refusedExchange ? "Explain this refusal" : "Explain this denial" }) : null;
  return el("details", { class: "entry" + (status ? " failed" : ""), "data-insert-id": entry.insertId,
                         open: focusEntry !== null && entry.insertId === focusEntry,
                         "data-timestamp": entry.timestamp, "data-severity": entry.severity || "DEFAULT" }, summary,
    cause, explain, jsonTree(entry));
}

// The entry's JSON with every value a link that adds `path="value"` to the filter (Logs Explorer's
// "show matching entries"); repeated fields are named without an index, as the filter language does.
function jsonTree(entry) {
  const pre = el("pre", { class: "json" });
  const walk = (value, path, indent, key) => {
    const pad = "  ".repeat(indent) + (key === null ? "" : JSON.stringify(key) + ": ");
    if (value && typeof value === "object") {
      const isArray = Array.isArray(value);
      const items = isArray ? value.map((v) => [null, v]) : Object.entries(value);
      pre.append(pad + (isArray ? "[" : "{") + "\n");
      items.forEach(([k, v], i) => {
        walk(v, isArray ? path : (path ? `${path}.${k}` : k), indent + 1, k);
        if (i < items.length - 1) pre.append(",");
        pre.append("\n");
      });
      pre.append("  ".repeat(indent) + (isArray ? "]" : "}"));
      return;
    }
    pre.append(pad);
    const literal = typeof value === "string" ? JSON.stringify(value) : String(value);
    pre.append(el("a", { class: "field", href: "#", "data-path": path, title: `filter on ${path}`, text: literal,
      onclick: (ev) => { ev.preventDefault(); addToFilter(path, value); } }));
  };
  walk(entry, "", 0, null);
  return pre;
}

function addToFilter(path, value) {
  const literal = typeof value === "string" ? `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"` : String(value);
  const clause = `${path}=${literal}`;
  const text = $("#filter").value.trim();
  $("#filter").value = text ? `${text} AND ${clause}` : clause;
  loadEntries(false);
}

function drawFlows(flows) {
  const box = $("#flows");
  box.replaceChildren();
  if (!flows.length) { box.append(el("p", { class: "hint", text: "No exchange in these entries." })); return; }
  for (const f of flows) {
    const steps = f.steps.map((s) => el("li", { class: `flow-step ${s.step}${s.status ? " failed" : ""}` },
      el("span", { class: "step", text: s.step + (s.status ? ` · ${statusName(s.status)}` : "") }),
      el("span", { class: "who", text: s.principal }),
      el("span", { class: "method", text: s.method }), el("span", { class: "res", text: s.resource }),
      s.cause ? el("span", { class: "cause", text: s.cause }) : null,
      s.status && (s.status === 7 || s.step === "exchange") ? el("a", { class: "explain-link", text: "Explain",
        href: `/console/explain?entry=${encodeURIComponent(s.insertId)}` }) : null));
    const subject = f.subject || `refused exchange for ${f.provider || "a provider"}`;
    box.append(el("div", { class: "flow" + (f.subject ? "" : " refused") }, el("div", { class: "subject" }, subject,
      f.serviceAccount ? el("span", { class: "via", text: ` → ${f.serviceAccount}` }) : null), el("ol", {}, ...steps)));
  }
}

// -- what changed ------------------------------------------------------------------------------

async function changesView() {
  await fillProjects().catch(showError);
  const params = new URLSearchParams(location.search);
  if (params.get("from")) $("#from").value = params.get("from");
  if (params.get("to")) $("#to").value = params.get("to");
  $("#compare").addEventListener("click", loadChanges);
  for (const id of ["#from", "#to"]) $(id).addEventListener("keydown", (e) => { if (e.key === "Enter") loadChanges(); });
  $("#project").addEventListener("change", loadChanges);
  await loadChanges();
}

const entryLink = (project, source) => el("a", {
  class: "entry-link", href: `/console/timeline?${new URLSearchParams({ project, entry: source.insertId })}`,
  title: `${source.method} at ${source.timestamp}`, text: source.timestamp });

function changeDetail(c) {
  if (c.kind === "binding") {
    return [el("span", { class: "role", text: c.role }), " → ", el("span", { class: "member", text: c.member }),
      c.condition ? el("span", { class: "condition",
        text: ` if ${c.condition.title ? `«${c.condition.title}»: ` : ""}${c.condition.expression || ""}` }) : null];
  }
  if (c.kind === "provider" && c.action === "edited") {
    const value = typeof c.value === "string" ? c.value : JSON.stringify(c.value);
    return [el("span", { class: "field", text: `${c.field} = ` }), el("code", { text: value || "(cleared)" })];
  }
  if (c.kind === "provider" && c.attributeCondition) return [el("code", { text: `attributeCondition = ${c.attributeCondition}` })];
  if (c.kind === "key") return [el("span", { text: `of ${c.serviceAccount}` })];
  return [];
}

async function loadChanges() {
  showError(null);
  const project = $("#project").value;
  const q = new URLSearchParams({ project, from: $("#from").value.trim(), to: $("#to").value.trim() });
  let answer;
  try {
    answer = await api(`/console/api/changes?${q}`);
  } catch (err) {
    $("#changes tbody").replaceChildren(); $("#points").replaceChildren(); $("#status").textContent = "";
    showError(err);
    return;
  }
  const rows = answer.changes.map((c) => el("tr", { class: `change ${c.kind} ${c.action}`, "data-kind": c.kind,
                                                  "data-action": c.action, "data-resource": c.resource },
    el("td", { class: "action", text: `${c.kind === "serviceAccount" ? "service account" : c.kind} ${c.action}` }),
    el("td", { class: "key", text: c.resource }), el("td", { class: "detail" }, ...changeDetail(c)),
    el("td", { class: "source" }, entryLink(project, c.entry), el("span", { class: "by", text: ` ${c.entry.by}` }))));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 4, class: "hint", text: "No change between these points." })));
  $("#changes tbody").replaceChildren(...rows);
  const note = $("#truncated");
  note.hidden = !answer.truncated;
  note.textContent = answer.truncated || "";
  $("#status").textContent = `${answer.changes.length} changes from ${answer.read} Admin Activity entries` +
    ` · after ${answer.from || "the start"} up to ${answer.to || "now"}`;
  const chosen = new Set([$("#from").value.trim(), $("#to").value.trim()]);
  $("#points").replaceChildren(...answer.points.map((p) => el("li", {
    class: "point" + (chosen.has(p.insertId) ? " chosen" : ""), "data-insert-id": p.insertId },
    el("span", { class: "ts", text: p.timestamp }), el("span", { class: "method", text: p.method }),
    el("span", { class: "res", text: p.resource }),
    el("button", { type: "button", class: "pick-from", text: "From here",
                   onclick: () => { $("#from").value = p.insertId; loadChanges(); } }),
    el("button", { type: "button", class: "pick-to", text: "To here",
                   onclick: () => { $("#to").value = p.insertId; loadChanges(); } }))));
}

// -- explain ----------------------------------------------------------------------------------

function explainView() {
  const form = $("#explain-form");
  const sync = () => {
    const who = form.querySelector('input[name="who"]:checked').value;
    form.querySelectorAll("[data-who]").forEach((x) => { x.hidden = !x.dataset.who.split(" ").includes(who); });
  };
  form.querySelectorAll('input[name="who"]').forEach((r) => r.addEventListener("change", sync));
  const params = new URLSearchParams(location.search);
  for (const k of ["principal", "serviceAccount", "permission", "resource", "provider", "pod", "cluster", "entry"]) {
    if (params.get(k)) form.querySelector(`#${k}`).value = params.get(k);
  }
  if (params.get("entry")) form.querySelector('input[value="entry"]').checked = true;
  sync();
  form.addEventListener("submit", (ev) => { ev.preventDefault(); runExplain(form); });
  if (params.get("entry")) runExplain(form);
}

async function runExplain(form) {
  showError(null);
  const who = form.querySelector('input[name="who"]:checked').value;
  const body = {};
  const fields = { principal: ["principal", "serviceAccount", "permission", "resource"],
                   token: ["token", "provider", "serviceAccount", "permission", "resource"],
                   entry: ["entry"], pod: ["pod", "cluster", "permission", "resource"] }[who];
  for (const f of fields) { const v = form.querySelector(`#${f}`).value.trim(); if (v) body[f] = v; }
  $("#chain").replaceChildren(); $("#failure").hidden = true; $("#verdict").hidden = true;
  $("#policies").replaceChildren();
  let ex;
  try {
    ex = await api("/console/api/explain", { method: "POST", body: JSON.stringify(body) });
  } catch (err) { showError(err); return; }
  const verdict = $("#verdict");
  verdict.hidden = false;
  verdict.className = "verdict " + (ex.granted ? "granted" : "denied");
  verdict.textContent = `${ex.granted ? "GRANTED" : "DENIED"}: ${ex.permission} on ${ex.resource} for ${ex.subject}` +
    (ex.entry ? ` (${ex.entry})` : "");
  const first = ex.firstFailure ? ex.firstFailure.step : null;
  let marked = false;
  for (const s of ex.steps) {
    const isFirst = !marked && s.status === "FAIL" && s.step === first;
    if (isFirst) marked = true;
    $("#chain").append(el("li", { class: `step ${s.status.toLowerCase()}${isFirst ? " first-failure" : ""}`, "data-step": s.step },
      el("span", { class: "name", text: s.step }), el("span", { class: "status", text: s.status }),
      el("span", { class: "evidence", text: s.evidence || "" })));
  }
  if (ex.firstFailure) {
    const box = $("#failure");
    box.hidden = false;
    box.replaceChildren(el("h2", { text: `First failing step: ${ex.firstFailure.step}` }),
      el("p", { class: "cause", text: ex.firstFailure.cause }),
      el("p", {}, "Fix: "), el("pre", { class: "fix", text: ex.firstFailure.fix }));
  }
  if (ex.policies) drawPolicies(ex);
}

// Policy Troubleshooter's view: each level's allow policy, each binding with its two questions.
function drawPolicies(ex) {
  const yesNo = (v) => el("td", { class: v ? "yes" : "no", text: v ? "yes" : "no" });
  const box = $("#policies");
  box.append(el("h2", { text: `Allow policies checked for ${ex.permission}` }));
  for (const level of ex.policies) {
    const section = el("section", { class: "level", "data-resource": level.resource },
      el("h3", { text: level.resource }));
    if (level.hidden) section.append(el("p", { class: "hint level-hidden", text: `Bindings not shown: ${level.hidden}.` }));
    else if (!level.bindings.length) section.append(el("p", { class: "hint", text: "No bindings." }));
    else {
      const rows = level.bindings.map((b) => el("tr", { class: b.grants ? "grants" : "" },
        el("td", { class: "role", text: b.role }),
        el("td", { class: "members", text: b.members.join(", ") + (b.memberCount > b.members.length ? ` (+${b.memberCount - b.members.length})` : "") }),
        yesNo(b.containsPermission), yesNo(b.memberMatches),
        el("td", { class: "cond", text: b.condition ? `${b.condition}${"conditionHolds" in b ? (b.conditionHolds ? " → true" : " → false") : ""}` : "" })));
      section.append(el("table", { class: "bindings" },
        el("thead", {}, el("tr", {}, ...["Role", "Members", "Contains the permission", "Member matches", "Condition"].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...rows)));
    }
    box.append(section);
  }
}

// What the console remembers in this origin's localStorage (the last project) belongs to the
// session: gone at sign-out, and on the sign-in page (an expired or revoked session lands there).
function forgetSession() { localStorage.clear(); }

document.addEventListener("DOMContentLoaded", () => {
  const view = document.body.dataset.view;
  const signout = $("#signout");
  if (signout) signout.form.addEventListener("submit", forgetSession);
  if (view === "signin") forgetSession();
  else if (view === "graph") graphView();
  else if (view === "timeline") timelineView();
  else if (view === "iam") iamView();
  else if (view === "explain") explainView();
  else if (view === "changes") changesView();
});
