"""The console's fixtures: seed 001's setup made by `keyless quickstart` on a real `keyless serve`,
and Debian's chromium driven headless by Playwright (never `playwright install`: no downloads)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from keyless.console import sessions
from tests.conftest import KeylessServer, fresh_database_url

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PROJECT = "my-project"
NUMBER = "123456789"
POOL = f"projects/{NUMBER}/locations/global/workloadIdentityPools/github-pool"
PROVIDER = f"{POOL}/providers/github-provider"
DEPLOY_SA = f"deploy-sa@{PROJECT}.iam.gserviceaccount.com"
OTHER_SA = f"other-sa@{PROJECT}.iam.gserviceaccount.com"  # the planted mistake: no workloadIdentityUser binding


def seed_001(tmp: Path) -> KeylessServer:
    """A server with seed 001's federation, made as a user makes it (`keyless quickstart`)."""
    srv = KeylessServer(tmp / "data", fresh_database_url(), "--allow-insecure-issuers")
    out = srv.keyless("quickstart", "--output-file", str(tmp / "credentials.json"))
    assert out.returncode == 0, out.stderr
    return srv


class CookieNames(NamedTuple):
    session: str
    csrf: str


def names(srv: KeylessServer, secure: bool = False) -> CookieNames:
    """The console's cookie names on `srv` (made specific to its URL; `__Host-` over TLS)."""
    return CookieNames(sessions.cookie_name(sessions.SESSION_COOKIE, srv.base_url, secure),
                       sessions.cookie_name(sessions.CSRF_COOKIE, srv.base_url, secure))


def sign_in_link(srv: KeylessServer) -> str:
    out = srv.keyless("console", "--no-browser")
    assert out.returncode == 0, out.stderr
    found = re.search(r"(http://\S+/console/signin\?code=\S+)", out.stdout)
    assert found, out.stdout
    return found.group(1)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright  # the [test] extra

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
