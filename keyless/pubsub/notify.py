"""Tells this process's streaming pulls what happened here, so they need not wait for their next
poll: a publish committed (look for messages now), ack ids acknowledged, nacked or given a new
deadline through the unary methods (google-cloud-pubsub sends its acks and lease extensions that
way, not on the stream), which frees or keeps room in a stream's flow control. What happens in
another worker is seen at the stream's next poll, or when the lease it counted expires.
Publishes and acks run in worker threads; each stream lives on its event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

# (ack ids, their new deadline in seconds, or None when acknowledged or nacked)
AckListener = Callable[[list[str], int | None], None]


@dataclass(eq=False)
class Waiter:
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event
    on_acks: AckListener | None = field(default=None)


_lock = threading.Lock()
_waiters: set[Waiter] = set()
_publish_listeners: list[Callable[[], None]] = []  # threads' wake-ups (the push thread)


def on_publish(listener: Callable[[], None]) -> None:
    with _lock:
        _publish_listeners.append(listener)


def off_publish(listener: Callable[[], None]) -> None:
    with _lock:
        if listener in _publish_listeners:
            _publish_listeners.remove(listener)


def register(event: asyncio.Event, on_acks: AckListener | None = None) -> Waiter:
    waiter = Waiter(asyncio.get_running_loop(), event, on_acks)
    with _lock:
        _waiters.add(waiter)
    return waiter


def unregister(waiter: Waiter) -> None:
    with _lock:
        _waiters.discard(waiter)


def _each(action: Callable[[Waiter], object]) -> None:
    with _lock:
        waiters = list(_waiters)
    for waiter in waiters:
        try:
            action(waiter)
        except RuntimeError:  # its loop has closed
            unregister(waiter)


def published() -> None:
    """Called after a publish (or a nack, or a seek) committed: every waiting stream looks again."""
    _each(lambda w: w.loop.call_soon_threadsafe(w.event.set))
    with _lock:
        listeners = list(_publish_listeners)
    for listener in listeners:
        listener()


def acks_changed(ack_ids: list[str], deadline: int | None) -> None:
    """Called after acknowledge (deadline None) or modifyAckDeadline committed."""

    def tell(w: Waiter) -> None:
        if w.on_acks is not None:
            w.loop.call_soon_threadsafe(w.on_acks, list(ack_ids), None if deadline == 0 else deadline)
            if deadline == 0:
                w.loop.call_soon_threadsafe(w.event.set)

    _each(tell)
