"""The console's HTML: small server-rendered shells (no inline script or style, so the
Content-Security-Policy can forbid both); the views fill themselves from the console's JSON
endpoints with static/console.js."""

from __future__ import annotations

from html import escape

VIEWS = (("graph", "Identity graph"), ("iam", "IAM"), ("timeline", "Audit timeline"), ("changes", "What changed"),
         ("explain", "Explain"))


def _head(title: str, csrf: str, view: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="csrf-token" content="{escape(csrf)}">'
            f"<title>{escape(title)} · Keyless console</title>"
            f'<link rel="icon" href="data:,"><link rel="stylesheet" href="/console/static/console.css">'
            f'<script src="/console/static/console.js" defer></script></head><body data-view="{view}">')


def page(view: str, member: str, csrf: str) -> str:
    """A signed-in view: the header (views, who is signed in, sign out) and the view's controls."""
    title = dict(VIEWS)[view]
    tabs = "".join(f'<a href="/console/{v}"{" class=current aria-current=page" if v == view else ""}>{escape(t)}</a>'
                   for v, t in VIEWS)
    header = (f'<header><span class="brand">Keyless</span><nav>{tabs}</nav>'
              f'<span class="who" id="who" title="the principal every view acts as">{escape(member)}</span>'
              f'<form method="post" action="/console/signout"><input type="hidden" name="csrf" '
              f'value="{escape(csrf)}"><button type="submit" id="signout">Sign out</button></form></header>')
    return _head(title, csrf, view) + header + f"<main>{_BODIES[view]}</main></body></html>"


_PROJECT = '<label>Project <select id="project"></select></label>'
_ERROR = '<div id="error" class="error" role="alert" hidden></div>'

