"""Push subscriptions (https://cloud.google.com/pubsub/docs/push): Keyless POSTs each message
to the subscription's `pushConfig.pushEndpoint` and acks it on 102, 200, 201, 202 or 204; any
other answer, a refused connection or no answer within the ack deadline is a nack, retried after
the subscription's retryPolicy backoff or, without one, Google's push backoff (100 ms doubling up
to 60 s), until the dead-letter policy (if any) forwards it. The body is Google's wrapper
(`{"message": {...}, "subscription": ..., "deliveryAttempt"?}`), or with `noWrapper` the raw data
with the metadata in `x-goog-pubsub-*` headers and the attributes as headers when `writeMetadata`
(https://cloud.google.com/pubsub/docs/payload-unwrapping). With `oidcToken`, each request carries
`Authorization: Bearer <ID token>` of that service account, as Google's
(https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions): aud the configured
audience or the endpoint URL, email, email_verified, sub; verifiable at /oauth2/v3/certs.

Endpoints must be loopback (127.0.0.0/8 or [::1], as IP literals): an identity server that
POSTs signed tokens and message data to any URL a caller names would be a server-side request
forgery tool inside whatever network it runs in, and a name would need DNS (rebinding). Redirects
are not followed and no proxy is used, for the same reason.

Delivery runs on a thread of the serving process (`Pusher`), woken after publishes and otherwise
every second: each round leases deliverable messages of every push subscription (the same lease
as a pull, so several processes never push one message at once) and pushes them with bounded
concurrency.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from keyless.background import Worker
from keyless.clock import now as clock_now
from keyless.pubsub import messages, names, notify
from keyless.pubsub.push_config import service_account_of
from keyless.store.db import Database
from keyless.store.models import PsDelivery, PsSubscription

logger = logging.getLogger("keyless.pubsub")
ACKED = frozenset({102, 200, 201, 202, 204})
MAX_CONCURRENT = 8  # requests in flight per serving process
BATCH = 32  # messages leased per subscription per round
FIRST_BACKOFF = 0.1  # Google's push backoff: 100 ms, doubling ...
MAX_BACKOFF = 60.0  # ... up to 60 s
USER_AGENT = "CloudPubSub-Google"
# headers an attribute must not set: the token, and what frames the request
RESERVED_HEADERS = frozenset({"authorization", "host", "content-length", "transfer-encoding", "connection",
                              "user-agent", "te", "upgrade", "expect", "proxy-authorization", "cookie"})
# (service account email, audience) -> an ID token, or None if the account is gone or disabled
Signer = Callable[[str, str], str | None]


def push_backoff(sub: PsSubscription, attempts: int) -> float:
    """Seconds before a nacked push is tried again (attempts: deliveries so far, >= 1)."""
    retry = (sub.body or {}).get("retryPolicy")
    if retry:
        return messages.retry_backoff(retry, attempts)
    return float(min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** max(0, attempts - 1)))


def request_of(name: str, push: dict[str, Any], received: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """The headers and body of one push request to subscription `name` (without Authorization)."""
    message = received["message"]
    headers = {"user-agent": USER_AGENT}
    if "noWrapper" in push:
        headers["content-type"] = "application/octet-stream"
        if push["noWrapper"].get("writeMetadata"):
            headers.update({"x-goog-pubsub-subscription-name": name,
                            "x-goog-pubsub-message-id": message["messageId"],
                            "x-goog-pubsub-publish-time": message["publishTime"]})
            if message.get("orderingKey"):
                headers["x-goog-pubsub-ordering-key"] = message["orderingKey"]
            if "deliveryAttempt" in received:
                headers["x-goog-pubsub-delivery-attempt"] = str(received["deliveryAttempt"])
            for k, v in (message.get("attributes") or {}).items():
                # a publisher may set Content-Type (Google's example), never what Keyless vouches for
                if k.lower() not in RESERVED_HEADERS and not k.lower().startswith("x-goog-") and _header_safe(k, v):
                    headers[k.lower()] = v
        return headers, base64.b64decode(message.get("data", ""))
    wrapped = {**message, "message_id": message["messageId"], "publish_time": message["publishTime"]}
    body: dict[str, Any] = {"message": wrapped, "subscription": name}
    if "deliveryAttempt" in received:
        body["deliveryAttempt"] = received["deliveryAttempt"]
    headers["content-type"] = "application/json"
    return headers, json.dumps(body).encode()


def _header_safe(key: str, value: str) -> bool:
    """An attribute that can be an HTTP header as it is (a token name, a value without controls)."""
    return key.isascii() and all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in key) and bool(key) \
        and value.isascii() and all(c == "\t" or 32 <= ord(c) < 127 for c in value)


class Pusher(Worker):
    """The push thread of one serving process."""

    def __init__(self, db: Database, sign: Signer, *, interval: float = 1.0) -> None:
        super().__init__(interval, name="keyless-pubsub-push", logger=logger, failure="pushing Pub/Sub messages failed",
                         first_round_at_once=True)
        self._db, self._sign = db, sign
        self._pool = ThreadPoolExecutor(MAX_CONCURRENT, thread_name_prefix="keyless-push")
        # no proxy from the environment, no redirects: requests go to the loopback endpoint or nowhere
        self._http = httpx.Client(trust_env=False, follow_redirects=False,
                                  limits=httpx.Limits(max_connections=MAX_CONCURRENT))

    def start(self) -> bool:
        started = super().start()
        if started:  # its first round comes at once: a publish meanwhile is not missed
            notify.on_publish(self.wake)
        return started

    def stop(self) -> None:
        super().stop()
        notify.off_publish(self.wake)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def round(self) -> float:
        return self.run_once()

    def run_once(self) -> float:
        """One round over every push subscription; seconds until the next round is due: none if a
        batch was full, else when the earliest retry or lease ends (at most the interval)."""
        with self._db.read() as s:
            subs = [(sub.uid, sub.project_id, sub.subscription_id)
                    for sub in s.scalars(select(PsSubscription)) if (sub.body or {}).get("pushConfig")]
        full = False
        for _, project_id, subscription_id in subs:
            if self.stopping:
                break
            full = self._push_batch(project_id, subscription_id) or full
        return 0.0 if full else self._next_due([uid for uid, _, _ in subs])

    def _push_batch(self, project_id: str, subscription_id: str) -> bool:
        """Push what one subscription has deliverable (a batch); whether the batch was full."""
        from keyless.pubsub.subscriptions import find_subscription

        with self._db.write() as s:
            sub = find_subscription(s, project_id, subscription_id)
            push = ((sub.body or {}).get("pushConfig") or {}) if sub is not None else {}
            if sub is None or not push or (sub.body or {}).get("detached"):
                return False
            leased = messages.pull(s, sub, BATCH, lambda name: messages.topic_of(s, name))
            deadline = sub.ack_deadline_seconds
            name = names.name(sub.project_id, "subscriptions", sub.subscription_id)
        if not leased:
            return False
        token = None
        account = service_account_of(push)
        if account is not None:
            token = self._sign(account, push["oidcToken"].get("audience") or push["pushEndpoint"])
        if account is not None and token is None:  # the account is gone or disabled: a failed push
            outcomes = [False] * len(leased)
        else:
            # one ordering key's messages go one at a time, in order, and stop at its first failure
            # (the rest are nacked unsent); messages without a key go concurrently
            queues: dict[str, list[int]] = {}
            for i, r in enumerate(leased):
                key = r["message"].get("orderingKey", "")
                queues.setdefault(key or f"\0{i}", []).append(i)

            def send(indexes: list[int]) -> list[tuple[int, bool]]:
                results: list[tuple[int, bool]] = []
                for i in indexes:
                    sent = bool(not results or results[-1][1]) and self._post(name, push, leased[i], token, deadline)
                    results.append((i, sent))
                return results

            results = dict(pair for chunk in self._pool.map(send, queues.values()) for pair in chunk)
            outcomes = [results[i] for i in range(len(leased))]
        with self._db.write() as s:
            sub = find_subscription(s, project_id, subscription_id)
            if sub is None:
                return False
            done = [r["ackId"] for r, ok in zip(leased, outcomes, strict=True) if ok]
            failed = [r["ackId"] for r, ok in zip(leased, outcomes, strict=True) if not ok]
            if done:
                messages.acknowledge(s, sub, done)
            if failed:
                messages.nack_after(s, sub, failed, lambda attempts: push_backoff(sub, attempts))
        return len(leased) >= BATCH

    def _post(self, name: str, push: dict[str, Any], received: dict[str, Any], token: str | None,
              deadline: int) -> bool:
        headers, body = request_of(name, push, received)
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        try:  # the status is all that counts: the response body is never read
            with self._http.stream("POST", push["pushEndpoint"], content=body, headers=headers,
                                   timeout=deadline) as response:
                return response.status_code in ACKED
        except httpx.HTTPError:
            return False

    def _next_due(self, uids: list[str]) -> float:
        if not uids:
            return self._interval
        when = clock_now()
        with self._db.read() as s:
            # only what becomes deliverable later: a message deliverable now but not pushed (its
            # ordering key is leased) must not make the round spin
            due = s.scalar(select(PsDelivery.visible_at).where(PsDelivery.subscription_uid.in_(uids),
                                                              PsDelivery.acked.is_(False),
                                                              PsDelivery.visible_at > when)
                           .order_by(PsDelivery.visible_at).limit(1))
        if due is None:
            return self._interval
        return max(0.0, (_aware(due) - when).total_seconds())


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)

