"""`keyless tls`: the local CA's state and its rotation (keyless.tls.ca). A rotation has two
steps so no client stops trusting Keyless: `rotate-ca` adds a new CA to the trust files while
the current one still signs; `rotate-ca --finish` makes the new CA the signer and drops the old.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from keyless.config import Settings


def register(sub: Any, store_flags: Callable[[argparse.ArgumentParser], None],
             settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    tls = sub.add_parser("tls", help="Keyless's local certificate authority (HTTPS and gRPC as Google's hosts)")
    tsub = tls.add_subparsers(dest="tls_command", required=True)
    rotate = tsub.add_parser("rotate-ca", help="start a CA rotation (both CAs trusted, the old one signs); "
                                               "--finish switches to the new CA and drops the old one")
    rotate.add_argument("--finish", action="store_true",
                        help="make the new CA the signer and remove the old one from ca.pem and bundle.pem")
    store_flags(rotate)
    rotate.set_defaults(func=lambda a: cmd_rotate_ca(a, settings_of(a)))


def cmd_rotate_ca(args: argparse.Namespace, settings: Settings) -> int:
    from keyless.tls import ca

    trust = settings.data_dir / "tls" / "ca.pem"
    if args.finish:
        cert = ca.finish_ca_rotation(settings.data_dir)
        print(f"The new CA ({cert.subject.rfc4514_string()}) now signs; {trust} and bundle.pem trust it alone.")
        print("Running servers reissue their certificate from it within a minute.")
    else:
        cert = ca.rotate_ca(settings.data_dir)
        print(f"Staged a new CA ({cert.subject.rfc4514_string()}): {trust} and bundle.pem now carry both CAs, "
              f"the current one still signs.")
        print("Once clients have reloaded their trust (restart them), run: keyless tls rotate-ca --finish")
    return 0
