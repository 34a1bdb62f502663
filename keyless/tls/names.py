"""The names Keyless's server certificate covers: Google's API hosts it implements, those of the
configured universe domain, and the addresses it is reached at directly."""

from __future__ import annotations

from keyless.api.hosts import hostnames
from keyless.config import Settings


def certificate_names(settings: Settings) -> list[str]:
    names = hostnames(settings.universe_domain) + ["localhost", "127.0.0.1", "::1"]
    if settings.host not in ("0.0.0.0", "::", "") and settings.host not in names:
        names.append(settings.host)  # a DNS name or an address: ca._alt_names tells them apart
    return names
