"""Routing by `Host`: Keyless answers as Google's own API hosts (`sts.googleapis.com`, ...) and as
those of a custom universe domain (`sts.keyless.test`), besides its path prefixes.

Google's APIs share paths (`/v1/projects/...` is Resource Manager's, IAM Credentials' and Secret
Manager's alike), so a request that names an API host is routed to that API's prefix. Hosts whose
paths already start with the prefix (`storage.googleapis.com/storage/v1/...`,
`www.googleapis.com/oauth2/v3/certs`) keep their path; on the others a path that is not Google's
(`sts.googleapis.com/sts/v1/token`) is not found, as on Google. Any other host is served by prefix, as
before. Research: ../shared/research/google-auth-clients.md section 0.5. A Cloud Storage signed
URL is routed by its query instead (`signed_url`): Google's clients put it at /BUCKET/OBJECT of any
host they are given.
"""

from __future__ import annotations

GOOGLE_DOMAIN = "googleapis.com"

# First label of the API's host -> the path prefix it is served under (None: paths already carry it).
API_HOSTS: dict[str, str | None] = {
    "sts": "sts",
    "iamcredentials": "iamcredentials",
    "iam": "iam",
    "cloudresourcemanager": "cloudresourcemanager",
    "serviceusage": "serviceusage",
    "oauth2": "oauth2",
    "secretmanager": "secretmanager",
    "pubsub": "pubsub",
    "logging": "logging",
    "container": "container",
    "cloudasset": "cloudasset",
    "storage": None,  # /storage/v1, /upload/storage/v1, /download/storage/v1
    "www": None,  # www.googleapis.com/oauth2/v3/certs, /robot/v1/metadata/x509/...
}


# APIs with regional endpoints `LABEL.LOCATION.rep.DOMAIN` (Secret Manager's regional secrets,
# https://cloud.google.com/secret-manager/regional-secrets/regional-secrets-overview) -> prefix.
REGIONAL_HOSTS: dict[str, str] = {"secretmanager": "secretmanager"}


def hostnames(universe_domain: str | None = None) -> list[str]:
    """Every hostname Keyless answers as (for its TLS certificate and hosts files)."""
    names = [f"{label}.{GOOGLE_DOMAIN}" for label in API_HOSTS]
    if universe_domain:
        names += [f"{label}.{universe_domain}" for label in API_HOSTS]
    return names


SENT_PATH = "keyless.sent_path"  # the ASGI scope's raw path as sent, kept when a signed URL is re-routed


def signed_url(query: bytes) -> bool:
    """Whether a request's query carries a Cloud Storage V4 signature (X-Goog-Signature, in any
    spelling): such a request is the XML API's whatever its host and path (keyless.api.storage.xml_api)."""
    return b"x-goog-signature=" in query.lower() if query else False


class HostRouter:
    """Rewrites the path of requests addressed to an API host; the rest pass untouched."""

    def __init__(self, universe_domain: str | None = None) -> None:
        self._prefix: dict[bytes, str | None] = {}
        self._regional: dict[tuple[bytes, bytes], str] = {}  # (label, "rep.DOMAIN") -> prefix
        for domain in filter(None, (GOOGLE_DOMAIN, universe_domain)):
            for label, prefix in API_HOSTS.items():
                self._prefix[f"{label}.{domain}".encode()] = prefix
            for label, prefix in REGIONAL_HOSTS.items():
                self._regional[(label.encode(), f"rep.{domain}".encode())] = prefix

    def prefix_for(self, host: bytes | None) -> str | None:
        """The prefix to put before the path of a request that arrived for `host`; None when the
        request is served as it came (not an API host, or one whose paths carry the prefix)."""
        if not host or host.startswith(b"["):
            return None
        name = host.split(b":", 1)[0].lower()
        found = self._prefix.get(name)
        if found is None and name.count(b".") >= 3:  # secretmanager.us-central1.rep.googleapis.com
            label, location, rest = name.split(b".", 2)
            if 0 < len(location) <= 40 and location.replace(b"-", b"").isalnum():
                return self._regional.get((label, rest))
        return found
