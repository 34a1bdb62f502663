"""`keyless serve --tls-port`: HTTPS and gRPC as Google's API hosts on one TLS port, run by each
server process beside its HTTP port (started from the app's lifespan).

Every worker opens the port itself with SO_REUSEPORT, so the kernel spreads connections over
the workers. HTTP/1.1 is served by uvicorn's protocol, gRPC (ALPN "h2") by an in-process
grpc.aio server on a private unix socket (keyless.tls.alpn), started by the first gRPC
connection (grpc and the Secret Manager messages take longer to import than the rest of
`keyless serve` takes to start; issue #19). The server certificate is
short-lived: a background task re-runs keyless.tls.ca.ensure and loads a reissued certificate
into the live SSLContext, which later handshakes use, without a restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shutil
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp
from uvicorn.server import ServerState as UvicornState

from keyless.config import Settings
from keyless.http_protocol import uvicorn_options
from keyless.listen import listening_socket
from keyless.tls import ca
from keyless.tls.alpn import ALPN_PROTOCOLS, AlpnSwitch, Peers
from keyless.tls.names import certificate_names

if TYPE_CHECKING:
    import grpc

logger = logging.getLogger("keyless.tls")

MAX_CHECK_SECONDS = 60.0  # how often, at most, the certificate's renewal is checked (and a rotation seen)


class TlsFrontend:
    """The TLS port of one server process."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self.lifetime = dt.timedelta(seconds=settings.tls_cert_lifetime)
        self.names = certificate_names(settings)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.set_alpn_protocols(ALPN_PROTOCOLS)
        self.serial = 0
        # uvicorn's own HTTP/1.1 protocol serves what arrives over HTTP/1.1.
        # proxy_headers off: callerIp is the TLS client's (see keyless.cli.main._trusted_proxies).
        self.http_config = uvicorn.Config(app, lifespan="off", access_log=False, log_config=None, proxy_headers=False,
                                          **uvicorn_options())
        self.http_config.load()
        self.http_state = UvicornState()

    async def start(self) -> None:
        assert self.settings.tls_port is not None
        self.files = await asyncio.to_thread(ca.ensure, self.settings.data_dir, self.names, self.lifetime)
        await self._load()
        self.private = Path(tempfile.mkdtemp(prefix="keyless-grpc-"))  # mode 0700: ours alone
        target = str(self.private / "grpc.sock")
        self.peers = Peers(self.private, target, self._start_grpc)
        self.grpc: grpc.aio.Server | None = None
        loop = asyncio.get_running_loop()
        sock = listening_socket(self.settings.host, self.settings.tls_port)
        self.server = await loop.create_server(lambda: AlpnSwitch(self._http, self.peers), sock=sock,
                                               ssl=self.context, ssl_handshake_timeout=10)
        self.renewal = loop.create_task(self._renew())

    async def _start_grpc(self) -> None:
        import grpc

        from keyless.api.cloudasset.grpc import asset_service_grpc
        from keyless.api.logging.grpc import services as logging_services
        from keyless.api.pubsub.grpc import services as pubsub_services
        from keyless.api.secretmanager.grpc import secret_manager_service

        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers([secret_manager_service(self.app, self.peers.client),
                                         asset_service_grpc(self.app, self.peers.client),
                                         *pubsub_services(self.app, self.peers.client),
                                         *logging_services(self.app, self.peers.client)])
        server.add_insecure_port(f"unix:{self.peers.target}")
        await server.start()
        self.grpc = server

    def _http(self) -> asyncio.Protocol:
        config = self.http_config
        protocol: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=self.http_state, app_state={})
        return protocol

    async def _load(self) -> None:
        cert = await asyncio.to_thread(ca.load_server_chain, self.context, self.files)
        if cert.serial_number != self.serial:
            self.serial = cert.serial_number
            logger.info("TLS certificate %x loaded, valid until %s", cert.serial_number, cert.not_valid_after_utc)

    async def _renew(self) -> None:
        period = min(MAX_CHECK_SECONDS, max(0.2, self.lifetime.total_seconds() / 20))
        while True:
            await asyncio.sleep(period)
            try:
                self.files = await asyncio.to_thread(ca.ensure, self.settings.data_dir, self.names, self.lifetime)
                await self._load()
            except Exception:  # the current certificate still serves; try again at the next check
                logger.exception("could not renew the TLS certificate")

    async def stop(self) -> None:
        self.renewal.cancel()
        self.server.close()
        for connection in list(self.http_state.connections):
            connection.shutdown()
        if self.grpc is not None:
            await self.grpc.stop(grace=2)
        shutil.rmtree(self.private, ignore_errors=True)
