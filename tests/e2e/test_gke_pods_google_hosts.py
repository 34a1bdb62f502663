"""Inside pods, Keyless answers as Google's own hosts (issue #4): `keyless pod run --tls-port`
maps storage.googleapis.com, secretmanager.googleapis.com, ... to the node's gateway, which
relays to `keyless serve --tls-port`, and gives the pod Keyless's CA. The seeds' snippets, curl
and the real gcloud run with no endpoint settings; IAM allows what is granted and nothing more;
other names fail at once and no packet leaves the pod for a host that is not Keyless's."""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import GCLOUD, KeylessServer, free_port, fresh_database_url
from tests.gke.pod_helpers import GSA, NUMBER, POOL, PROJECT, apply_ksa, leftovers, make_cluster, pod_run

PYTHON = sys.executable
# The seeds live in shared/, beside the repository (as CI clones it).
SEED = next(p for p in (Path(__file__).resolve().parents[3] / "shared" / "seeds" / "000_adc9fb4469cc505d.txt",
                         Path("/work/shared/seeds/000_adc9fb4469cc505d.txt")) if p.exists())
ANNOTATION = "iam.gke.io/gcp-service-account"


def seed_snippet(first_line: str) -> str:
    """A Python block of seed 000 as written, with its PROJECT_ID placeholder filled in."""
    blocks = re.findall(r"```python\n(.*?)```", SEED.read_text(), re.S)
    block = next(b for b in blocks if b.startswith(first_line))
    return block.replace("PROJECT_ID", PROJECT)


def ok(r: object) -> dict:
    assert r.status_code == 200, r.text  # type: ignore[attr-defined]
    return r.json()  # type: ignore[attr-defined, no-any-return]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessServer]:
    """Seed 002's setup (annotated KSA, workloadIdentityUser binding) and least-privilege grants
    to the GSA: my-app-bucket and my-bucket readable, api-key accessible; other-bucket and
    other-secret exist but are not granted."""
    tls_port = free_port()
    server = KeylessServer(tmp_path_factory.mktemp("pods-tls") / "data", fresh_database_url(),
                           "--tls-port", str(tls_port))
    server.tls_port = tls_port  # type: ignore[attr-defined]
    assert server.keyless("projects", "create", PROJECT, "--number", NUMBER).returncode == 0
    ok(server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": "my-app-gsa"}))
    cluster_id = make_cluster(server)
    ok(server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts/{GSA}:setIamPolicy", body={"policy": {
        "bindings": [{"role": "roles/iam.workloadIdentityUser",
                      "members": [f"serviceAccount:{POOL}[production/my-app-ksa]"]}]}}))
    apply_ksa(server, cluster_id, "production", "my-app-ksa", {ANNOTATION: GSA})
    for bucket, granted in (("my-app-bucket", True), ("my-bucket", True), ("other-bucket", False)):
        ok(server.call("POST", "/storage/v1/b", params={"project": PROJECT}, body={"name": bucket}))
        ok(server.call("POST", f"/upload/storage/v1/b/{bucket}/o", params={"uploadType": "media", "name": "data.txt"},
                       raw=f"hello from {bucket}".encode(), headers={"Content-Type": "text/plain"}))
        if granted:
            policy = ok(server.call("GET", f"/storage/v1/b/{bucket}/iam"))
            policy["bindings"].append({"role": "roles/storage.objectViewer", "members": [f"serviceAccount:{GSA}"]})
            ok(server.call("PUT", f"/storage/v1/b/{bucket}/iam", body=policy))
    sm = f"/secretmanager/v1/projects/{PROJECT}/secrets"
    for secret, value in (("api-key", "s3cr3t-value"), ("other-secret", "not-yours")):
        ok(server.call("POST", sm, params={"secretId": secret}, body={"replication": {"automatic": {}}}))
        ok(server.call("POST", f"{sm}/{secret}:addVersion",
                       body={"payload": {"data": __import__("base64").b64encode(value.encode()).decode()}}))
    ok(server.call("POST", f"{sm}/api-key:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/secretmanager.secretAccessor", "members": [f"serviceAccount:{GSA}"]}]}}))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, nothing its server's pods made is left on this machine (pod_helpers.leftovers)."""
    yield
    if "srv" not in request.fixturenames:
        return
    srv = request.getfixturevalue("srv")
    deadline = time.monotonic() + 10
    while leftovers(srv) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(srv) == []


def in_pod(srv: KeylessServer, command: list[str], *extra: str, ksa: str = "my-app-ksa",
           expect: int = 0) -> str:
    """COMMAND as a pod of my-cluster (production/KSA) that reaches Keyless as Google's hosts: the
    server's URL and TLS port come from its record (keyless.discovery), as a user types no flag twice."""
    result = pod_run(srv, "--cluster", "my-cluster", "--namespace", "production", "--service-account", ksa, *extra,
                     command=command)
    assert result.returncode == expect, result.stdout + result.stderr[-4000:]
    return result.stdout


