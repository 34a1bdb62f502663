"""`keyless serve --tls-port`: one process serving the same app over HTTP and HTTPS (uvicorn
serves one socket family per server, so two servers share the event loop; the app's lifespan
runs once, on the HTTP one)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from keyless.config import Settings
from keyless.tls.ca import ensure
from keyless.tls.names import certificate_names


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # signals are handled once for both servers (below)


def serve_http_and_https(app: ASGIApp, settings: Settings, log_level: str) -> None:
    files = ensure(settings.data_dir, certificate_names(settings))
    servers = [
        _Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level, access_log=False)),
        _Server(uvicorn.Config(app, host=settings.host, port=settings.tls_port or 0, log_level=log_level,
                               access_log=False, lifespan="off", ssl_certfile=str(files.cert),
                               ssl_keyfile=str(files.key))),
    ]
    print(f"HTTPS as Google's API hosts on port {settings.tls_port} (trust {files.ca}; "
          f"see `keyless env`)", flush=True)

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(main())
