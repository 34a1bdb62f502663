"""The `keyless` command: serve, configure-gcloud, projects, token, audit."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from keyless.config import Settings

if TYPE_CHECKING:
    from keyless.state import ServerState


def _settings(args: argparse.Namespace) -> Settings:
    """The settings of `serve` from its flags and environment; for every other command, those of the
    server it talks to, found as keyless.discovery says (flags, then KEYLESS_*, then the record)."""
    settings = Settings.from_env(
        host=getattr(args, "host", None), port=getattr(args, "port", None),
        data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None,
        database_url=getattr(args, "database", None), public_url=getattr(args, "public_url", None),
        owner=getattr(args, "owner", None),
        allow_insecure_issuers=True if getattr(args, "allow_insecure_issuers", False) else None,
        aws_sts_endpoint=getattr(args, "aws_sts_endpoint", None),
        tls_port=_tls_port_flag(getattr(args, "tls_port", None)),
        universe_domain=getattr(args, "universe_domain", None),
        storage_dir=Path(args.storage_dir) if getattr(args, "storage_dir", None) else None,
    )
    if args.command != "serve":
        from keyless import discovery

        named = getattr(args, "server", None) or os.environ.get("KEYLESS_SERVER") or None
        args.server_named = named
        args.server_record = discovery.resolve(
            settings, server=named, data_dir_given=bool(getattr(args, "data_dir", None)),
            database_given=bool(getattr(args, "database", None)))
    return settings


TLS_AUTO, TLS_OFF = "auto", ("0", "off")
TLS_PORT_OFFSET = 363  # `auto` first tries the HTTP port + 363: 8443 beside the default 8080


def _tls_port_flag(value: object) -> int | None:
    """A --tls-port given as a number; None for serve's `auto`/`off` (resolved by `_serve_tls_port`)."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text == TLS_AUTO or text in TLS_OFF:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"--tls-port wants a port number, `auto` or `off`; got {str(value)[:40]!r}")
    return int(text)


def _serve_tls_port(settings: Settings, flag: str) -> socket.socket | None:
    """`keyless serve`'s TLS port: on by default (`auto`: HTTP port + 363 if free, else a free port;
    $KEYLESS_TLS_PORT names one), off with `--tls-port off` (or 0). Chosen once here, before the
    workers start: they all open the same port (SO_REUSEPORT), and server.json records it. An
    `auto` port is returned held (keyless.listen.reserve_port): keep it until the server stops."""
    text = str(flag).strip().lower()
    if text in TLS_OFF:
        settings.tls_port = None
    elif text == TLS_AUTO and settings.tls_port is None:
        from keyless.listen import reserve_port

        held = reserve_port(settings.host, settings.port + TLS_PORT_OFFSET)
        settings.tls_port = int(held.getsockname()[1])
        return held
    return None


def _server_settings(args: argparse.Namespace, *, store: bool = False) -> Settings:
    """`_settings` for a command that needs a running server. A URL named by flag or environment is
    trusted as it is; otherwise the record must exist (or appear within seconds, after `keyless
    serve &`) and its server answer. A `store` command (one signing with the server's keys) refuses
    a named URL whose data dir it cannot know, rather than sign with the default data dir's keys
    (which that server does not trust; issue #23 item 10)."""
    from keyless import discovery

    settings = _settings(args)
    if args.server_named:
        if store and args.server_record is None and not getattr(args, "data_dir", None) \
                and not getattr(args, "database", None) and not os.environ.get("KEYLESS_DATA_DIR") \
                and not os.environ.get("KEYLESS_DATABASE_URL"):
            raise discovery.ServerNotFound(
                f"{args.server_named} is not the server recorded in {settings.data_dir}: this command signs "
                f"with the server's own keys, so name its data dir with --data-dir (or its --database)")
        return settings
    if args.server_record is None:
        discovery.wait_for_record(settings)
        settings = _settings(args)  # now resolved from the record
    discovery.wait_until_answering(args.server_record)
    return settings