_BODIES = {
    "graph": f"""<div class="controls">{_PROJECT}
<label>Kind <select id="kind"><option value="">all</option><option>pool</option><option>provider</option>
<option>member</option><option>serviceAccount</option><option>grant</option><option>resource</option>
<option>cluster</option><option>namespace</option><option>ksa</option></select></label>
<label>Find <input id="q" type="search" placeholder="name, member, role…"></label>
<button id="apply" type="button">Show</button>
<label title="Cloud Storage's bindings of projectOwner:, projectEditor:, projectViewer: on every bucket"><input id="legacy"
type="checkbox"> Automatic bucket bindings</label><span id="status" class="status"></span></div>
{_ERROR}<div id="hidden" class="hidden-note" hidden></div><div id="folded" class="hint" hidden></div>
<p class="hint">Click a node or an edge for its details. Outlined red, amber, blue: a doctor finding (error,
warning, info); dashed amber: a conditional grant; labels name the role an edge grants.</p>
<div class="graph-wrap"><div id="canvas" class="canvas"></div><aside id="details" class="details" hidden></aside></div>""",
    "iam": f"""<div class="controls">{_PROJECT}
<span class="view-by" role="group" aria-label="view by"><button type="button" class="by current" data-by="principal">View by
principals</button><button type="button" class="by" data-by="role">View by roles</button></span>
<label>Filter <input id="q" type="search" placeholder="member or role"></label><span id="status" class="status"></span></div>
{_ERROR}<div id="hidden" class="hidden-note" hidden></div>
<table id="iam-table" class="iam-table"><thead></thead><tbody></tbody></table>""",
    "timeline": f"""<div class="controls">{_PROJECT}
<label class="grow">Filter <input id="filter" type="text" spellcheck="false"
placeholder='protoPayload.serviceName="sts.googleapis.com" AND severity>=WARNING'></label>
<button id="apply" type="button">Apply</button>
<label>Time <select id="range"><option value="">all</option><option value="3600">last hour</option>
<option value="86400">last day</option><option value="604800">last 7 days</option>
<option value="2592000">last 30 days</option></select></label>
<span class="sev-filters" role="group" aria-label="severity"><button type="button" class="sev-filter current"
data-severity="">All</button><button type="button" class="sev-filter" data-severity="INFO">Info+</button><button
type="button" class="sev-filter" data-severity="NOTICE">Notice+</button><button type="button" class="sev-filter"
data-severity="WARNING">Warning+</button><button type="button" class="sev-filter" data-severity="ERROR">Error+</button></span>
<label><input id="tail" type="checkbox" checked> Live tail</label><span id="status" class="status"></span></div>
{_ERROR}<div id="query-hint" class="query-hint"></div><div id="histogram" class="histogram"></div><p id="histogram-note" class="hidden-note" hidden></p><h2>Flows</h2><p class="hint">A token exchange, the impersonation it leads to and the service
account's calls, grouped by the federated subject.</p><div id="flows"></div><h2>Entries</h2>
<p class="hint">Click a value in an expanded entry to add it to the filter.</p>
<div id="entries" class="entries"></div><button id="more" type="button" hidden>Load older entries</button>""",
    "changes": f"""<div class="controls">{_PROJECT}
<label>From <input id="from" size="34" spellcheck="false" placeholder="timestamp or entry (empty: the start)"></label>
<label>To <input id="to" size="34" spellcheck="false" placeholder="timestamp or entry (empty: now)"></label>
<button id="compare" type="button">Compare</button><span id="status" class="status"></span></div>
{_ERROR}<div id="truncated" class="hidden-note" hidden></div>
<p class="hint">How the identity graph changed after the first point up to the second, from the Admin Activity
log: bindings (with their conditions), providers, service accounts and their keys. Each change links to the
entry that made it. Choose the points as timestamps, or with the entries below.</p>
<table id="changes" class="iam-table changes"><thead><tr><th>Change</th><th>What</th><th>Detail</th>
<th>Made by</th></tr></thead><tbody></tbody></table>
<h2>Admin Activity entries</h2><ol id="points" class="points"></ol>""",
    "explain": f"""<form id="explain-form" class="explain-form">
<fieldset><legend>Who</legend>
<label><input type="radio" name="who" value="principal" checked> Principal</label>
<label><input type="radio" name="who" value="token"> External token</label>
<label><input type="radio" name="who" value="entry"> Denied audit entry</label>
<label><input type="radio" name="who" value="pod"> GKE pod</label>
<div data-who="principal"><label>Principal <input id="principal" name="principal" size="70"
placeholder="serviceAccount:…, user:…, principal://…/subject/…, principalSet://…/attribute.repository/ORG/REPO"></label></div>
<div data-who="token" hidden><label>Provider <input id="provider" name="provider" size="70"
placeholder="projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER"></label>
<label>Token <textarea id="token" name="token" rows="3" cols="70"></textarea></label></div>
<div data-who="entry" hidden><label>Audit entry insertId <input id="entry" name="entry" size="40"></label></div>
<div data-who="pod" hidden><label>Pod <input id="pod" name="pod" placeholder="NAMESPACE/NAME"></label>
<label>Cluster <input id="cluster" name="cluster"></label></div>
<label data-who="principal token">Impersonating <input id="serviceAccount" name="serviceAccount" size="50"
placeholder="deploy-sa@PROJECT.iam.gserviceaccount.com (optional)"></label></fieldset>
<fieldset data-who="principal token pod"><legend>What</legend>
<label>Permission <input id="permission" name="permission" size="40" placeholder="storage.objects.get"></label>
<label>Resource <input id="resource" name="resource" size="60"
placeholder="projects/_/buckets/BUCKET, projects/P/secrets/S, projects/P"></label></fieldset>
<button type="submit" id="run">Explain</button></form>
{_ERROR}<div id="verdict" class="verdict" hidden></div><ol id="chain" class="chain"></ol>
<div id="failure" class="failure" hidden></div>
<div id="policies" class="policies"></div>""",
}


def signin(csrf: str, code: str = "", error: str = "", member: str = "") -> str:
    """The sign-in page: continue with a one-time link's code (naming the principal it signs in as),
    or paste any Keyless access token."""
    err = f'<div class="error" role="alert" id="error">{escape(error)}</div>' if error else ""
    if code:
        form = (f'<p class="signs-in-as">You will be signed in as <strong id="member">{escape(member)}</strong>, '
                'with the scopes of the token that asked for this link, until that token expires (an hour at most).</p>'
                '<p>This one-time link works once, for five minutes. Continue only if you asked for it.</p>'
                f'<form method="post" action="/console/signin"><input type="hidden" name="csrf" value="{escape(csrf)}">'
                f'<input type="hidden" name="code" value="{escape(code)}">'
                f'<button type="submit" id="continue">Continue</button></form>')
    else:
        form = ('<p>Run <code>keyless console</code> for a one-time sign-in link as the owner, or paste any '
                'Keyless access token (for instance <code>gcloud auth print-access-token</code> against Keyless, '
                'or a federated token): the console then acts as that principal, with its permissions.</p>'
                f'<form method="post" action="/console/signin"><input type="hidden" name="csrf" value="{escape(csrf)}">'
                '<label>Access token <textarea name="token" id="token" rows="4" cols="80" '
                'autocomplete="off" spellcheck="false"></textarea></label>'
                '<button type="submit" id="signin">Sign in</button></form>')
    return (_head("Sign in", csrf, "signin") + '<header><span class="brand">Keyless</span></header>'
            f'<main class="signin"><h1>Sign in to the Keyless console</h1>{err}{form}</main></body></html>')
