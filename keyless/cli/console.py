"""`keyless console`: a one-time sign-in link to the web console as the bootstrap owner (asked of
the running server with the owner's token from the data dir), printed and opened in a browser."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from keyless.cli.quickstart import Api
from keyless.config import Settings


def cmd_console(args: argparse.Namespace, settings: Settings) -> int:
    api = Api(settings)
    api.wait_until_serving()
    link = api.call("POST", "/console/v1/signInLinks", {})
    print(f"Sign in to the Keyless console as {link['member']} (this link works once, for 5 minutes):\n"
          f"  {link['url']}", flush=True)
    if not args.no_browser:
        try:
            import webbrowser

            webbrowser.open(link["url"])
        except Exception:  # no browser here (a server, CI): the printed link is the way
            pass
    sys.stdout.flush()
    return 0


def register(sub: Any, store_flags: Callable[[argparse.ArgumentParser], None],
             settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    p = sub.add_parser("console", help="print (and open) a one-time sign-in link to the web console as the owner")
    p.add_argument("--no-browser", action="store_true", help="only print the link")
    store_flags(p)
    p.set_defaults(func=lambda a: cmd_console(a, settings_of(a)))
