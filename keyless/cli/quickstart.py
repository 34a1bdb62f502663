"""`keyless quickstart`: seed 001's GitHub Actions federation made in one command against the
running server, through the same APIs gcloud calls (pool, OIDC provider with the seed's mapping and
condition, deploy-sa, the workloadIdentityUser binding for the repository's principal set, Data
Access logs for STS and IAM), plus a credential configuration file whose token source is a GitHub
Actions job of that repository on Keyless's test issuer. Existing pieces are kept (it can be rerun).

`keyless whoami`: what google-auth's Application Default Credentials resolve to against Keyless
(the real google-auth does the exchange and impersonation), and the identity tokeninfo reports.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyless.config import Settings
from keyless.federation import cred_config

if TYPE_CHECKING:
    import httpx

MAPPING = {"google.subject": "assertion.sub", "attribute.repository": "assertion.repository",
           "attribute.ref": "assertion.ref"}
CREDENTIALS_LIFETIME = 24 * 3600  # the Actions request token in the credentials file


class Api:
    """The running server's REST APIs, as the bootstrap owner; errors are one clear line."""

    def __init__(self, settings: Settings, http: httpx.Client | None = None, token: str | None = None) -> None:
        self.base = settings.base_url
        if token is None:
            token = settings.owner_token_file.read_text().strip() if settings.owner_token_file.exists() else ""
        self.token = token
        import httpx  # here, not at the top: every `keyless` command imports this module to build its parser

        self.http = http or httpx.Client(base_url=self.base, timeout=30)

    def wait_until_serving(self, seconds: float = 20) -> None:
        """`keyless serve &` then this at once: give the server time to open its port."""
        from httpx import TransportError

        deadline = time.monotonic() + seconds
        while True:
            try:
                if self.http.get("/healthz").status_code == 200:
                    break
            except TransportError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
        if not self.token:
            raise ValueError(f"no owner token found in the server's data dir ({self.base}); run: keyless token owner")

    def call(self, method: str, path: str, body: Any = None, *, exists_ok: bool = False,
             params: dict[str, str] | None = None) -> dict[str, Any]:
        r = self.http.request(method, path, json=body, params=params,
                              headers={"Authorization": f"Bearer {self.token}"})
        if r.status_code == 409 and exists_ok:
            return {}
        if r.status_code >= 400:
            raise ValueError(f"{method} {path}: {refusal(r)}")
        return dict(r.json() or {})


def refusal(r: httpx.Response) -> str:
    """A refused call in one line: Google's `STATUS: message`, else the HTTP status and the body's
    start (a Kubernetes Status, a proxy's page). Shared with the pytest plugin (keyless.pytest_plugin)."""
    try:
        error = r.json()["error"]
        return f"{error.get('status', r.status_code)}: {error.get('message', '')}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {r.status_code}: {r.text[:300]}"


def quickstart(api: Api, settings: Settings, args: argparse.Namespace) -> dict[str, str]:
    """Make seed 001's setup; return what was made (names, for the summary)."""
    from keyless.projects import find_project
    from keyless.state import ServerState

    project = args.project
    state = ServerState(settings)  # only for the project's chosen number, which no Google API sets
    try:
        with state.db.read() as s:
            row = find_project(s, project)
            number = row.project_number if row is not None else None
        if number is None:
            number = state.create_owned_project(project, number=args.number).project_number
    finally:
        state.db.dispose()
    pool, provider_id = "github-pool", "github-provider"
    pools = f"/iam/v1/projects/{project}/locations/global/workloadIdentityPools"
    api.call("POST", pools, {"displayName": "GitHub Actions pool"}, exists_ok=True,
             params={"workloadIdentityPoolId": pool})
    issuer = f"{settings.base_url}/idp/github"
    owner = args.repository.split("/")[0]
    provider_body = {"displayName": "GitHub provider", "attributeMapping": MAPPING,
                     "attributeCondition": f"assertion.repository_owner == '{owner}'",
                     "oidc": {"issuerUri": issuer}}
    api.call("POST", f"{pools}/{pool}/providers", provider_body, exists_ok=True,
             params={"workloadIdentityPoolProviderId": provider_id})
    email = f"deploy-sa@{project}.iam.gserviceaccount.com"
    api.call("POST", f"/iam/v1/projects/{project}/serviceAccounts",
             {"accountId": "deploy-sa", "serviceAccount": {"displayName": "GitHub deploy"}}, exists_ok=True)
    member = (f"principalSet://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/"
              f"{pool}/attribute.repository/{args.repository}")
    sa_path = f"/iam/v1/projects/{project}/serviceAccounts/{email}"
    _add_binding(api, sa_path, "roles/iam.workloadIdentityUser", member)
    _enable_data_access(api, f"/cloudresourcemanager/v1/projects/{project}")
    provider = f"projects/{number}/locations/global/workloadIdentityPools/{pool}/providers/{provider_id}"
    return {"project": project, "number": number, "pool": pool, "provider": provider, "issuer": issuer,
            "service_account": email, "member": member}


