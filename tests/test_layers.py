"""The layers of the code base (issue #20): keyless.iam is domain logic that keyless.state builds
on, so no keyless.iam module may import the server's state (it receives the store, key ring,
authorizer... it needs); keyless/api/ holds one package per API and only the wire helpers the
APIs share."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import keyless.api
import keyless.iam

pytestmark = pytest.mark.store_independent

ROOT = Path(__file__).resolve().parents[1]
# The modules of keyless/api/ that are no API of their own: helpers several APIs use.
SHARED_API_HELPERS = {"__init__", "errors", "forms", "grpc_transcoding", "hosts", "http", "iam_methods", "scopes",
                      "system_parameters"}


def test_iam_modules_import_no_server_state() -> None:
    """Each keyless.iam module, imported in a fresh interpreter, leaves keyless.state unimported."""
    modules = sorted(f"keyless.iam.{m.name}" for m in pkgutil.iter_modules(keyless.iam.__path__))
    assert "keyless.iam.credentials" in modules and "keyless.iam.self_signed" in modules
    check = ("import importlib, sys\n"
             f"for name in {modules!r}:\n"
             "    importlib.import_module(name)\n"
             "    if 'keyless.state' in sys.modules:\n"
             "        sys.exit(f'{name} imports keyless.state')\n")
    run = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_api_holds_packages_and_shared_helpers_only() -> None:
    """A Google API is a package of keyless/api/ that keyless.app mounts; a loose module there is
    a shared wire helper or a service module that belongs in its package."""
    api = Path(keyless.api.__file__).parent
    loose = {p.stem for p in api.glob("*.py")}
    assert loose == SHARED_API_HELPERS
    packages = {m.name for m in pkgutil.iter_modules(keyless.api.__path__) if m.ispkg}
    assert {"storage", "kubernetes", "secretmanager", "iam", "iamcredentials", "metadata", "pubsub"} <= packages
    for directory in (p for p in api.iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert (directory / "__init__.py").is_file(), f"{directory} is no package"
