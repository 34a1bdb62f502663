"""A subscription's PushConfig (https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions#pushconfig),
validated as Keyless stores it. Endpoints must be loopback IP literals (127.0.0.0/8, [::1]): an
identity server that POSTs signed ID tokens and message data to any URL a caller names would be a
server-side request forgery tool inside whatever network it runs in, and a host name would need a
DNS answer that can change between the check and the request (rebinding). Delivery:
keyless.pubsub.push.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from keyless.errors import InvalidArgument

MAX_ENDPOINT = 2048
MAX_AUDIENCE = 2048


def _loopback_url(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_ENDPOINT:
        raise InvalidArgument(f"Invalid push endpoint given (endpoint={str(value)[:100]}).")
    parts = urlsplit(value)
    try:
        host = ipaddress.ip_address(parts.hostname or "")
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        host = None
    if parts.scheme not in ("http", "https") or host is None or not host.is_loopback or parts.username \
            or parts.password:
        raise InvalidArgument(f"Invalid push endpoint given (endpoint={value[:100]}). Keyless pushes only to "
                              "loopback addresses (http(s)://127.0.0.1/... or http(s)://[::1]/...).")
    return value


def validate_push_config(value: Any, where: str = "subscription.push_config") -> dict[str, Any]:
    """A PushConfig as Keyless stores it; {} for a pull subscription."""
    if not isinstance(value, dict):
        raise InvalidArgument(f"Invalid value at '{where}': expected an object.")
    for k in value:
        if k not in ("pushEndpoint", "attributes", "oidcToken", "pubsubWrapper", "noWrapper"):
            raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{k[:100]}\" at '{where}': "
                                  "Cannot find field.")
    if not value.get("pushEndpoint"):
        if value.get("oidcToken") or value.get("noWrapper"):
            raise InvalidArgument("A push endpoint is required for a push configuration.")
        return {}
    out: dict[str, Any] = {"pushEndpoint": _loopback_url(value["pushEndpoint"])}
    attributes = value.get("attributes")
    if attributes:
        if not isinstance(attributes, dict) or len(attributes) > 10 or not all(
                isinstance(k, str) and isinstance(v, str) and len(k) <= 256 and len(v) <= 256
                for k, v in attributes.items()):
            raise InvalidArgument(f"Invalid value at '{where}.attributes'.")
        out["attributes"] = dict(attributes)
    oidc = value.get("oidcToken")
    if oidc:
        if not isinstance(oidc, dict) or set(oidc) - {"serviceAccountEmail", "audience"}:
            raise InvalidArgument(f"Invalid value at '{where}.oidc_token'.")
        email, audience = oidc.get("serviceAccountEmail"), oidc.get("audience", "")
        if not isinstance(email, str) or not email or len(email) > 320 or "@" not in email:
            raise InvalidArgument("Invalid push config: oidc_token.service_account_email must be a service "
                                  "account's email.")
        if not isinstance(audience, str) or len(audience) > MAX_AUDIENCE:
            raise InvalidArgument(f"Invalid value at '{where}.oidc_token.audience'.")
        out["oidcToken"] = {"serviceAccountEmail": email, **({"audience": audience} if audience else {})}
    wrapper = value.get("noWrapper")
    if wrapper is not None and value.get("pubsubWrapper") is not None:
        raise InvalidArgument("Only one of pubsub_wrapper and no_wrapper may be set.")
    if wrapper is not None:
        if not isinstance(wrapper, dict) or set(wrapper) - {"writeMetadata"} \
                or not isinstance(wrapper.get("writeMetadata", False), bool):
            raise InvalidArgument(f"Invalid value at '{where}.no_wrapper'.")
        out["noWrapper"] = {"writeMetadata": True} if wrapper.get("writeMetadata") else {}
    elif value.get("pubsubWrapper") is not None:
        out["pubsubWrapper"] = {}
    return out


def service_account_of(push: dict[str, Any]) -> str | None:
    """The service account whose ID tokens the pushes carry (the creator must hold actAs on it)."""
    return (push.get("oidcToken") or {}).get("serviceAccountEmail")
