"""`keyless pod run`: run a command as a GKE pod (its own network namespace, its node's
metadata server at 169.254.169.254), and `keyless pod metadata-server`, the per-node server
that `pod run` starts on first use (see keyless/api/metadata.py for why one per node)."""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

ADD_STORE_FLAGS = Callable[[argparse.ArgumentParser], None]
IDLE_CHECKS = 3  # a node whose bridge stayed empty this many seconds is removed by its server


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
                   metadata_egress=not args.deny_metadata_egress)
    code = run_pod(_settings(args), spec)
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's convention


def cmd_metadata_server(args: argparse.Namespace) -> int:
    import uvicorn

    from keyless.api.metadata import MetadataServer
    from keyless.cli.main import _settings
    from keyless.gke import netns
    from keyless.state import ServerState

    sock = netns.listen_in(args.netns, netns.METADATA_IP, 80)
    state = ServerState(_settings(args))
    app = MetadataServer(state, args.node)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", server_header=False,
                            date_header=False, timeout_keep_alive=600)  # pods keep their connection
    server = uvicorn.Server(config)

    def watch_idle() -> None:
        # The runners remove an empty node; this covers runners and reapers that were killed.
        empty = 0
        while not server.should_exit:
            time.sleep(1)
            empty = empty + 1 if netns.bridge_ports(args.netns) == 0 else 0
            if empty >= IDLE_CHECKS or not netns.exists(args.netns):
                with netns.node_lock(args.netns):
                    if netns.bridge_ports(args.netns) == 0:
                        server.should_exit = True
                        netns.record_path(args.netns).unlink(missing_ok=True)
                        netns.delete_node(args.netns)
                        return

    me = netns.owner(os.getpid())
    record = netns.read_record(args.netns) or {"kind": "node", "node": args.node}
    netns.write_record(args.netns, {**record, "owners": [me], "server": me, "ready": True})
    threading.Thread(target=watch_idle, daemon=True).start()
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
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
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    add_store_flags(run)
    run.set_defaults(func=cmd_pod_run)

    md = psub.add_parser("metadata-server", help="(internal) the metadata server of one node; started by pod run")
    md.add_argument("--node", required=True, help="the GkeNode name")
    md.add_argument("--netns", required=True, help="the node's network namespace")
    add_store_flags(md)
    md.set_defaults(func=cmd_metadata_server)
