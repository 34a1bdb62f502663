"""(being written)"""

from __future__ import annotations

from starlette.routing import Route

from keyless.state import ServerState


def routes(state: ServerState) -> list[Route]:
    return []
