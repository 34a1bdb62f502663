"""Writes a gcloud named configuration that points every API at a Keyless server.

gcloud keeps named configurations as INI files `configurations/config_NAME` in its config
directory (`$CLOUDSDK_CONFIG`, else ~/.config/gcloud); we write only that one file, so no
other configuration, credential or the active-configuration choice is touched. gcloud
authenticates with the bearer token it reads from `auth/access_token_file` on every command.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path

# gcloud API names -> our path prefixes (see keyless.app.PREFIXES and the README). gcloud 528
# has no `sts` override property (it reaches STS only through credential files' URLs, and its
# introspection through auth/token_introspection_endpoint), so none is written for it.
GCLOUD_APIS = ("iam", "cloudresourcemanager", "iamcredentials", "container", "storage",
               "secretmanager", "logging", "serviceusage", "pubsub",
               "cloudasset")


def gcloud_config_dir() -> Path:
    env = os.environ.get("CLOUDSDK_CONFIG")
    return Path(env) if env else Path.home() / ".config" / "gcloud"


def write_configuration(name: str, server: str, token_file: Path, project: str | None, *,
                        disable_prompts: bool = False) -> Path:
    """Create or replace the named configuration; return its path. Prompts stay as gcloud has them
    (interactive questions, as against Google) unless `disable_prompts` sets `core/disable_prompts`,
    which turns each question into its default answer or, where there is none, an error
    (issue #23 item 10: seed 002's KSA-only binding asks which condition to use)."""
    if not name or not all(c.isalnum() or c == "-" for c in name) or not name[0].isalpha():
        raise ValueError(f"invalid configuration name {name!r}: use letters, digits and hyphens")
    directory = gcloud_config_dir() / "configurations"
    directory.mkdir(parents=True, exist_ok=True)
    cfg = configparser.ConfigParser()
    cfg["core"] = {"disable_usage_reporting": "True", "check_gce_metadata": "False"}
    if disable_prompts:
        cfg["core"]["disable_prompts"] = "True"
    if project:
        cfg["core"]["project"] = project
    base = server.rstrip("/")
    # gcloud asks STS's introspection (RFC 7662) for the account of a direct-federation
    # credentials file (no service account); its hidden property moves it off Google (issue #19).
    cfg["auth"] = {"access_token_file": str(token_file.resolve()),
                   "token_introspection_endpoint": f"{base}/sts/v1/introspect"}
    cfg["api_endpoint_overrides"] = {api: f"{base}/{api}/" for api in GCLOUD_APIS}
    # gcloud storage URL-joins `b/...` onto its override, so it must carry the version.
    cfg["api_endpoint_overrides"]["storage"] = f"{base}/storage/v1/"
    # `gcloud storage sign-url` writes signed URLs for this host and signs its Host header as the
    # host part of it (no path), so it is the server's root: Keyless serves signed URLs at any path.
    cfg["storage"] = {"gs_xml_endpoint_url": base}
    cfg["component_manager"] = {"disable_update_check": "True"}
    # Without an explicit environment gcloud looks up metadata.google.internal once per
    # config dir to fill its User-Agent, even with check_gce_metadata off.
    cfg["metrics"] = {"environment": "keyless"}
    cfg["survey"] = {"disable_prompts": "True"}
    path = directory / f"config_{name}"
    with path.open("w") as f:
        cfg.write(f)
    return path