def test_pod_has_google_hosts_and_the_ca_but_no_endpoint_settings(srv: KeylessServer) -> None:
    bundle = str(srv.data_dir.resolve() / "tls" / "bundle.pem")
    out = in_pod(srv, [PYTHON, "-c", (
        "import json, os, socket; print(json.dumps({'env': {k: v for k, v in os.environ.items() if k not in "
        "('PATH', 'HOME', 'HOSTNAME', 'LANG', 'TERM', 'TZ')}, 'hosts': {h: socket.gethostbyname(h) for h in "
        "('sts.googleapis.com', 'storage.googleapis.com', 'secretmanager.googleapis.com', 'oauth2.googleapis.com',"
        " 'iamcredentials.googleapis.com', 'metadata.google.internal', 'metadata.google.internal.')}}))")],
                 "--tls-port", str(srv.tls_port), "--server", srv.base_url)  # type: ignore[attr-defined]
    got = json.loads(out)
    # Only the CA bundle variables: no endpoint override, no universe, no credentials file.
    assert got["env"] == {name: bundle for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE",
                                                    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
                                                    "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE", "NODE_EXTRA_CA_CERTS")}
    gateways = {v for k, v in got["hosts"].items() if k.endswith(".googleapis.com")}
    assert len(gateways) == 1 and re.fullmatch(r"10\.\d+\.\d+\.1", gateways.pop())
    assert got["hosts"]["metadata.google.internal"] == "169.254.169.254"
    # fully qualified too, as GKE's DNS answers it (google-cloud-logging asks that name)
    assert got["hosts"]["metadata.google.internal."] == "169.254.169.254"


def test_curl_reaches_keyless_as_google_over_https_with_the_metadata_token(srv: KeylessServer) -> None:
    # The metadata server's token, then Google's tokeninfo and storage hosts by name over HTTPS.
    script = (
        'T=$(curl -s -H "Metadata-Flavor: Google" '
        'http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token '
        "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'); "
        'curl -s --cacert "$REQUESTS_CA_BUNDLE" "https://oauth2.googleapis.com/tokeninfo?access_token=$T"; echo; '
        'curl -s --cacert "$REQUESTS_CA_BUNDLE" -o /dev/null -w "%{http_code} %{ssl_verify_result}\\n" '
        '-H "Authorization: Bearer $T" https://storage.googleapis.com/storage/v1/b/my-app-bucket/o; '
        'curl -s --cacert "$REQUESTS_CA_BUNDLE" -o /dev/null -w "%{http_code}\\n" -H "Authorization: Bearer $T" '
        "https://storage.googleapis.com/storage/v1/b/other-bucket/o; "
        'curl -s -w "\\n" -H "Authorization: Bearer $T" '
        "http://storage.googleapis.com/storage/v1/b/my-app-bucket/o/data.txt?alt=media")
    out = in_pod(srv, ["sh", "-c", script]).splitlines()
    assert json.loads(out[0])["email"] == GSA
    assert out[1] == "200 0"  # the certificate verified against the pod's bundle
    assert out[2] == "403"
    assert out[3] == "hello from my-app-bucket"  # plain HTTP is relayed too (port 80)


