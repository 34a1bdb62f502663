"""Settings of one Keyless server, from flags and KEYLESS_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_OWNER = "owner@keyless.dev"


def default_data_dir() -> Path:
    return Path(os.environ.get("KEYLESS_DATA_DIR") or Path.home() / ".keyless")


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str | None = None  # None: SQLite in data_dir
    # Object bytes (Cloud Storage); None: DATA_DIR/storage. Servers sharing one database must
    # share this directory too (a shared volume), since the database holds only the objects' rows.
    storage_dir: Path | None = None
    public_url: str | None = None  # how clients reach us (key files' token_uri, issuer URLs)
    owner: str = DEFAULT_OWNER  # the bootstrap owner, a user: member
    allow_insecure_issuers: bool = False  # accept http:// OIDC issuers on loopback (local testing)
    aws_sts_endpoint: str | None = None  # where AWS subject tokens are verified (default: AWS itself)
    max_body_bytes: int = 10 * 1024 * 1024
    tls_port: int | None = None  # also serve HTTPS here, as Google's hosts (keyless.tls)
    universe_domain: str | None = None  # answer as SERVICE.UNIVERSE too (e.g. keyless.test)
    tls_cert_lifetime: int = 7 * 24 * 3600  # seconds a server certificate lives (reissued at a third left)
    # Audit log retention (keyless.audit.retention), Google's defaults: Admin Activity and System
    # Event 400 days, Data Access 30 days; and at most this many entries in all (0: no bound).
    audit_retention_days: int = 400
    audit_data_access_retention_days: int = 30
    audit_max_entries: int = 10_000_000

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def blob_dir(self) -> Path:
        return Path(self.storage_dir) if self.storage_dir else self.data_dir / "storage"

    @property
    def owner_token_file(self) -> Path:
        return self.data_dir / "owner.token"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        s = cls()
        env = os.environ
        if env.get("KEYLESS_DATABASE_URL"):
            s.database_url = env["KEYLESS_DATABASE_URL"]
        if env.get("KEYLESS_STORAGE_DIR"):
            s.storage_dir = Path(env["KEYLESS_STORAGE_DIR"])
        if env.get("KEYLESS_PUBLIC_URL"):
            s.public_url = env["KEYLESS_PUBLIC_URL"]
        if env.get("KEYLESS_ALLOW_INSECURE_ISSUERS", "").lower() in ("1", "true", "yes"):
            s.allow_insecure_issuers = True
        if env.get("KEYLESS_AWS_STS_ENDPOINT"):
            s.aws_sts_endpoint = env["KEYLESS_AWS_STS_ENDPOINT"]
        if env.get("KEYLESS_UNIVERSE_DOMAIN"):
            s.universe_domain = env["KEYLESS_UNIVERSE_DOMAIN"]
        if env.get("KEYLESS_HOST"):
            s.host = env["KEYLESS_HOST"]
        if env.get("KEYLESS_PORT"):
            s.port = int(env["KEYLESS_PORT"])
        if env.get("KEYLESS_TLS_PORT"):
            s.tls_port = int(env["KEYLESS_TLS_PORT"])
        if env.get("KEYLESS_OWNER"):
            s.owner = env["KEYLESS_OWNER"]
        for name in ("audit_retention_days", "audit_data_access_retention_days", "audit_max_entries",
                     "tls_cert_lifetime"):
            if env.get(f"KEYLESS_{name.upper()}"):
                setattr(s, name, int(env[f"KEYLESS_{name.upper()}"]))
        for k, v in overrides.items():
            if v is not None:
                setattr(s, k, v)
        s.data_dir = Path(s.data_dir)
        return s
