"""Attribute conditions and mappings kept off the event loop, each evaluation within a time budget
(issue #23 item 7).

cel-cpp holds the GIL while it evaluates, so a worker thread does not free the event loop: a 3.3 KB
condition (60 `matches()` of `.{0,1000}` over an 8 KB claim) cost 0.3 s per exchange, and with 4
clients presenting tokens `/healthz` waited 600 ms. And cel-cpp cannot be interrupted. So a provider's
mapping is applied inline only once it has shown itself cheap: its first `PROBATION` evaluations in
each server process run in a child process, which is killed when one passes `BUDGET_SECONDS`; a
mapping that stays under `SLOW_SECONDS` (of CPU) there is applied inline afterwards (the common
case: ~40 µs), but only to credentials no longer than the longest it was cheap for (the cost of
`matches()` grows with the claims, which the caller chooses: a longer one is tried in the child
first), and one inline evaluation over `SLOW_SECONDS` puts it back on probation. Mappings seen to be costly
are evaluated by a child of their own, so their queue never delays another provider's. The
size limits of Google's (condition 4,096 characters, mapping expressions 2,048, 50 custom attributes;
keyless.federation.mapping) bound what one evaluation can cost; the budget bounds the rest.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any

from keyless.errors import InvalidArgument, KeylessError
from keyless.federation.mapping import CompiledMapping, MappedIdentity, apply, compile_mapping
from keyless.federation.providers.oidc import NeedsNetwork

logger = logging.getLogger("keyless.federation")

SLOW_SECONDS = 0.002
"""An evaluation slower than this is not run on the event loop."""
PROBATION = 3
"""Evaluations under SLOW_SECONDS, in the worker, before a mapping is applied inline."""
BUDGET_SECONDS = 0.5
"""Longest one evaluation may take in the worker; beyond it the credential is refused."""
STARTUP_SECONDS = 30.0
QUEUE_SECONDS = 5.0
"""Longest an exchange waits for a child while others use it (or while it starts)."""

OVER_BUDGET = (f"The attribute condition and mapping of this provider exceed their evaluation budget "
               f"({BUDGET_SECONDS:g} s).")
BUSY = "The attribute condition and mapping of this provider could not be evaluated in time: try again."


class NeedsWorker(NeedsNetwork):
    """Raised instead of evaluating on the event loop a mapping not yet known to be cheap; the
    caller's fallback for NeedsNetwork (the exchange again, in a worker thread) serves it too."""


class _Rerouted(Exception):
    """The mapping turned out costly while this evaluation waited for the probation child."""


class MappingWorker:
    """Where each evaluation runs: inline, or in one of two child processes: one for mappings on
    probation, one for mappings seen to be costly, so a costly provider's queue never delays
    another provider's first exchanges."""

    def __init__(self) -> None:
        self._probation, self._costly = _Child(), _Child()

    def apply(self, compiled: CompiledMapping, assertion: Mapping[str, Any], *, size: int,
              inline: bool) -> MappedIdentity:
        """`mapping.apply`, inline when `compiled` is known to be cheap for credentials of `size`
        (the subject token's length: an evaluation's cost grows with its claims) or else NeedsWorker
        if `inline`, otherwise in a child process within BUDGET_SECONDS."""
        cost = compiled.cost  # races between threads are benign: at worst one more run in a child
        if cost.cheap_runs >= PROBATION and size <= cost.cheap_size:
            start = time.thread_time()  # CPU time: a thread descheduled meanwhile is not slow
            try:
                return apply(compiled, assertion)
            finally:
                if time.thread_time() - start > SLOW_SECONDS:
                    cost.cheap_runs, cost.cheap_size, cost.costly = 0, 0, True
        if inline:
            raise NeedsWorker("a mapping on probation")
        try:
            if cost.costly:
                identity, seconds = self._costly.run(compiled, dict(assertion))
            else:
                try:  # requests queued behind the one that found it costly move to the costly child
                    identity, seconds = self._probation.run(compiled, dict(assertion), unless=lambda: cost.costly)
                except _Rerouted:
                    identity, seconds = self._costly.run(compiled, dict(assertion))
        except InvalidArgument as error:
            if error.message == OVER_BUDGET:
                cost.cheap_runs, cost.cheap_size, cost.costly = 0, 0, True
            raise
        if seconds <= SLOW_SECONDS:
            cost.cheap_runs += 1
            cost.cheap_size = max(cost.cheap_size, size)
        else:
            cost.cheap_runs, cost.cheap_size, cost.costly = 0, 0, True
        return identity

    def close(self) -> None:
        self._probation.close()
        self._costly.close()