def _add_binding(api: Api, resource_path: str, role: str, member: str) -> None:
    policy = api.call("POST", resource_path + ":getIamPolicy", {})
    bindings = policy.setdefault("bindings", [])
    for b in bindings:
        if b.get("role") == role and "condition" not in b:
            if member in b["members"]:
                return
            b["members"].append(member)
            break
    else:
        bindings.append({"role": role, "members": [member]})
    api.call("POST", resource_path + ":setIamPolicy", {"policy": policy})


def _enable_data_access(api: Api, project_path: str) -> None:
    """Data Access logs for the exchange (sts ADMIN_READ) and impersonation (iam DATA_READ), which
    Google leaves off by default: seed 001's "Auditing Federated Identity Usage"."""
    policy = api.call("POST", project_path + ":getIamPolicy", {})
    configs = policy.setdefault("auditConfigs", [])
    for service, kind in (("sts.googleapis.com", "ADMIN_READ"), ("iam.googleapis.com", "DATA_READ")):
        entry = next((c for c in configs if c.get("service") == service), None)
        if entry is None:
            configs.append({"service": service, "auditLogConfigs": [{"logType": kind}]})
        elif not any(c.get("logType") == kind for c in entry.setdefault("auditLogConfigs", [])):
            entry["auditLogConfigs"].append({"logType": kind})
    api.call("POST", project_path + ":setIamPolicy", {"policy": policy, "updateMask": "bindings,etag,auditConfigs"})


def credentials_file(settings: Settings, made: dict[str, str], repository: str) -> dict[str, Any]:
    """An external_account file whose subject tokens come, fresh at each refresh, from the test
    issuer's GitHub Actions token endpoint for a job of `repository` (as on a runner)."""
    from keyless.state import ServerState
    from keyless.tokens.idp import actions_request_token

    state = ServerState(settings)
    try:
        job = {"repository": repository, "ref": "refs/heads/main", "actor": "octocat", "workflow": "Deploy",
               "event_name": "push"}
        request_token = actions_request_token(state.keys, job, CREDENTIALS_LIFETIME)
    finally:
        state.db.dispose()
    audience = f"https://iam.googleapis.com/{made['provider']}"
    source = cred_config.url_source(f"{settings.base_url}/idp/github/actions-token?audience={audience}",
                                    {"Authorization": f"Bearer {request_token}"}, field="value")
    return cred_config.external_account(settings.base_url, made["provider"], source,
                                        service_account=made["service_account"])


