"""`keyless pod run`: run a command as a GKE pod (its own network namespace, its node's
metadata server at 169.254.169.254, and with `--tls-port` Google's API hosts relayed to Keyless;
or with `--network loopback` its own 127.x address and metadata server, keyless/gke/loopback.py),
and `keyless pod metadata-server`, the per-node server (and relay) that `pod run` starts on
first use (see keyless/api/metadata/server.py for why one per node)."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

ADD_STORE_FLAGS = Callable[[argparse.ArgumentParser], None]


def cmd_pod_run(args: argparse.Namespace) -> int:
    from keyless.cli.main import _settings
    from keyless.gke.pods import PodSpec, run_pod

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    env = {}
    for item in args.env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env expects NAME=VALUE, got {item!r}")
        env[key] = value
    spec = PodSpec(cluster=args.cluster, command=command, namespace=args.namespace,
                   service_account=args.service_account, pod=args.pod, name=args.name, node_pool=args.node_pool,
                   project=args.project, location=args.location, env=env,
                   metadata_egress=not args.deny_metadata_egress, network=args.network,
                   run_as_user=args.run_as_user, run_as_group=args.run_as_group,
                   container_logs=not args.no_container_logs)
    # The server's URL and TLS port come from --server/--tls-port, KEYLESS_*, or its record (keyless.discovery).
    settings = _settings(args)
    if args.network == "loopback" and args.tls_port is None:
        settings.tls_port = None  # the record's TLS port: a loopback pod cannot have Google's hosts relayed
    code = run_pod(settings, spec)
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


def cmd_metadata_server(args: argparse.Namespace) -> int:
    from keyless.api.metadata.server import MetadataServer
    from keyless.api.metadata.transport import (
        FD_RESERVE,
        Connections,
        connection_limit,
        raise_file_limit,
        run,
        serve,
    )
    from keyless.app import tune_gc
    from keyless.cli.main import _settings
    from keyless.gke import netns
    from keyless.gke.forwarder import Forwarder, Route, parse_upstream
    from keyless.state import ServerState

    raise_file_limit()  # the soft limit up to the hard one: headroom for the node's pods (issue #23)
    sock = netns.listen_in(args.netns, netns.METADATA_IP, 80)
    relays: dict[str, str] = {}
    routes = []
    for item in args.relay or []:
        port, sep, upstream = item.partition("=")
        if not sep or not port.isdigit() or not args.gateway:
            raise ValueError(f"--relay expects PORT=HOST:PORT (with --gateway), got {item!r}")
        routes.append(Route(netns.listen_in(args.netns, args.gateway, int(port)), parse_upstream(upstream)))
        relays[port] = upstream
    forwarder = Forwarder(routes, limit=args.relay_limit)
    if routes:
        forwarder.start()  # its own thread and loop: relayed traffic never delays /token
    state = ServerState(_settings(args))
    app = MetadataServer(state, args.node)
    stopping = threading.Event()

    import asyncio

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        threading.Thread(target=lambda: (stopping.wait(), loop.call_soon_threadsafe(stop.set)), daemon=True).start()
        tune_gc()
        # The relays hold up to two descriptors per relayed connection: kept back with the reserve.
        limit = connection_limit(reserve=FD_RESERVE + 2 * args.relay_limit)
        await serve(app, [sock], stop, connections=Connections(limit))

    me = netns.owner(os.getpid())
    record = netns.read_record(args.netns) or {"kind": "node", "node": args.node}
    netns.write_record(args.netns, {**record, "owners": [me], "server": me, "ready": True, "relays": relays})
    threading.Thread(target=netns.watch_idle_node, args=(args.netns, stopping), daemon=True,
                     name="keyless-idle-watch").start()
    try:
        run(main())
    finally:
        stopping.set()
        forwarder.stop()
        state.audit.close()
    return 0


def register(sub: Any,
              add_store_flags: ADD_STORE_FLAGS) -> None:
    pod = sub.add_parser("pod", help="run commands as GKE pods (network namespaces + the GKE metadata server)")
    psub = pod.add_subparsers(dest="pod_command", required=True)
    run = psub.add_parser("run", help="run COMMAND as a pod of a cluster: keyless pod run --cluster C "
                                      "--namespace NS --service-account KSA -- COMMAND...")
    run.add_argument("--cluster", required=True)
    run.add_argument("--namespace", "-n", default="default")
    run.add_argument("--service-account", help="the pod's spec.serviceAccountName (default: default)")
    run.add_argument("--pod", help="run an existing Pod object (e.g. a Deployment's replica) by name")
    run.add_argument("--name", help="name of the pod (default pod-run-XXXXXX); deleted when it ends")
    run.add_argument("--node-pool", help="schedule on a node of this node pool")
    run.add_argument("--project", help="the cluster's project (when the cluster name is ambiguous)")
    run.add_argument("--location", "--region", "--zone", dest="location", help="the cluster's location")
    run.add_argument("--env", action="append", metavar="NAME=VALUE", help="an environment variable of the pod")
    run.add_argument("--deny-metadata-egress", action="store_true",
                     help="run as under a default-deny egress NetworkPolicy: the metadata server is unreachable")
    run.add_argument("--tls-port", type=int,
                     help="the HTTPS port of `keyless serve --tls-port` (default: the running server's, or "
                          "$KEYLESS_TLS_PORT): the pod then reaches "
                          "Keyless as Google's API hosts (sts.googleapis.com, storage.googleapis.com, ...) through "
                          "its node, and trusts Keyless's CA; without it only the metadata server is reachable")
    run.add_argument("--network", choices=("namespace", "loopback"), default="namespace",
                     help="namespace (default; needs root): the pod gets its own network namespace, where "
                          "169.254.169.254 is its node's metadata server. loopback (no root needed, no isolation): "
                          "the pod gets its own 127.x.y.z address with a metadata server there, given to it in "
                          "GCE_METADATA_HOST, GCE_METADATA_IP and GCE_METADATA_ROOT; any local process can reach it")
    run.add_argument("--run-as-user", type=int, metavar="UID",
                     help="the new pod's securityContext.runAsUser (default 65534, nobody); the pod has no "
                          "capabilities whatever its uid")
    run.add_argument("--run-as-group", type=int, metavar="GID", help="the new pod's securityContext.runAsGroup")
    run.add_argument("--no-container-logs", action="store_true",
                     help="do not ship the command's stdout and stderr to Cloud Logging as the container's logs "
                          "(kubectl exec's commands; keyless/gke/logging_agent.py)")
    run.add_argument("--universe-domain", help="also resolve SERVICE.UNIVERSE to Keyless (as given to serve)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    add_store_flags(run)
    run.set_defaults(func=cmd_pod_run)

    md = psub.add_parser("metadata-server", help="(internal) the metadata server of one node; started by pod run")
    md.add_argument("--node", required=True, help="the GkeNode name")
    md.add_argument("--netns", required=True, help="the node's network namespace")
    md.add_argument("--gateway", help="the node's pod gateway address, where relays listen")
    md.add_argument("--relay", action="append", metavar="PORT=HOST:PORT",
                    help="relay connections to the gateway's PORT to HOST:PORT on this machine (Keyless)")
    md.add_argument("--relay-limit", type=int, default=1024, help="connections relayed at once (default 1024)")
    add_store_flags(md)
    md.set_defaults(func=cmd_metadata_server)
