"""The console's identity graph at scale: server build time and browser render time.

Starts `keyless serve` on a fresh SQLite store, makes seed 001's setup (`keyless quickstart`), then
grows it through the public APIs to about `--nodes` graph nodes: pools with providers, principal
sets bound to service accounts (workloadIdentityUser), buckets whose policies grant the accounts
roles (some conditionally). Then, as the owner signed in through a one-time link:
  - server: GET /console/api/graph (the whole project; and one text filter), the build time the
    server reports and the HTTP round trip, median of `--repeat`;
  - browser: Debian's chromium (Playwright, headless) opens the graph view; the time from the
    request to the SVG drawn, as the page reports it (body[data-rendered]), median of `--repeat`;
  - layout (issue #21): nodes, edges and edge crossings of the whole project drawn as before
    (every grant its own box, the automatic bucket bindings shown), with grants grouped per role
    and resource kind and the automatic bindings folded, and with hubs collapsed too (a node with
    more than HUB_EDGES neighbours of one kind on one side has them in one box; the setup adds
    `--hub-members` users granted one role on one bucket, as a team's readers are);
  - the doctor's answer to a selected node (GET /console/api/access): a service account (what it
    reaches) and a bucket (who reaches it), median of `--repeat`.

    .venv/bin/python bench/console_graph.py [--nodes 2000] [--hub-members 300] [--repeat 5] [--screenshots DIR]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from keyless.console import sessions  # noqa: E402
from tests.conftest import free_port  # noqa: E402

PROJECT = "my-project"
NUMBER = "123456789"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def keyless(data: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "keyless.cli.main", *args, "--data-dir", str(data)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SystemExit(f"keyless {args[0]} failed: {out.stderr}")
    return out.stdout


def grow(api: httpx.Client, nodes: int) -> None:
    """About `nodes` nodes: per account its member (and a pool every 20 accounts, with 2 providers),
    its bucket, and five grant nodes (its role there, and the bucket's four default legacy bindings
    to projectOwner:/projectEditor:/projectViewer:): ~8.2 nodes per account."""
    accounts = max(1, nodes * 10 // 82)
    pools = f"/iam/v1/projects/{PROJECT}/locations/global/workloadIdentityPools"
    for i in range(accounts):
        pool = f"pool-{i // 20}"
        if i % 20 == 0:
            api.post(pools, params={"workloadIdentityPoolId": pool}, json={}).raise_for_status()
            for p in range(2):
                api.post(f"{pools}/{pool}/providers", params={"workloadIdentityPoolProviderId": f"prov-{p}"},
                         json={"attributeMapping": {"google.subject": "assertion.sub",
                                                    "attribute.repository": "assertion.repository"},
                               "attributeCondition": "assertion.repository_owner == 'org'",
                               "oidc": {"issuerUri": f"https://issuer-{p}.example.com"}}).raise_for_status()
        email = f"sa-{i:04d}@{PROJECT}.iam.gserviceaccount.com"
        api.post(f"/iam/v1/projects/{PROJECT}/serviceAccounts", json={"accountId": f"sa-{i:04d}"}).raise_for_status()
        member = (f"principalSet://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/"
                  f"{pool}/attribute.repository/org/repo-{i}")
        api.post(f"/iam/v1/projects/{PROJECT}/serviceAccounts/{email}:setIamPolicy", json={"policy": {
            "bindings": [{"role": "roles/iam.workloadIdentityUser", "members": [member]}]}}).raise_for_status()
        bucket = f"bench-bucket-{i:04d}"
        api.post("/storage/v1/b", params={"project": PROJECT}, json={"name": bucket}).raise_for_status()
        binding: dict[str, object] = {"role": "roles/storage.objectViewer" if i % 2 else "roles/storage.objectAdmin",
                                      "members": [f"serviceAccount:{email}"]}
        if i % 10 == 0:
            binding["condition"] = {"title": "prefix", "expression": 'resource.name.startsWith("projects/_/buckets/'
                                                                     f'{bucket}/objects/releases/")'}
        policy = api.get(f"/storage/v1/b/{bucket}/iam", params={"optionsRequestedPolicyVersion": "3"}).json()
        policy["bindings"].append(binding)  # beside the legacy projectOwner:/projectViewer: ones
        policy["version"] = 3
        api.put(f"/storage/v1/b/{bucket}/iam", json=policy).raise_for_status()


def add_hub(api: httpx.Client, members: int) -> None:
    """`members` users granted roles/storage.objectViewer on bench-bucket-0000 (a team's readers)."""
    policy = api.get("/storage/v1/b/bench-bucket-0000/iam", params={"optionsRequestedPolicyVersion": "3"}).json()
    policy["bindings"].append({"role": "roles/storage.objectViewer",
                               "members": [f"user:reader-{i:04d}@example.com" for i in range(members)]})
    policy["version"] = 3
    api.put("/storage/v1/b/bench-bucket-0000/iam", json=policy).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--hub-members", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--screenshots", help="save PNGs of the drawn graphs in this directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, port = Path(tmp) / "data", free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-m", "keyless.cli.main", "serve", "--port", str(port),
                                   "--data-dir", str(data), "--allow-insecure-issuers"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(base + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.1)
            keyless(data, "quickstart", "--output-file", str(Path(tmp) / "credentials.json"))
            owner = (data / "owner.token").read_text().strip()
            started = time.perf_counter()
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {owner}"}, timeout=60) as api:
                grow(api, args.nodes)
                add_hub(api, args.hub_members)
            print(f"setup: {time.perf_counter() - started:.1f} s through the APIs")
            measure(base, data, args.repeat, args.screenshots)
        finally:
            server.terminate()
            server.wait(20)


def sign_in(base: str, data: Path) -> httpx.Client:
    link = re.search(r"(http://\S+)", keyless(data, "console", "--no-browser"))
    assert link is not None
    client = httpx.Client(base_url=base, timeout=120)
    client.get(link.group(1))
    csrf = sessions.cookie_name(sessions.CSRF_COOKIE, base, secure=False)  # named for this server
    client.post("/console/signin", data={"csrf": client.cookies[csrf],
                                         "code": link.group(1).split("code=")[1]})
    return client


def crossings(g: dict[str, Any]) -> int:
    """Edge crossings of a drawn graph, gap by gap between adjacent columns: two edges cross in a gap
    when their order at its left side is the reverse of their order at its right (an edge that skips
    columns counted on the straight line between its ends: an estimate, the same for both layouts)."""
    column = g["columnWidth"]
    at = {n["id"]: (round((n["x"] - 10) / column), n["y"]) for n in g["nodes"]}
    gaps: dict[int, list[tuple[float, float]]] = {}
    for e in g["edges"]:
        (ca, ya), (cb, yb) = at[e["source"]], at[e["target"]]
        if cb <= ca:
            continue
        for c in range(ca, cb):
            left = ya + (yb - ya) * (c - ca) / (cb - ca)
            right = ya + (yb - ya) * (c + 1 - ca) / (cb - ca)
            gaps.setdefault(c, []).append((left, right))
    total = 0
    for pairs in gaps.values():
        pairs.sort()
        total += _inversions([r for _, r in pairs])
    return total


def _inversions(values: list[float]) -> int:
    """Pairs i < j with values[i] > values[j] (merge sort)."""
    if len(values) < 2:
        return 0
    mid = len(values) // 2
    left, right = values[:mid], values[mid:]
    count = _inversions(left) + _inversions(right)
    left.sort()
    right.sort()
    j = 0
    for x in left:  # for each left value, the right values smaller than it
        while j < len(right) and right[j] < x:
            j += 1
        count += j
    return count


def unfolded(client: httpx.Client, params: list[tuple[str, str]]) -> dict[str, Any]:
    """The graph with every hub's box expanded (a box expanded may leave another hub to expand)."""
    while True:
        g: dict[str, Any] = client.get("/console/api/graph", params=[("project", PROJECT), *params]).json()
        hubs = [n["details"]["group"] for n in g["nodes"] if n["details"].get("group", "").startswith("hub:")]
        if not hubs:
            return g
        params = [*params, *(("expand", k) for k in hubs)]


def measure(base: str, data: Path, repeat: int, screenshots: str | None = None) -> None:
    client = sign_in(base, data)
    folded = client.get("/console/api/graph", params={"project": PROJECT}).json()
    with_legacy = client.get("/console/api/graph", params={"project": PROJECT, "legacy": "1"}).json()
    groups = sorted({n["details"]["group"] for n in with_legacy["nodes"] if n["details"].get("group")})
    raw = unfolded(client, [("legacy", "1"), *(("expand", k) for k in groups)])
    print(f"layout before (every grant, automatic bucket bindings shown): {len(raw['nodes'])} nodes, "
          f"{len(raw['edges'])} edges, {crossings(raw)} edge crossings, {raw['height']} px tall")
    grouped = unfolded(client, [])
    print(f"layout grouped (grants grouped per role and kind, automatic bindings folded): {len(grouped['nodes'])} "
          f"nodes, {len(grouped['edges'])} edges, {crossings(grouped)} edge crossings, {grouped['height']} px tall")
    print(f"layout after (grouped, and hubs collapsed): {len(folded['nodes'])} nodes, "
          f"{len(folded['edges'])} edges, {crossings(folded)} edge crossings, {folded['height']} px tall; "
          f"folded: {'; '.join(folded['folded'])}")
    for label, node in (("a service account (what it reaches)",
                         f"serviceAccount:sa-0001@{PROJECT}.iam.gserviceaccount.com"),
                        ("a bucket (who reaches it)", "resource:projects/_/buckets/bench-bucket-0000")):
        seconds, rounds, found = [], [], 0
        for _ in range(repeat):
            t = time.perf_counter()
            r = client.get("/console/api/access", params={"project": PROJECT, "node": node})
            rounds.append(time.perf_counter() - t)
            r.raise_for_status()
            seconds.append(r.json()["seconds"])
            found = r.json()["total"]
        print(f"doctor's answer to a selection, {label}: {found} accesses; analysis "
              f"{statistics.median(seconds) * 1000:.0f} ms, round trip {statistics.median(rounds) * 1000:.0f} ms "
              f"(median of {repeat})")
    for label, params in (("whole project", {"project": PROJECT}),
                          ("filter q=repo-1 (matches + every path through them)", {"project": PROJECT, "q": "repo-1"})):
        builds, rounds, size = [], [], (0, 0, 0)
        for _ in range(repeat):
            t = time.perf_counter()
            r = client.get("/console/api/graph", params=params)
            rounds.append(time.perf_counter() - t)
            r.raise_for_status()
            g = r.json()
            builds.append(g["buildSeconds"])
            size = (len(g["nodes"]), len(g["edges"]), len(r.content))
        print(f"server, {label}: {size[0]} nodes, {size[1]} edges, {size[2] / 1e6:.2f} MB JSON; "
              f"build {statistics.median(builds) * 1000:.0f} ms, round trip {statistics.median(rounds) * 1000:.0f} ms "
              f"(median of {repeat})")
    if not Path(CHROMIUM).exists():
        print(f"browser: skipped ({CHROMIUM} not installed)")
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 950})
        context.add_cookies([{"name": c.name, "value": c.value or "", "url": base + "/console/"}
                             for c in client.cookies.jar])
        page = context.new_page()
        for label, query in (("whole project", ""), ("filter q=repo-1", "&q=repo-1")):
            times = []
            for _ in range(repeat):
                page.goto(f"{base}/console/graph?project={PROJECT}{query}")
                page.wait_for_selector("body[data-rendered]", timeout=120_000)
                times.append(int(page.get_attribute("body", "data-rendered") or 0))
            shown = page.locator("svg.graph .node").count()
            if screenshots:
                Path(screenshots).mkdir(parents=True, exist_ok=True)
                name = "graph-2000" if not query else "graph-2000-filtered"
                page.screenshot(path=str(Path(screenshots) / f"{name}.png"))
            print(f"browser, {label}: {shown} nodes drawn; request to SVG painted {statistics.median(times)} ms "
                  f"(median of {repeat})")
        browser.close()


if __name__ == "__main__":
    main()
