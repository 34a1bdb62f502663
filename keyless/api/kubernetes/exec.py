"""`kubectl exec` and `kubectl attach` (so `kubectl run -i`) over WebSocket, the streaming
protocol kubectl ≥ 1.30 speaks (`v5.channel.k8s.io`, `v4.channel.k8s.io`;
https://github.com/kubernetes/enhancements/tree/master/keps/sig-api-machinery/4006-transition-spdy-to-websockets):
every binary message starts with its channel — 0 stdin, 1 stdout, 2 stderr, 3 the final Status,
4 terminal resize, 255 (v5) a client's close of one of its streams.

The command runs as a Keyless pod (`keyless pod run --pod NAME`, keyless.gke.pods): in its own
network namespace when this server may make one, else with `--network loopback`, on the node the
pod's nodeSelector picks, identified by its node's metadata server exactly as `keyless pod run`'s
pods are; in a namespace it is sandboxed as they are (keyless/gke/sandbox.py: the Pod's
securityContext.runAsUser decides its uid, 65534 by default; issue #23). Images are not pulled: the command is this machine's own, which the error says when it
is missing; for the same reason only callers on this machine (loopback) may exec or attach. `exec` leaves the pod's status as it was; `attach` runs the pod's own command (its
container's command and args, as `kubectl run NAME -- CMD` writes them) and records how it ended,
which `kubectl run` reads for its exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import shutil
import sys
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from keyless.api.kubernetes.discovery import RESOURCES
from keyless.api.kubernetes.rest import PREFIX, ClusterApi, Target, forbidden, permission
from keyless.errors import KeylessError
from keyless.gke import kubernetes, netns
from keyless.store.models import GkeCluster

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
NOT_PULLED = ("Keyless runs a pod's commands on this machine's own filesystem; images such as {image} are not "
              "pulled, so their binaries are not available")
PODS = next(r for r in RESOURCES if r.name == "pods")
REMOTE_REFUSED = ("Keyless runs exec and attach commands on its own machine, so it takes them only from this machine "
                  "(a loopback address); run kubectl where Keyless runs")


def _local(ws: WebSocket) -> bool:
    """Only local callers may run commands: a pod's command is a process of this machine, unlike
    a GKE container, so a remote caller with container.pods.exec would get this host."""
    try:
        return ws.client is not None and ipaddress.ip_address(ws.client.host).is_loopback
    except ValueError:
        return False


def _status(code: int | None, message: str = "", reason: str = "") -> bytes:
    if code == 0:
        body: dict[str, Any] = {"metadata": {}, "status": "Success"}
    elif code is not None and not reason:
        body = {"metadata": {}, "status": "Failure",
                "message": f"command terminated with non-zero exit code: exit status {code}",
                "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
    else:
        body = {"metadata": {}, "status": "Failure", "message": message, "reason": reason or "InternalError",
                "code": 500}
    return bytes([ERROR]) + json.dumps(body).encode()


class Streams:
    """One exec or attach: its WebSocket, and the pod process behind it."""

    def __init__(self, api: ClusterApi, websocket: WebSocket, subresource: str) -> None:
        self.api, self.ws, self.subresource = api, websocket, subresource

    async def run(self) -> None:
        ws, p = self.ws, self.ws.path_params
        offered = [s.strip() for s in ws.headers.get("sec-websocket-protocol", "").split(",")]
        protocol = next((s for s in PROTOCOLS if s in offered), None)
        try:
            principal = await run_in_threadpool(self.api.authenticate, ws)
        except KeylessError:
            await ws.close(code=1008, reason="Unauthorized")
            return
        cluster = await run_in_threadpool(self.api.cluster, ws)
        target = Target(PODS, p["namespace"], p["pod"], self.subresource)
        perm = permission(target, "create")
        if cluster is None or protocol is None:
            await ws.close(code=1002, reason="unknown cluster, or none of the streaming protocols "
                                             f"{', '.join(PROTOCOLS)} offered")
            return
        await ws.accept(subprotocol=protocol)
        if not _local(ws):
            await self.finish(_status(None, REMOTE_REFUSED, "Forbidden"))
            return
        if not await run_in_threadpool(self.api.allowed, principal, cluster, perm):
            denied = forbidden(principal, target, "create", perm)
            await self.finish(_status(None, json.loads(bytes(denied.body))["message"], "Forbidden"))
            return
        q = ws.query_params
        try:
            pod = await run_in_threadpool(self._pod, cluster, p["namespace"], p["pod"])
        except KeylessError as error:
            await self.finish(_status(None, error.message, "NotFound"))
            return
        container = self._container(pod, q.get("container"))
        if container is None:
            await self.finish(_status(None, f'container {q.get("container")} is not valid for pod {p["pod"]}',
                                      "BadRequest"))
            return
        if self.subresource == "exec":
            command = q.getlist("command")
        else:
            command = [*(container.get("command") or []), *(container.get("args") or [])]
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                await self.finish(_status(None, "cannot attach to a container in a completed pod", "BadRequest"))
                return
        if not command:
            await self.finish(_status(None, "a command is required (Keyless has no image entrypoint to run)",
                                      "BadRequest"))
            return
        if shutil.which(command[0]) is None:
            await self.finish(_status(None, f'exec: "{command[0]}": executable file not found in $PATH: '
                                            + NOT_PULLED.format(image=container.get("image") or "the pod's"),
                                      "InternalError"))
            return
        stdin = q.get("stdin") in ("true", "1")
        code = await self.pump(cluster, pod, command, stdin, q.get("stdout", "true") in ("true", "1"),
                               q.get("stderr", "true") in ("true", "1"))
        if self.subresource == "attach" and code is not None:
            # As the kubelet's attach: the stream ends cleanly; the exit code is in the pod's status.
            await run_in_threadpool(self._ended, cluster, p["namespace"], p["pod"], container["name"], code)
            code = 0
        await self.finish(_status(code))

    def _pod(self, cluster: GkeCluster, namespace: str, name: str) -> dict[str, Any]:
        with self.api.state.db.read() as s:
            return kubernetes.read(s, cluster, "Pod", namespace, name)

    @staticmethod
    def _container(pod: dict[str, Any], name: str | None) -> dict[str, Any] | None:
        containers = (pod.get("spec") or {}).get("containers") or [{"name": pod["metadata"]["name"]}]
        if not name:
            return dict(containers[0])
        return next((dict(c) for c in containers if c.get("name") == name), None)

    def _command(self, cluster: GkeCluster, pod: dict[str, Any], command: list[str]) -> list[str]:
        settings = self.api.state.settings
        args = [sys.executable, "-m", "keyless.cli.main", "pod", "run", "--cluster", cluster.name,
                "--project", cluster.project_id, "--location", cluster.location,
                "--namespace", pod["metadata"]["namespace"], "--pod", pod["metadata"]["name"],
                "--data-dir", str(settings.data_dir)]
        if settings.database_url:
            args += ["--database", settings.database_url]
        if netns.unavailable_reason() is None:
            if settings.tls_port:  # the pod also reaches Keyless as Google's hosts
                args += ["--tls-port", str(settings.tls_port), "--server", settings.base_url]
        else:
            args += ["--network", "loopback"]
        if self.subresource == "exec":  # the kubelet's exec output is not the container's log; attach's is
            args.append("--no-container-logs")
        return [*args, "--", *command]

    async def pump(self, cluster: GkeCluster, pod: dict[str, Any], command: list[str], stdin: bool,
                   stdout: bool, stderr: bool) -> int | None:
        """Run the pod's process, relaying its streams; its exit status (None: the client left)."""
        before = (pod.get("status") or {})
        proc = await asyncio.create_subprocess_exec(
            *self._command(cluster, pod, command), stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

        async def relay(stream: asyncio.StreamReader | None, channel: int, wanted: bool) -> None:
            assert stream is not None
            while chunk := await stream.read(65536):
                if wanted:
                    await self.ws.send_bytes(bytes([channel]) + chunk)

        async def feed() -> None:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", 1000))
                data = message.get("bytes") or (message.get("text") or "").encode()
                if not data:
                    continue
                if data[0] == STDIN and proc.stdin is not None:
                    proc.stdin.write(data[1:])
                    await proc.stdin.drain()
                elif data[0] == CLOSE and data[1:2] == bytes([STDIN]) and proc.stdin is not None:
                    proc.stdin.close()

        async def relays() -> None:
            await asyncio.gather(relay(proc.stdout, STDOUT, stdout), relay(proc.stderr, STDERR, stderr))

        feeder = asyncio.ensure_future(feed())
        try:
            done, _ = await asyncio.wait({asyncio.ensure_future(relays()), feeder}, return_when=asyncio.FIRST_COMPLETED)
            if feeder in done:  # the client went away (or failed): end the pod's process
                proc.terminate()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), 10)
                return None
            code = await proc.wait()
        finally:
            feeder.cancel()
            if proc.returncode is None:
                proc.kill()
        if self.subresource == "exec":  # an exec does not end the pod: its status is restored
            await run_in_threadpool(self._restore, cluster, pod, before)
        return code

    def _restore(self, cluster: GkeCluster, pod: dict[str, Any], status: dict[str, Any]) -> None:
        with self.api.state.db.write() as s:
            row = kubernetes.get_object(s, cluster.id, "Pod", pod["metadata"]["namespace"], pod["metadata"]["name"])
            if row is not None:
                row.body = {**row.body, "status": status}
                row.pod_ip = None

    def _ended(self, cluster: GkeCluster, namespace: str, name: str, container: str, code: int) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.api.state.db.write() as s:
            row = kubernetes.get_object(s, cluster.id, "Pod", namespace, name)
            if row is None:
                return
            status = dict(row.body.get("status") or {})
            status["phase"] = "Succeeded" if code == 0 else "Failed"
            status["conditions"] = [{"type": "Ready", "status": "False"}]
            status["containerStatuses"] = [{"name": container, "ready": False, "restartCount": 0,
                                            "state": {"terminated": {"exitCode": code, "finishedAt": now,
                                                                     "reason": "Completed" if code == 0 else "Error"}}}]
            row.body = {**row.body, "status": status}
            row.pod_ip = None

    async def finish(self, status: bytes) -> None:
        with contextlib.suppress(Exception):
            await self.ws.send_bytes(status)
            await self.ws.close(code=1000)


def websocket_routes(api: ClusterApi) -> list[WebSocketRoute]:
    async def exec_(websocket: WebSocket) -> None:
        await Streams(api, websocket, "exec").run()

    async def attach(websocket: WebSocket) -> None:
        await Streams(api, websocket, "attach").run()

    pods = PREFIX + "/api/v1/namespaces/{namespace}/pods/{pod}"
    return [WebSocketRoute(pods + "/exec", exec_), WebSocketRoute(pods + "/attach", attach)]