def _add_store_flags(p: argparse.ArgumentParser) -> None:
    """Where the server is, the same three flags on every command (keyless.discovery): by default
    the running `keyless serve`'s own record says."""
    p.add_argument("--server", help="the server's URL (default: the running `keyless serve`'s, or $KEYLESS_SERVER)")
    _add_data_flags(p)


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where Keyless keeps its database and keys (default ~/.keyless, "
                                      "or $KEYLESS_DATA_DIR)")
    p.add_argument("--database", help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db "
                                      "(default: SQLite in the data dir, or $KEYLESS_DATABASE_URL)")


def cmd_serve(args: argparse.Namespace) -> int:
    from keyless import discovery

    settings = _settings(args)
    held = _serve_tls_port(settings, args.tls_port)
    # First, so a command started right after `keyless serve &` finds it (and waits for it to answer).
    records = discovery.publish(settings)
    # uvicorn re-raises SIGTERM/SIGINT once it has shut down; as an exception, not the default
    # action, so the records are withdrawn on the way out.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_on_signal)
    try:
        _start(settings, args)
    finally:
        discovery.withdraw(records)
        if held is not None:
            held.close()
    return 0


def _start(settings: Settings, args: argparse.Namespace) -> None:
    from keyless.state import ServerState

    state = ServerState(settings)
    state.bootstrap()
    state.write_owner_token()
    if args.state:
        from keyless.cli.state import apply_state_at_start

        apply_state_at_start(state, args.state)
    print(f"Keyless serving on {settings.base_url} (data in {settings.data_dir})", flush=True)
    print(f"Bootstrap owner: user:{settings.owner}; its token is in {settings.owner_token_file} "
          f"(or run: keyless token owner)", flush=True)
    print("Other keyless commands find this server by itself (keyless.discovery). Next: keyless quickstart, "
          "keyless configure-gcloud", flush=True)
    if settings.tls_port:
        from datetime import timedelta

        from keyless.tls.ca import ensure
        from keyless.tls.names import certificate_names

        # Once before the workers start, so they find the CA made.
        files = ensure(settings.data_dir, certificate_names(settings), timedelta(seconds=settings.tls_cert_lifetime))
        print(f"HTTPS and gRPC as Google's API hosts on port {settings.tls_port} (trust {files.ca}; "
              f"see `keyless env`)", flush=True)
    _run_server(state, settings, args)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _run_server(state: ServerState, settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from keyless.app import build_app, tune_gc
    from keyless.http_protocol import uvicorn_options

    if args.workers > 1:
        if settings.tls_port:  # each worker serves it too (SO_REUSEPORT)
            os.environ.update({"KEYLESS_TLS_PORT": str(settings.tls_port), "KEYLESS_HOST": settings.host})
        else:  # --tls-port off wins over a $KEYLESS_TLS_PORT the workers would read
            os.environ.pop("KEYLESS_TLS_PORT", None)
        if settings.universe_domain:
            os.environ["KEYLESS_UNIVERSE_DOMAIN"] = settings.universe_domain
        os.environ.update({"KEYLESS_DATA_DIR": str(settings.data_dir), "KEYLESS_OWNER": settings.owner})
        if settings.database_url:
            os.environ["KEYLESS_DATABASE_URL"] = settings.database_url
        if settings.storage_dir:
            os.environ["KEYLESS_STORAGE_DIR"] = str(settings.storage_dir)
        # Workers rebuild their settings from the environment: they must know where they are
        # reached (issuer URLs, key files' token_uri), not assume the default port.
        os.environ["KEYLESS_PUBLIC_URL"] = settings.base_url
        if settings.aws_sts_endpoint:
            os.environ["KEYLESS_AWS_STS_ENDPOINT"] = settings.aws_sts_endpoint
        if settings.allow_insecure_issuers:
            os.environ["KEYLESS_ALLOW_INSECURE_ISSUERS"] = "1"
        state.db.dispose()
        _serve_workers(settings, args)
    else:
        app = build_app(state)
        tune_gc()
        uvicorn.run(app, host=settings.host, port=settings.port, loop=args.loop, log_level=args.log_level,
                    access_log=False, **uvicorn_options(), proxy_headers=bool(_trusted_proxies(args)),
                    forwarded_allow_ips=_trusted_proxies(args) or None)


def _trusted_proxies(args: argparse.Namespace) -> list[str]:
    """Whose X-Forwarded-For/-Proto to believe: nobody's unless --trusted-proxy names them.
    uvicorn's default trusts 127.0.0.1, so any local client could write another address into the
    audit log's callerIp; Google's callerIp is the connection's."""
    return list(getattr(args, "trusted_proxy", None) or [])


def _serve_workers(settings: Settings, args: argparse.Namespace) -> None:
    """`--workers N`: uvicorn's supervisor over N processes, each listening on the port (SO_REUSEPORT)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from keyless.http_protocol import uvicorn_options
    from keyless.listen import WorkerSocket

    config = uvicorn.Config("keyless.app:create_app", factory=True, host=settings.host, port=settings.port,
                            workers=args.workers, loop=args.loop, log_level=args.log_level, access_log=False,
                            **uvicorn_options(),
                            proxy_headers=bool(_trusted_proxies(args)),
                            forwarded_allow_ips=_trusted_proxies(args) or None)
    # Not uvicorn's shared socket: each worker listens on its own (keyless.listen explains why).
    sock = WorkerSocket(settings.host, settings.port)
    Multiprocess(config, sockets=[sock]).run()


def cmd_configure_gcloud(args: argparse.Namespace) -> int:
    from keyless.cli.gcloud_config import write_configuration

    settings = _server_settings(args)
    server = settings.base_url
    token_file = Path(args.token_file) if args.token_file else settings.owner_token_file
    if not token_file.is_file():
        # A server elsewhere (another machine, a container) keeps its owner token in its own data
        # dir: gcloud would fail on every command with a file that does not exist here.
        raise ValueError(f"no token file at {token_file}: for a server whose data dir is not on this machine "
                         f"(another host, a container), save its owner token (`keyless token owner` there, "
                         f"e.g. `podman exec CONTAINER keyless token owner > owner.token`) and pass "
                         f"--token-file owner.token")
    path = write_configuration(args.configuration, server, token_file, args.project,
                               disable_prompts=args.disable_prompts)
    print(f"Wrote gcloud configuration '{args.configuration}' ({path}).")
    print(f"Use it with: gcloud --configuration {args.configuration} ...  "
          f"or CLOUDSDK_ACTIVE_CONFIG_NAME={args.configuration}")
    return 0


def cmd_projects_create(args: argparse.Namespace) -> int:
    from keyless.state import ServerState

    state = ServerState(_settings(args))
    state.bootstrap()
    row = state.create_owned_project(args.project_id, name=args.name, number=args.number)
    print(f"Created project [{row.project_id}] with number {row.project_number}.")
    return 0


def cmd_token_owner(args: argparse.Namespace) -> int:
    from keyless.state import ServerState

    state = ServerState(_settings(args))
    state.bootstrap()
    print(state.write_owner_token().token)
    return 0


def cmd_token_github(args: argparse.Namespace) -> int:
    from keyless.federation.exchange import AUDIENCE
    from keyless.state import ServerState
    from keyless.tokens.idp import github_token

    settings = _server_settings(args, store=True)
    state = ServerState(settings)
    if args.provider and args.audience:
        raise ValueError("give --audience or --provider, not both")
    audience = args.audience
    if args.provider:
        name = args.provider.removeprefix("//iam.googleapis.com/").removeprefix("https://iam.googleapis.com/")
        if not AUDIENCE.match(f"//iam.googleapis.com/{name}"):
            raise ValueError("--provider must be projects/NUMBER/locations/global/workloadIdentityPools/POOL/"
                             "providers/PROVIDER")
        audience = f"https://iam.googleapis.com/{name}"
    print(github_token(state.keys, settings.base_url, repository=args.repository, ref=args.ref,
                       audience=audience, actor=args.actor, workflow=args.workflow,
                       event_name=args.event_name, environment=args.environment, sha=args.sha,
                       lifetime=args.lifetime))
    return 0


def cmd_actions_env(args: argparse.Namespace) -> int:
    from keyless.state import ServerState
    from keyless.tokens.idp import actions_request_token

    settings = _server_settings(args, store=True)
    state = ServerState(settings)
    job = {"repository": args.repository, "ref": args.ref, "actor": args.actor, "workflow": args.workflow,
           "event_name": args.event_name}
    if args.environment:
        job["environment"] = args.environment
    base = settings.base_url
    print(f"ACTIONS_ID_TOKEN_REQUEST_URL={base}/idp/github/actions-token?")
    print(f"ACTIONS_ID_TOKEN_REQUEST_TOKEN={actions_request_token(state.keys, job)}")
    return 0


def cmd_token_kubernetes(args: argparse.Namespace) -> int:
    from keyless.state import ServerState
    from keyless.tokens.idp import kubernetes_token

    settings = _server_settings(args, store=True)
    state = ServerState(settings)
    print(kubernetes_token(state.keys, settings.base_url, cluster=args.cluster,
                           namespace=args.namespace, service_account=args.service_account, audience=args.audience,
                           pod=args.pod, lifetime=args.lifetime))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="keyless", description="Google Cloud Workload Identity Federation, open.")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve every API on one port")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1, or $KEYLESS_HOST)")
    serve.add_argument("--state", default=os.environ.get("KEYLESS_STATE"),
                       help="a world file (keyless export's YAML) to apply before serving (or $KEYLESS_STATE)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8080, or $KEYLESS_PORT)")
    _add_data_flags(serve)
    serve.add_argument("--public-url", help="the URL clients reach this server at (default http://HOST:PORT)")
    serve.add_argument("--owner", help="email of the bootstrap owner (default owner@keyless.dev)")
    serve.add_argument("--allow-insecure-issuers", action="store_true",
                       help="accept http:// OIDC issuers on loopback addresses (local testing only)")
    serve.add_argument("--aws-sts-endpoint", help="verify AWS subject tokens at this STS endpoint instead of AWS "
                                                  "(e.g. a local moto server); or $KEYLESS_AWS_STS_ENDPOINT")
    serve.add_argument("--tls-port", default=TLS_AUTO, metavar="PORT|auto|off",
                       help="also serve HTTPS and gRPC on this port, as Google's API hosts (*.googleapis.com and "
                            "the universe's), with a certificate from Keyless's local CA (see `keyless env`); "
                            "default auto: the HTTP port + 363 if free (8443), else a free port, recorded in "
                            "server.json; or $KEYLESS_TLS_PORT; `off` (or 0) for none")
    serve.add_argument("--universe-domain", help="also answer as SERVICE.UNIVERSE_DOMAIN, e.g. keyless.test "
                                                 "(or $KEYLESS_UNIVERSE_DOMAIN)")
    serve.add_argument("--storage-dir", help="where object bytes live (default DATA_DIR/storage, or "
                       "$KEYLESS_STORAGE_DIR); servers sharing one --database must share it (docs/scaling.md)")
    serve.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    # asyncio, not uvloop: at saturation uvloop served ~5% more exchanges but with twice the p99
    # (22 vs 13-15 ms at concurrency 32; docs/performance.md, research/perf-floor.md's traps).
    serve.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                       help="event loop of the HTTP server (default asyncio: the steadier tail latency)")
    serve.add_argument("--trusted-proxy", action="append", metavar="IP_OR_CIDR",
                       help="a reverse proxy whose X-Forwarded-For names the caller (repeatable; default none: "
                            "callerIp is the connection's address)")
    serve.add_argument("--log-level", default="warning")
    serve.set_defaults(func=cmd_serve)

    cg = sub.add_parser("configure-gcloud", help="write a gcloud configuration that points at this server")
    cg.add_argument("--configuration", default="keyless", help="configuration name (default keyless)")
    cg.add_argument("--project", help="default project of the configuration")
    cg.add_argument("--token-file", help="the bearer token file gcloud should use (default: the owner's)")
    cg.add_argument("--disable-prompts", action="store_true",
                    help="set core/disable_prompts (gcloud answers its questions with their defaults, as with "
                         "--quiet; for scripts without a terminal)")
    _add_store_flags(cg)
    cg.set_defaults(func=cmd_configure_gcloud)

    projects = sub.add_parser("projects", help="manage projects directly in the store")
    psub = projects.add_subparsers(dest="projects_command", required=True)
    pc = psub.add_parser("create", help="create a project with a chosen number")
    pc.add_argument("project_id")
    pc.add_argument("--number", help="the project number (default: a random 12-digit number)")
    pc.add_argument("--name", help="display name")
    _add_store_flags(pc)
    pc.set_defaults(func=cmd_projects_create)

    token = sub.add_parser("token", help="mint tokens")
    tsub = token.add_subparsers(dest="token_command", required=True)
    to = tsub.add_parser("owner", help="print a fresh bootstrap-owner access token (and refresh its file)")
    _add_store_flags(to)
    to.set_defaults(func=cmd_token_owner)

    gh = tsub.add_parser("github", help="mint a GitHub-Actions-shaped OIDC token from Keyless's test issuer")
    gh.add_argument("--repository", required=True, help="OWNER/NAME")
    gh.add_argument("--ref", default="refs/heads/main")
    gh.add_argument("--audience", help="aud claim (default https://github.com/OWNER, as GitHub's)")
    gh.add_argument("--provider", help="the workload identity provider the token is for, "
                                       "projects/N/locations/global/workloadIdentityPools/P/providers/X: the aud is "
                                       "then https://iam.googleapis.com/ and its name, as google-github-actions/auth "
                                       "asks GitHub for")
    gh.add_argument("--actor", default="octocat")
    gh.add_argument("--workflow", default="Deploy")
    gh.add_argument("--event-name", default="push")
    gh.add_argument("--environment")
    gh.add_argument("--sha")
    gh.add_argument("--lifetime", type=int, default=300, help="seconds (default 300)")
    _add_store_flags(gh)
    gh.set_defaults(func=cmd_token_github)

    ae = tsub.add_parser("github-actions-env",
                         help="print ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN for a job, as GitHub sets them")
    ae.add_argument("--repository", required=True, help="OWNER/NAME")
    ae.add_argument("--ref", default="refs/heads/main")
    ae.add_argument("--actor", default="octocat")
    ae.add_argument("--workflow", default="Deploy")
    ae.add_argument("--event-name", default="push")
    ae.add_argument("--environment")
    _add_store_flags(ae)
    ae.set_defaults(func=cmd_actions_env)

    k8s = tsub.add_parser("kubernetes", help="mint a projected service-account token from Keyless's test issuer")
    k8s.add_argument("--cluster", required=True)
    k8s.add_argument("--namespace", required=True)
    k8s.add_argument("--service-account", required=True)
    k8s.add_argument("--audience", required=True)
    k8s.add_argument("--pod")
    k8s.add_argument("--lifetime", type=int, default=3600)
    _add_store_flags(k8s)
    k8s.set_defaults(func=cmd_token_kubernetes)

    from keyless.cli import audit
    audit.add_parser(sub, _add_store_flags, _server_settings)

    from keyless.cli import env
    env.register(sub, _add_store_flags, _settings)

    from keyless.cli import pod
    pod.register(sub, _add_store_flags)

    from keyless.cli import k8s as k8s_cli
    k8s_cli.register(sub, _add_store_flags, _settings)

    from keyless.cli import doctor
    doctor.register(sub, _add_store_flags, _settings)

    from keyless.cli import tls
    tls.register(sub, _add_store_flags, _settings)

    from keyless.cli import quickstart
    quickstart.register(sub, _add_store_flags, _server_settings)

    from keyless.cli import state as state_cli
    state_cli.register(sub, _add_store_flags, _server_settings)

    from keyless.cli import cluster
    cluster.add_parser(sub)

    from keyless.cli import console
    console.register(sub, _add_store_flags, _server_settings)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:  # user-facing: one clear line, not a traceback
        from keyless.errors import KeylessError
        if isinstance(exc, KeylessError | ValueError):
            print(f"ERROR: {exc}", file=sys.stderr)
            return 1
        import httpx
        if isinstance(exc, httpx.TransportError):
            try:
                url = str(exc.request.url)
            except RuntimeError:  # no request attached
                url = ""
            print(f"ERROR: cannot reach the Keyless server ({url}): {exc}. Start it with "
                  f"`keyless serve --allow-insecure-issuers &`, or name another with --server URL", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
