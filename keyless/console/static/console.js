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

const NODE_W = 180, NODE_H = 26, COLUMN = 250;

async function graphView() {
  await fillProjects().catch(showError);
  const params = new URLSearchParams(location.search);
  if (params.get("q")) $("#q").value = params.get("q");
  if (params.get("kind")) $("#kind").value = params.get("kind");
  $("#apply").addEventListener("click", loadGraph);
  $("#q").addEventListener("keydown", (e) => { if (e.key === "Enter") loadGraph(); });
  await loadGraph();
}

async function loadGraph() {
  showError(null);
  const canvas = $("#canvas");
  const q = new URLSearchParams({ project: $("#project").value, q: $("#q").value });
  if ($("#kind").value) q.append("kind", $("#kind").value);
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
  requestAnimationFrame(() => {
    const ms = Math.round(performance.now() - started);
    $("#status").textContent = `${g.nodes.length} of ${g.total} nodes, ${g.edges.length} edges · ` +
      `built in ${Math.round(g.buildSeconds * 1000)} ms, drawn in ${ms} ms`;
    document.body.dataset.rendered = String(ms);
  });
}

function drawGraph(canvas, g) {
  const root = svg("svg", { width: g.width, height: Math.max(g.height, 200), class: "graph", role: "img",
                             "aria-label": `identity graph of ${g.project}` });
  const byId = new Map(g.nodes.map((n) => [n.id, n]));
  const heads = svg("g", { class: "columns" });
  const names = ["pools, clusters", "providers, namespaces", "members, KSAs", "service accounts", "grants", "resources"];
  names.forEach((name, i) => { const t = svg("text", { x: i * COLUMN + 10, y: 12, class: "column" }); t.textContent = name; heads.append(t); });
  root.append(heads);
  const edges = svg("g", { class: "edges" });
  const labels = svg("g", { class: "edge-labels" });
  for (const e of g.edges) {
    const a = byId.get(e.source), b = byId.get(e.target);
    if (!a || !b) continue;
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2 + 16, x2 = b.x, y2 = b.y + NODE_H / 2 + 16;
    const mid = (x1 + x2) / 2;
    const cls = ["edge", e.condition ? "conditional" : "", e.findings ? "finding" : ""].join(" ").trim();
    const path = svg("path", { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, class: cls,
                               "data-source": e.source, "data-target": e.target });
    const title = svg("title", {});
    title.textContent = `${e.label || "edge"}${e.condition ? " if " + e.condition : ""}`;
    path.append(title);
    path.addEventListener("click", () => showEdge(e, a, b));
    edges.append(path);
    if (e.label.startsWith("roles/") || e.label === "annotation") {
      const t = svg("text", { x: x2 - 4, y: y2 - 5, class: "edge-label" + (e.findings ? " finding" : "") });
      t.textContent = e.label.replace(/^roles\/[a-z]+\./, "").replace(/^roles\//, "");
      t.addEventListener("click", () => showEdge(e, a, b));
      labels.append(t);
    }
  }
  root.append(edges);
  const nodes = svg("g", { class: "nodes" });
  for (const n of g.nodes) {
    const group = svg("g", { class: `node kind-${n.kind}${n.findings ? " finding" : ""}`, transform: `translate(${n.x},${n.y + 16})`,
                             "data-id": n.id, tabindex: "0" });
    group.append(svg("rect", { width: NODE_W, height: NODE_H, rx: 5 }));
    const t = svg("text", { x: 8, y: 17 });
    // cut in the middle: a name's end (repository, bucket, account) tells nodes apart
    t.textContent = (n.label.length > 27 ? n.label.slice(0, 9) + "…" + n.label.slice(-17) : n.label);
    const title = svg("title", {});
    title.textContent = `${n.kind}: ${n.label}`;
    group.append(t, title);
    group.addEventListener("click", () => showNode(n));
    group.addEventListener("keydown", (ev) => { if (ev.key === "Enter") showNode(n); });
    nodes.append(group);
  }
  root.append(nodes, labels);
  canvas.replaceChildren(root);
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
                                     onclick: () => { box.hidden = true; } }), ...children);
}