class _Child:
    """A child process applying mappings one at a time, killed and replaced when one passes the budget."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def run(self, compiled: CompiledMapping, assertion: dict[str, Any],
            unless: Callable[[], bool] | None = None) -> tuple[MappedIdentity, float]:
        """Apply `compiled` here, once the child is free (raise _Rerouted if `unless()` holds then)."""
        if not self._lock.acquire(timeout=QUEUE_SECONDS):
            raise InvalidArgument(BUSY)
        try:
            if unless is not None and unless():
                raise _Rerouted
            conn = self._connection()
            conn.send((id(compiled), compiled.attribute_mapping, compiled.attribute_condition,
                       compiled.provider_type, assertion))
            if not conn.poll(BUDGET_SECONDS):
                logger.warning("an attribute condition or mapping passed its budget of %s s: %r", BUDGET_SECONDS,
                               (compiled.attribute_condition or "")[:200])
                self._stop()
                # Its successor starts now, not when the next exchange waits for it (~1 s).
                threading.Thread(target=self._restart, name="keyless-mapping-start", daemon=True).start()
                raise InvalidArgument(OVER_BUDGET)
            outcome, value, seconds = conn.recv()
        except (OSError, EOFError) as exc:
            self._stop()
            raise InvalidArgument(OVER_BUDGET) from exc
        finally:
            self._lock.release()
        if outcome == "error":
            raise value
        return value, seconds

    def _restart(self) -> None:
        with self._lock:
            try:
                self._connection()
            except OSError:
                logger.exception("could not start a mapping worker")

    def _connection(self) -> Connection:
        if self._conn is None or self._process is None or not self._process.is_alive():
            self._stop()
            ctx = multiprocessing.get_context("spawn")  # the serving process has threads
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_serve, args=(child,), name="keyless-mapping", daemon=True)
            process.start()
            child.close()
            self._process, self._conn = process, parent
            # Its start (an interpreter, cel-cpp) is not an evaluation's: the budget starts once it is ready.
            if not parent.poll(STARTUP_SECONDS) or parent.recv() != "ready":
                self._stop()
                raise OSError("the mapping worker did not start")
        return self._conn

    def _stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(1)
        self._process = self._conn = None

    def close(self) -> None:
        with self._lock:
            self._stop()


def _serve(conn: Connection) -> None:
    """The child: compile each mapping once (by the parent's id of it), apply it, answer with the
    identity or the refusal and the seconds the evaluation took."""
    compiled: dict[int, CompiledMapping] = {}
    conn.send("ready")
    while True:
        try:
            key, mapping, condition, provider_type, assertion = conn.recv()
        except EOFError:
            return
        start = time.thread_time()
        try:
            program = compiled.get(key)
            if program is None or program.attribute_mapping != mapping or program.attribute_condition != condition:
                if len(compiled) > 1000:
                    compiled.clear()
                program = compiled[key] = compile_mapping(mapping, condition, provider_type=provider_type)
            start = time.thread_time()
            answer: tuple[str, Any, float] = ("ok", apply(program, assertion), 0.0)
        except KeylessError as error:
            answer = ("error", error, 0.0)
        conn.send((answer[0], answer[1], time.thread_time() - start))