def test_seed_snippets_run_unmodified_and_least_privilege_holds(srv: KeylessServer) -> None:
    storage_snippet = seed_snippet("from google.cloud import storage")
    secret_snippet = seed_snippet("from google.cloud import secretmanager")
    assert "storage.Client(project='my-project')" in storage_snippet
    # Byte for byte: SecretManagerServiceClient() with its default transport, gRPC, to
    # secretmanager.googleapis.com:443, trusting Keyless's CA through GRPC_DEFAULT_SSL_ROOTS_FILE_PATH.
    assert "secretmanager.SecretManagerServiceClient()" in secret_snippet
    denied = (
        "import sys\ntry:\n    exec(compile(open(sys.argv[1]).read(), sys.argv[1], 'exec'))\n"
        "except Exception as e:\n    print(type(e).__name__, getattr(e, 'code', None), ' '.join(str(e).split())[:400])\n"
        "else:\n    print('allowed')\n")
    files = {
        "storage.py": storage_snippet,
        "secret.py": secret_snippet + "print(api_key)\n",
        "storage_other.py": storage_snippet.replace("'my-bucket'", "'other-bucket'"),
        "secret_other.py": secret_snippet.replace("/api-key/", "/other-secret/") + "print(api_key)\n",
        "denied.py": denied,
    }
    # The files reach the pod through its environment (as a ConfigMap would): the host's /tmp is
    # hidden from pods, and the pod writes them in its own HOME.
    unpack = "import json, os; [open(n, 'w').write(t) for n, t in json.loads(os.environ['FILES']).items()]"
    script = " && ".join([
        'cd "$HOME"', f"{PYTHON} -c {shlex.quote(unpack)}",
        f"{PYTHON} storage.py", "cat data.txt", "echo",
        f"{PYTHON} secret.py",
        f"{PYTHON} denied.py storage_other.py",
        f"{PYTHON} denied.py secret_other.py",
    ])
    out = in_pod(srv, ["sh", "-c", script], "--env", f"FILES={json.dumps(files)}").splitlines()
    assert out[0] == "hello from my-bucket"
    assert out[1] == "s3cr3t-value"
    assert out[2].startswith("Forbidden 403 ") and "storage.objects.get" in out[2], out[2]
    # gRPC's PERMISSION_DENIED, which api_core raises as PermissionDenied (HTTP code 403), Google's words.
    assert out[3].startswith("PermissionDenied 403 403 Permission 'secretmanager.versions.access' denied for "
                             "resource 'projects/my-project/secrets/other-secret/versions/latest' (or it may not "
                             "exist). [reason: \"IAM_PERMISSION_DENIED\""), out[3]


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed: this test needs the Google Cloud CLI on PATH")
def test_seed_002_verify_block_with_gcloud_storage(srv: KeylessServer, tmp_path: Path) -> None:
    gcloud = shlex.quote(str(GCLOUD))
    md = "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default"
    script = "; ".join([
        f'curl -s -H "Metadata-Flavor: Google" "{md}/email"', "echo",
        f'curl -s -o /dev/null -w "%{{http_code}}\\n" -H "Metadata-Flavor: Google" "{md}/token"',
        f'{gcloud} auth list --filter=status:ACTIVE --format="value(account)"',
        f"{gcloud} storage ls gs://my-app-bucket", 'echo "rc=$?"',
        f"{gcloud} storage ls gs://other-bucket 2>&1", 'echo "rc=$?"',
    ])
    config = tmp_path / "gcloud-in-pod"  # a fresh gcloud as in google/cloud-sdk: no endpoint overrides
    script += f"; cat {config}/gce"  # in the pod's own /tmp: the host's is hidden from pods
    out = in_pod(srv, ["sh", "-c", script], "--env", f"CLOUDSDK_CONFIG={config}")
    lines = out.splitlines()
    assert lines[:5] == [GSA, "200", GSA, "gs://my-app-bucket/data.txt", "rc=0"], out
    rest = "\n".join(lines[5:])
    # gcloud's wording for a 403 from the JSON API, then Google's message.
    assert rest.startswith(f"ERROR: (gcloud.storage.ls) [{GSA}] does not have permission to access b instance "
                           "[other-bucket] (or it may not exist)"), rest
    assert "Permission 'storage.objects.list' denied" in rest and rest.endswith("rc=1\nTrue"), rest
    assert not config.exists()  # gcloud wrote its config in the pod's /tmp, not the host's


def test_other_names_fail_fast_and_nothing_leaves_the_pod(srv: KeylessServer) -> None:
    probe = r'''
import errno, json, socket, time
out = {}
for name in ("example.com", "bigquery.googleapis.com", "cloudfunctions.googleapis.com"):
    t = time.perf_counter()
    try:
        socket.getaddrinfo(name, 443)
        out[name] = "resolved"
    except socket.gaierror as e:
        out[name] = [e.args[1], round(time.perf_counter() - t, 3)]
for address in ("8.8.8.8", "142.250.80.42", "1.1.1.1"):
    s = socket.socket(); s.settimeout(5)
    t = time.perf_counter()
    try:
        s.connect((address, 443)); out[address] = "connected"
    except OSError as e:
        out[address] = [errno.errorcode.get(e.errno), round(time.perf_counter() - t, 3)]
print(json.dumps(out))
'''
    got = json.loads(in_pod(srv, [PYTHON, "-c", probe]))
    for name in ("example.com", "bigquery.googleapis.com", "cloudfunctions.googleapis.com"):
        message, seconds = got[name]
        assert message == "Temporary failure in name resolution" and seconds < 0.5, got
    for address in ("8.8.8.8", "142.250.80.42", "1.1.1.1"):
        code, seconds = got[address]
        assert code == "ENETUNREACH" and seconds < 0.5, got  # no default route: nothing is sent
    # curl sees the same: an unimplemented Google API cannot be resolved, at once (timed inside the
    # pod around curl alone, not the pod's start: that is seconds on a CI machine running both legs).
    out = in_pod(srv, ["sh", "-c", "t=$(date +%s%N); curl -s -m 20 https://bigquery.googleapis.com/bigquery/v2/projects; "
                                   "echo rc=$? ms=$(( ($(date +%s%N) - t) / 1000000 ))"])
    rc, ms = out.split()
    assert rc == "rc=6" and int(ms.removeprefix("ms=")) < 15_000, out
