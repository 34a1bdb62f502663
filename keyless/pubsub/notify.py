"""Wakes this process's streaming pulls when a message is published here, so delivery does not
wait for their next poll (a publish in another worker is seen at that poll). Publishes run in
worker threads; each waiting stream is an asyncio.Event on its event loop."""

from __future__ import annotations

import asyncio
import threading

_lock = threading.Lock()
_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()


def register(event: asyncio.Event) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
    entry = (asyncio.get_running_loop(), event)
    with _lock:
        _waiters.add(entry)
    return entry


def unregister(entry: tuple[asyncio.AbstractEventLoop, asyncio.Event]) -> None:
    with _lock:
        _waiters.discard(entry)


def published() -> None:
    """Called after a publish committed: every waiting stream looks again."""
    with _lock:
        waiters = list(_waiters)
    for loop, event in waiters:
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # its loop has closed
            unregister((loop, event))
