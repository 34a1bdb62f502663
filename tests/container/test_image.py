"""The container image (Containerfile, issue #22 item 1), built and run with podman as a user runs
it: `keyless serve` inside on published HTTP and TLS ports, its data in a named volume, driven from
the host by the real gcloud (`keyless configure-gcloud --server URL`) and google-auth (an
external_account file exchanging at the container's STS), pods refused or run as the image says.

The base image is made from Debian's packages with mmdebstrap (no image registry needed) and kept,
like the built image, in podman's store and /var/tmp, keyed by what they are made from: a second
run builds nothing. pip inside the build reads this machine's pip configuration, CA bundle and
local indexes, mounted read-only (`build_volumes`); where there is none it reaches PyPI directly.
$KEYLESS_TEST_CONTAINER_BASE names another base (e.g. docker.io/library/python:3.12-slim).
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import google.auth.exceptions
import google.auth.transport.requests
import httpx
import pytest
from google.auth import identity_pool

from keyless.federation.cred_config import external_account, file_source
from tests.conftest import GCLOUD, free_port

pytestmark = pytest.mark.store_independent  # the image's server is SQLite in its volume either way

ROOT = Path(__file__).resolve().parents[2]
PODMAN = shutil.which("podman")
CACHE = Path(os.environ.get("KEYLESS_TEST_CONTAINER_CACHE", "/var/tmp/keyless-container"))
# The base: Debian's python3 and nothing else; documentation left out (dpkg's path-exclude).
BASE_COMMAND = ["mmdebstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "info", "locale")),
                "bookworm"]
# What the image is made of (the Containerfile's COPY lines): its tag is their hash.
IMAGE_INPUTS = ("Containerfile", ".containerignore", "pyproject.toml", "README.md", "keyless")
LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")
PROJECT = "my-project"
NUMBER = "123456789"
PROVIDER = f"projects/{NUMBER}/locations/global/workloadIdentityPools/github-pool/providers/github-provider"
SA = f"deploy-sa@{PROJECT}.iam.gserviceaccount.com"
REPOSITORY = "my-org/my-repo"  # the repository quickstart's provider condition and binding admit


def podman(*args: str, check: bool = True, timeout: float = 900,
           stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Every podman call of this module: runc and cgroupfs, as podman runs on these machines."""
    assert PODMAN is not None
    result = subprocess.run([PODMAN, "--runtime", "runc", "--cgroup-manager=cgroupfs", *args], capture_output=True,
                            text=True, timeout=timeout, input=stdin)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def _need_podman() -> None:
    if PODMAN is None:
        pytest.skip("podman is not installed: the container image test needs podman and runc "
                    "(.ci/run installs them: apt-get install podman runc mmdebstrap)")
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed: podman runs the image with --runtime runc (apt-get install runc)")
    if os.geteuid() != 0:
        pytest.skip("the container image test runs podman as root, as CI does (rootless podman is not set up)")


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One builder at a time on this machine (parallel CI legs share podman's store and CACHE)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


def base_image() -> str:
    """The BASE build argument: $KEYLESS_TEST_CONTAINER_BASE, or Debian bookworm's python3 made by
    mmdebstrap (its tarball kept in CACHE, its image in podman's store)."""
    if os.environ.get("KEYLESS_TEST_CONTAINER_BASE"):
        return os.environ["KEYLESS_TEST_CONTAINER_BASE"]
    key = hashlib.sha256(" ".join(BASE_COMMAND).encode()).hexdigest()[:16]
    image = f"localhost/keyless-test-base:{key}"
    if _exists(image):
        return image
    tarball = CACHE / f"base-{key}.tar"
    if not tarball.exists():
        if shutil.which("mmdebstrap") is None:
            pytest.skip("mmdebstrap is not installed: the base image is made from Debian's packages with it "
                        "(apt-get install mmdebstrap), or name one in $KEYLESS_TEST_CONTAINER_BASE")
        partial = tarball.with_suffix(".part.tar")
        result = subprocess.run([*BASE_COMMAND, str(partial)], capture_output=True, text=True, timeout=1200)
        assert result.returncode == 0, result.stderr[-4000:]
        partial.rename(tarball)
    podman("import", str(tarball), image)
    return image


def _pip_config_files() -> list[Path]:
    """pip's configuration files as pip reads them (global, then user, then $PIP_CONFIG_FILE)."""
    files = [Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf"), Path.home() / ".pip" / "pip.conf",
             Path.home() / ".config" / "pip" / "pip.conf"]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    return [f for f in files if f.is_file()]


def build_volumes() -> list[str]:
    """`-v` options giving the build this machine's pip configuration: the files themselves, the
    certificates and constraints they name, and the local indexes and wheel directories (an index
    `file:///X/simple` as its parent X, whose `files/` its pages link to). None where none exist."""
    paths: set[Path] = set()
    for conf in _pip_config_files():
        paths.add(conf.parent if conf.parent.name == "pip" and conf.parent.parent.name == "xdg" else conf)
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(conf)
        for section in parser.sections():
            for key, value in parser.items(section):
                for item in value.split():
                    if key in ("index-url", "extra-index-url") and item.startswith("file://"):
                        path = Path(urlparse(item).path)
                        paths.add(path.parent if path.name == "simple" else path)
                    elif key in ("find-links", "cert", "client-cert", "constraint") and item.startswith(("/", "file://")):
                        paths.add(Path(urlparse(item).path))
    present = {p for p in paths if p.exists()}
    outermost = [p for p in sorted(present) if not any(q in p.parents for q in present)]
    return [f"--volume={p}:{p}:ro" for p in outermost]


def _image_key(base: str) -> str:
    digest = hashlib.sha256(base.encode())
    for name in IMAGE_INPUTS:
        top = ROOT / name
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def image() -> str:
    """The image built from this checkout (once per change of what it is made of)."""
    _need_podman()
    with _locked():
        base = base_image()
        tag = f"localhost/keyless-test:{_image_key(base)}"
        if not _exists(tag):
            podman("build", "--format", "docker", *LIMITS, "--build-arg", f"BASE={base}", *build_volumes(),
                   "--tag", tag, "--file", str(ROOT / "Containerfile"), str(ROOT), timeout=1800)
            # Earlier builds of this test go, with the layers only they use (not a container's, and not
            # the build stage's cached dependency layer, which the next build of a code change reuses).
            listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/keyless-test").stdout
            for old in set(listed.split()) - {tag}:
                podman("rmi", old, check=False)
    return tag


@dataclass
class Container:
    name: str
    port: int
    tls_port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def exec(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *args, check=check, timeout=180)

    def volume(self) -> Path:
        """The data volume's directory on the host."""
        return Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", self.name).stdout.strip())

    def wait_until_healthy(self) -> None:
        import time

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            if podman("container", "inspect", "--format", "{{.State.Running}}", self.name).stdout.strip() != "true":
                break
            time.sleep(0.2)
        raise AssertionError(f"the container did not answer:\n{podman('logs', self.name, check=False).stderr}")


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[Container]:
    """The image run as its README says, its ports published on loopback only. Inside, the server
    listens on the same port numbers as outside, so the public URL (its issuer's, the credential
    files') is right on both sides; its data dir is a named volume."""
    c = Container(f"keyless-test-{uuid.uuid4().hex[:10]}", free_port(), free_port())
    podman("run", "--detach", "--name", c.name, *LIMITS,
           "--publish", f"127.0.0.1:{c.port}:{c.port}", "--publish", f"127.0.0.1:{c.tls_port}:{c.tls_port}",
           "--volume", f"{c.name}:/var/lib/keyless",
           "--env", f"KEYLESS_PORT={c.port}", "--env", f"KEYLESS_TLS_PORT={c.tls_port}",
           "--env", f"KEYLESS_PUBLIC_URL={c.base_url}", "--env", "KEYLESS_ALLOW_INSECURE_ISSUERS=1", image)
    try:
        c.wait_until_healthy()
        quickstart = c.exec("keyless", "quickstart", "--repository", REPOSITORY)
        assert PROVIDER in quickstart.stdout, quickstart.stdout
        yield c
    finally:
        podman("rm", "--force", "--time", "5", c.name, check=False)
        podman("volume", "rm", "--force", c.name, check=False)


def test_the_image_runs_keyless_unprivileged_with_its_data_in_a_volume(image: str, container: Container) -> None:
    config = json.loads(podman("image", "inspect", image).stdout)[0]
    assert config["Config"]["User"] == "keyless"
    assert config["Config"]["Entrypoint"] == ["keyless"] and config["Config"]["Cmd"] == ["serve"]
    assert set(config["Config"]["ExposedPorts"]) == {"8080/tcp", "8443/tcp"}
    assert "/var/lib/keyless" in config["Config"]["Volumes"]
    assert container.exec("id", "-u").stdout.strip() == "10001"
    # the HEALTHCHECK is there and passes against the running server
    check = config["Healthcheck"]["Test"]
    assert check[0] == "CMD"
    assert podman("healthcheck", "run", container.name, check=False).returncode == 0
    # ... and it is the server's health it checks: pointed at a port nobody serves, it fails
    assert podman("exec", "--env", "KEYLESS_PORT=1", container.name, *check[1:], check=False).returncode != 0
    # the server keeps its state in the volume: the owner token `keyless token owner` prints is the
    # file the volume holds, and it is accepted from the host
    token = container.exec("keyless", "token", "owner").stdout.strip()
    assert (container.volume() / "owner.token").read_text().strip() == token
    r = httpx.get(f"{container.base_url}/cloudresourcemanager/v1/projects/{PROJECT}",
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["projectNumber"] == NUMBER, r.text


def test_https_port_answers_as_google_hosts_with_the_ca_from_the_volume(container: Container) -> None:
    ca = ssl.create_default_context(cafile=str(container.volume() / "tls" / "ca.pem"))
    token = container.exec("keyless", "token", "owner").stdout.strip()
    r = httpx.get(f"https://127.0.0.1:{container.tls_port}/v1/projects/{PROJECT}", verify=ca,
                  headers={"Host": "cloudresourcemanager.googleapis.com", "Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["projectId"] == PROJECT, r.text


def test_keyless_port_and_host_variables_configure_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image sets KEYLESS_HOST and KEYLESS_PORT rather than serve's flags (runs without podman)."""
    from keyless.config import Settings

    monkeypatch.setenv("KEYLESS_HOST", "0.0.0.0")
    monkeypatch.setenv("KEYLESS_PORT", "9123")
    settings = Settings.from_env()
    assert (settings.host, settings.port) == ("0.0.0.0", 9123)
    assert Settings.from_env(port=9000).port == 9000  # a flag still wins


def test_configure_gcloud_for_a_server_elsewhere_needs_its_token_file(tmp_path: Path) -> None:
    """A server in a container keeps its owner token in its volume: configure-gcloud --server URL
    without --token-file says how to get it, and writes no configuration gcloud would fail with."""
    env = _gcloud_env(tmp_path / "gcloud", tmp_path / "home")
    refused = subprocess.run([sys.executable, "-m", "keyless.cli.main", "configure-gcloud", "--server",
                              f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 1, refused.stderr
    assert "--token-file" in refused.stderr and "keyless token owner" in refused.stderr
    assert not (tmp_path / "gcloud" / "configurations").exists()


def _gcloud_env(config_dir: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSDK_", "GOOGLE_APPLICATION_CREDENTIALS"))}
    env.update({"CLOUDSDK_CONFIG": str(config_dir), "KEYLESS_DATA_DIR": str(home), "PYTHONPATH": str(ROOT)})
    return env


def test_gcloud_on_the_host_drives_the_server_in_the_container(container: Container, tmp_path: Path) -> None:
    if GCLOUD is None:
        pytest.skip("gcloud is not installed: this test drives the Google Cloud CLI from the host")
    env = _gcloud_env(tmp_path / "gcloud", tmp_path / "home")
    configure = [sys.executable, "-m", "keyless.cli.main", "configure-gcloud", "--server", container.base_url,
                 "--project", PROJECT]
    token_file = tmp_path / "owner.token"
    token_file.write_text(container.exec("keyless", "token", "owner").stdout)
    done = subprocess.run([*configure, "--token-file", str(token_file)], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr

    def gcloud(*args: str) -> object:
        assert GCLOUD is not None
        r = subprocess.run([GCLOUD, "--configuration", "keyless", *args, "--format=json"], capture_output=True,
                           text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    provider = gcloud("iam", "workload-identity-pools", "providers", "describe", "github-provider",
                      "--workload-identity-pool=github-pool", "--location=global")
    assert isinstance(provider, dict) and provider["name"] == PROVIDER
    assert provider["oidc"]["issuerUri"].startswith(container.base_url)  # the container's public URL
    accounts = gcloud("iam", "service-accounts", "list")
    assert isinstance(accounts, list) and SA in [a["email"] for a in accounts]


def _exchange(container: Container, tmp_path: Path, repository: str) -> str:
    """google-auth on the host: a GitHub token minted inside the container, exchanged at its STS,
    then deploy-sa impersonated; the access token is returned."""
    jwt = container.exec("keyless", "token", "github", "--repository", repository, "--provider", PROVIDER).stdout
    (tmp_path / "github.jwt").write_text(jwt.strip())
    config = external_account(container.base_url, PROVIDER, file_source(str(tmp_path / "github.jwt")),
                              service_account=SA)
    credentials = identity_pool.Credentials.from_info(
        config, scopes=["https://www.googleapis.com/auth/cloud-platform"])
    credentials.refresh(google.auth.transport.requests.Request())
    return str(credentials.token)


def test_google_auth_exchanges_at_the_container_sts(container: Container, tmp_path: Path) -> None:
    token = _exchange(container, tmp_path, REPOSITORY)
    info = httpx.get(f"{container.base_url}/oauth2/v3/tokeninfo", params={"access_token": token})
    assert info.status_code == 200 and info.json()["email"] == SA, info.text
    # a job of another repository is refused by the provider's condition, in the container as anywhere
    with pytest.raises(google.auth.exceptions.OAuthError, match="attribute condition"):
        _exchange(container, tmp_path, "evil-org/my-repo")


def test_pods_in_the_container_run_on_loopback_and_namespaces_are_refused(container: Container) -> None:
    token = container.exec("keyless", "token", "owner").stdout.strip()
    cluster = {"cluster": {"name": "c1", "workloadIdentityConfig": {"workloadPool": f"{PROJECT}.svc.id.goog"},
                           "nodePools": [{"name": "default-pool", "initialNodeCount": 1,
                                          "config": {"workloadMetadataConfig": {"mode": "GKE_METADATA"}}}]}}
    r = httpx.post(f"{container.base_url}/container/v1/projects/{PROJECT}/locations/us-central1/clusters",
                   json=cluster, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert r.status_code == 200, r.text
    # a pod in its own network namespace needs root and CAP_SYS_ADMIN, which the image does not have
    refused = container.exec("keyless", "pod", "run", "--cluster", "c1", "--", "true", check=False)
    assert refused.returncode == 1
    assert "needs root" in refused.stderr and "--network loopback" in refused.stderr, refused.stderr
    # a loopback pod runs, and its metadata server answers with the pod's identity and a token
    script = ("import json, os, urllib.request as u\n"
              "def get(p):\n"
              "    r = u.Request('http://' + os.environ['GCE_METADATA_HOST'] + '/computeMetadata/v1/' + p,"
              " headers={'Metadata-Flavor': 'Google'})\n"
              "    return u.urlopen(r).read().decode()\n"
              "print(json.dumps({'email': get('instance/service-accounts/default/email'),"
              " 'token': json.loads(get('instance/service-accounts/default/token'))}))\n")
    ran = container.exec("keyless", "pod", "run", "--network", "loopback", "--cluster", "c1", "--",
                         "python3", "-c", script)
    answer = json.loads(ran.stdout)
    assert answer["email"] == f"{PROJECT}.svc.id.goog"
    assert answer["token"]["token_type"] == "Bearer" and answer["token"]["access_token"]


def test_restarted_container_keeps_its_data(container: Container) -> None:
    """Last: the same volume after a restart holds the same keys, so earlier tokens still verify."""
    token = container.exec("keyless", "token", "owner").stdout.strip()
    podman("restart", "--time", "10", container.name)
    container.wait_until_healthy()
    r = httpx.get(f"{container.base_url}/iam/v1/{PROVIDER}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["name"] == PROVIDER, r.text
