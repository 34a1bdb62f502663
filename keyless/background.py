"""A thread of the serving process that works in rounds: every `interval` seconds, and at once
when woken (after the write that gave it work). The log router (keyless.cloudlogging.export), the
Pub/Sub push thread (keyless.pubsub.push) and the secret rotation check
(keyless.secretmanager.rotation) are its subclasses: each says what one round does."""

from __future__ import annotations

import logging
import threading


class Worker:
    """Subclasses implement `round()`, returning the seconds until the next round is due (at most
    `interval` is waited), or None for the interval. A round that raises is logged and the thread
    goes on. Daemon threads: they never hold up the process's exit."""

    def __init__(self, interval: float, *, name: str, logger: logging.Logger, failure: str,
                 first_round_at_once: bool = False) -> None:
        self._interval, self._name, self._logger, self._failure = interval, name, logger, failure
        self._first_at_once = first_round_at_once
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def round(self) -> float | None:
        raise NotImplementedError

    def start(self) -> bool:
        """Start the thread unless it runs; whether this call started it."""
        with self._lock:
            if self._thread is not None:
                return False
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
            return True

    def wake(self) -> None:
        """Do a round now (the wait for the next one ends at once)."""
        self._wake.set()

    def stop(self) -> None:
        """Ask the thread to end after its round."""
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (after stop())."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        delay = 0.0 if self._first_at_once else self._interval
        while not self._stop.is_set():
            self._wake.wait(delay)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                due = self.round()
            except Exception:
                self._logger.exception(self._failure)
                due = None
            delay = self._interval if due is None else min(self._interval, due)
