"""`keyless env`: what to set so unmodified clients reach Keyless as Google's hosts over HTTPS
(the CA to trust, the universe domain, the hosts entries), and optionally a hosts fragment
written into a file the user names (e.g. /etc/hosts, or a pod's /etc/netns/NAME/hosts)."""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyless.api.hosts import hostnames
from keyless.config import Settings

if TYPE_CHECKING:
    from keyless.tls.ca import TlsFiles

BEGIN, END = "# BEGIN keyless", "# END keyless"
# The variables each client reads for its CA bundle (research/google-auth-clients.md); Node's https
# (google-auth-library, @google-cloud/*'s REST) adds NODE_EXTRA_CA_CERTS to its roots, grpc-js reads
# GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (tests/e2e/test_node_clients.py).
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
                "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE", "NODE_EXTRA_CA_CERTS")


def environment(files: TlsFiles, universe_domain: str | None, tls_port: int) -> dict[str, str]:
    """The variables to export: the CA bundle (system roots plus Keyless's, since these variables
    replace the roots), and the universe (with its port unless 443) for google-auth and gcloud."""
    env = {name: str(files.bundle) for name in CA_VARIABLES}
    if universe_domain:
        universe = universe_domain if tls_port == 443 else f"{universe_domain}:{tls_port}"
        env["GOOGLE_CLOUD_UNIVERSE_DOMAIN"] = universe
        env["CLOUDSDK_CORE_UNIVERSE_DOMAIN"] = universe
    return env


def hosts_fragment(address: str, universe_domain: str | None) -> str:
    names = [n for n in hostnames(universe_domain) if not n.endswith(".googleapis.com")] if universe_domain \
        else hostnames(None)
    return "\n".join([BEGIN, *(f"{address} {name}" for name in names), END]) + "\n"


def write_hosts(path: Path, fragment: str) -> None:
    """Put the fragment in `path`, replacing an earlier one (atomically; the rest is kept)."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + tail.lstrip("\n")
    if text and not text.endswith("\n"):
        text += "\n"
    tmp = path.with_name(f".{path.name}.keyless.tmp")
    tmp.write_text(text + fragment)
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o777)
    os.replace(tmp, path)


def cmd_env(args: argparse.Namespace, settings: Settings) -> int:
    from keyless.tls.ca import ensure  # cryptography: here, as every `keyless` command builds this parser
    from keyless.tls.names import certificate_names

    files = ensure(settings.data_dir, certificate_names(settings))
    port = settings.tls_port or 443
    print("# Trust Keyless's local CA (these variables replace the system's roots: the bundle has both)")
    for name, value in environment(files, settings.universe_domain, port).items():
        print(f"export {name}={shlex.quote(value)}")
    fragment = hosts_fragment(args.address, settings.universe_domain)
    if args.write_hosts:
        write_hosts(Path(args.write_hosts), fragment)
        print(f"# wrote the hosts entries to {args.write_hosts}")
    else:
        print("# hosts entries (or: keyless env --write-hosts /etc/hosts)")
        print("".join(f"# {line}\n" for line in fragment.splitlines()), end="")
    return 0


def register(sub: Any, store_flags: Callable[[argparse.ArgumentParser], None],
             settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    env = sub.add_parser("env", help="print what to set so unmodified clients reach Keyless as Google's hosts")
    env.add_argument("--universe-domain", help="the universe Keyless answers as (as given to serve)")
    env.add_argument("--tls-port", type=int, help="the HTTPS port of `keyless serve --tls-port` (default 443)")
    env.add_argument("--address", default="127.0.0.1", help="the address the hostnames resolve to")
    env.add_argument("--write-hosts", metavar="FILE", help="write the hosts entries into FILE (e.g. /etc/hosts)")
    store_flags(env)
    env.set_defaults(func=lambda a: cmd_env(a, settings_of(a)))