function showNode(n) {
  document.querySelectorAll(".node.selected").forEach((x) => x.classList.remove("selected"));
  const g = document.querySelector(`.node[data-id="${CSS.escape(n.id)}"]`);
  if (g) g.classList.add("selected");
  openDetails(el("h2", { text: n.label }), el("p", { class: "kind", text: n.kind }),
    el("p", {}, el("code", { text: n.id })), detailsList(n.details), findingsList(n.findings) || "");
}

function showEdge(e, a, b) {
  openDetails(el("h2", { text: e.label || "edge" }),
    el("p", { text: `${a.label} → ${b.label}` }),
    e.condition ? el("p", { class: "condition" }, "Condition: ", el("code", { text: e.condition })) : "",
    findingsList(e.findings) || "");
}

// -- audit timeline ---------------------------------------------------------------------------

let newest = null, tailTimer = null;

async function timelineView() {
  await fillProjects().catch(showError);
  const params = new URLSearchParams(location.search);
  if (params.get("filter")) $("#filter").value = params.get("filter");
  $("#apply").addEventListener("click", () => loadEntries(false));
  $("#filter").addEventListener("keydown", (e) => { if (e.key === "Enter") loadEntries(false); });
  $("#tail").addEventListener("change", scheduleTail);
  await loadEntries(false);
}

function scheduleTail() {
  clearTimeout(tailTimer);
  if ($("#tail").checked) tailTimer = setTimeout(() => loadEntries(true).finally(scheduleTail), 2000);
}

async function loadEntries(tail) {
  const q = new URLSearchParams({ project: $("#project").value, filter: $("#filter").value });
  if (tail && newest) q.set("after", newest);
  let page;
  try {
    page = await api(`/console/api/entries?${q}`);
  } catch (err) {
    if (!tail) { $("#entries").replaceChildren(); $("#flows").replaceChildren(); }
    showError(err);
    return;
  }
  showError(null);
  const list = $("#entries");
  if (!tail) { list.replaceChildren(); $("#flows").replaceChildren(); newest = null; }
  const fresh = page.entries.map(entryRow);
  list.prepend(...fresh);
  if (page.entries.length) newest = page.entries[0].timestamp;
  if (page.flows) drawFlows(page.flows);
  if (!tail) $("#query-hint").replaceChildren(...(page.hint ? [el("pre", { class: "hint", text: page.hint })] : []));
  $("#status").textContent = `${list.children.length} entries` + ($("#tail").checked ? " · tailing" : "");
  if (!tail) scheduleTail();
}

function entryRow(entry) {
  const p = entry.protoPayload || {};
  const auth = p.authenticationInfo || {};
  const status = (p.status || {}).code || 0;
  const summary = el("summary", {},
    el("span", { class: "ts", text: entry.timestamp }),
    el("span", { class: `sev ${entry.severity || "DEFAULT"}`, text: entry.severity || "DEFAULT" }),
    el("span", { class: "method", text: p.methodName || entry.logName }),
    el("span", { class: "who", text: auth.principalEmail || auth.principalSubject || "" }),
    el("span", { class: "res", text: p.resourceName || "" }),
    status ? el("span", { class: "denied", text: `status ${status}` }) : null);
  const explain = status === 7 ? el("a", { href: `/console/explain?entry=${encodeURIComponent(entry.insertId)}`, class: "explain-link", text: "Explain this denial" }) : null;
  return el("details", { class: "entry" + (status ? " failed" : ""), "data-insert-id": entry.insertId }, summary,
    explain, el("pre", { text: JSON.stringify(entry, null, 2) }));
}

function drawFlows(flows) {
  const box = $("#flows");
  box.replaceChildren();
  if (!flows.length) { box.append(el("p", { class: "hint", text: "No exchange in these entries." })); return; }
  for (const f of flows) {
    const steps = f.steps.map((s) => el("li", { class: `flow-step ${s.step}${s.status ? " failed" : ""}` },
      el("span", { class: "step", text: s.step + (s.status ? ` · status ${s.status}` : "") }),
      el("span", { class: "who", text: s.principal }),
      el("span", { class: "method", text: s.method }), el("span", { class: "res", text: s.resource })));
    box.append(el("div", { class: "flow" }, el("div", { class: "subject" }, f.subject,
      f.serviceAccount ? el("span", { class: "via", text: ` → ${f.serviceAccount}` }) : null), el("ol", {}, ...steps)));
  }
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
  else if (view === "explain") explainView();
});