def cmd_quickstart(args: argparse.Namespace, settings: Settings) -> int:
    if args.repository.count("/") != 1 or not all(args.repository.split("/")):
        raise ValueError("--repository must be OWNER/NAME")
    api = Api(settings)
    api.wait_until_serving()
    made = quickstart(api, settings, args)
    out = Path(args.output_file)
    out.write_text(json.dumps(credentials_file(settings, made, args.repository), indent=2) + "\n")
    out.chmod(0o600)
    provider_id = made["provider"].rsplit("/", 1)[1]
    print(f"""Seed 001's federation is ready on {settings.base_url}:
  project            {made['project']} (number {made['number']})
  pool, provider     {made['pool']}, {provider_id} (issuer {made['issuer']}, Keyless's GitHub test issuer;
                     condition assertion.repository_owner == '{args.repository.split('/')[0]}')
  service account    {made['service_account']}
  binding            roles/iam.workloadIdentityUser for {made['member']}
  Data Access logs   sts.googleapis.com ADMIN_READ, iam.googleapis.com DATA_READ
  credentials        {out} (a GitHub Actions job of {args.repository}; valid {CREDENTIALS_LIFETIME // 3600} h)

Next:
  export GOOGLE_APPLICATION_CREDENTIALS={out.resolve()} GOOGLE_CLOUD_PROJECT={made['project']}
  keyless whoami                     # google-auth exchanges a GitHub token and impersonates {made['service_account']}
  keyless audit read --project {made['project']}
  keyless token github --repository {args.repository} --provider {made['provider']}
  keyless configure-gcloud --project {made['project']}   # then: gcloud --configuration keyless ...""")
    return 0


def cmd_whoami(args: argparse.Namespace, settings: Settings) -> int:
    """Application Default Credentials through the real google-auth, then tokeninfo."""
    import google.auth
    import google.auth.exceptions
    import google.auth.transport.requests
    import httpx

    scopes = ["https://www.googleapis.com/auth/cloud-platform"]
    try:
        path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if path:
            # What default() does first, but without scopes while loading: with scopes and no
            # GOOGLE_CLOUD_PROJECT, google-auth looks the project up at cloudresourcemanager.UNIVERSE,
            # unreachable for "localhost" (and not what whoami asks).
            credentials, _ = google.auth.load_credentials_from_file(path)
            credentials = credentials.with_scopes(scopes)
        else:
            credentials, _ = google.auth.default(scopes=scopes)
        credentials.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.GoogleAuthError as exc:
        raise ValueError(f"Application Default Credentials failed: {exc}") from exc
    except OSError as exc:  # requests' connection errors, a missing file
        raise ValueError(f"Application Default Credentials failed: {exc}") from exc
    info = httpx.get(f"{settings.base_url}/oauth2/v3/tokeninfo", params={"access_token": credentials.token},
                     timeout=30)
    if info.status_code != 200:
        raise ValueError(f"tokeninfo refused the token: {info.text[:300]}")
    data = info.json()
    who = data.get("email") or data.get("sub") or "?"
    kind = type(credentials).__module__ + "." + type(credentials).__name__
    if args.format == "json":
        print(json.dumps({"identity": who, "credentials": kind, "tokeninfo": data}, indent=2))
    else:
        print(f"{who}\n  credentials: {kind}\n  expires in:  {data.get('expires_in', '?')} s")
    sys.stdout.flush()
    return 0


def register(sub: Any, store_flags: Callable[[argparse.ArgumentParser], None],
             settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    qs = sub.add_parser("quickstart", help="create seed 001's project, pool, provider, service account and binding "
                                           "on the running server, and a credentials file to try it")
    qs.add_argument("--project", default="my-project", help="project ID (default my-project)")
    qs.add_argument("--number", default="123456789", help="its number, when it is created (default 123456789)")
    qs.add_argument("--repository", default="my-org/my-repo", help="the GitHub repository trusted (default "
                                                                   "my-org/my-repo)")
    qs.add_argument("--output-file", default="keyless-credentials.json",
                    help="where to write the credential configuration (default ./keyless-credentials.json)")
    store_flags(qs)
    qs.set_defaults(func=lambda a: cmd_quickstart(a, settings_of(a)))

    who = sub.add_parser("whoami", help="who Application Default Credentials are (GOOGLE_APPLICATION_CREDENTIALS, "
                                        "through google-auth), as this server's tokeninfo sees them")
    who.add_argument("--format", choices=("text", "json"), default="text")
    store_flags(who)
    who.set_defaults(func=lambda a: cmd_whoami(a, settings_of(a)))
