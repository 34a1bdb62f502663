"""End-to-end fixtures: Google's Node.js clients, installed once per run (tests/e2e/nodejs.py)."""

from __future__ import annotations

import shutil

import pytest

from tests.e2e import nodejs

INSTALL_REPORT = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def node_clients(request: pytest.FixtureRequest) -> None:
    """google-auth-library, @google-cloud/storage, @google-cloud/secret-manager and @google-cloud/pubsub
    in node_modules."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the Node.js client tests need Node.js >= 18 and npm on PATH")
    request.config.stash[INSTALL_REPORT] = nodejs.install()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if INSTALL_REPORT in config.stash:
        terminalreporter.write_line(config.stash[INSTALL_REPORT])
