"""docs/ci.md's GitHub Actions recipe, run as a runner runs it (issue #22): its workflow's `run:`
steps in bash with the runner's files and variables, google-github-actions/auth (unmodified, from
../shared/clients) as `node dist/main/index.js` with its `with:` as INPUT_* and its post step, the
world file and the repository's test from the same page. Only actions/checkout and
actions/setup-python are taken as done: the workspace holds the checkout, and this interpreter is
the job's Python. The job on `main` passes; on another branch the binding refuses it.

The "Install Keyless" step (a venv and `pip install` of this checkout with all its dependencies,
the better part of a minute of CPU) runs as written once for the file, in a runner of its own; in
each job that step puts that venv's `keyless` on the job's PATH, as the step itself would."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import free_port
from tests.e2e.test_github_action import ACTION, NODE, inputs

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.skipif(ACTION is None or NODE is None, reason=(
    "needs node on PATH and google-github-actions/auth in ../shared/clients beside the repository")),
    pytest.mark.store_independent]  # the recipe starts its own SQLite server, as a workflow does


def block(name: str) -> str:
    text = (ROOT / "docs" / "ci.md").read_text()
    body = text.split(f"<!-- {name} -->", 1)[1].split(f"<!-- /{name} -->", 1)[0].strip()
    return body.split("\n", 1)[1].rsplit("```", 1)[0]


class Runner:
    """One job: the runner's files, the job's env, GITHUB_ENV/GITHUB_PATH carried between steps,
    and `${{ ... }}` expressions of the kinds the recipe uses."""

    def __init__(self, folder: Path, job: dict[str, Any], ref: str) -> None:
        self.folder = folder
        self.workspace = folder / "workspace"
        self.temp = folder / "temp"
        for d in (self.workspace, self.temp):
            d.mkdir(parents=True)
        self.files = {n: folder / n for n in ("output", "env", "state", "path", "summary")}
        for f in self.files.values():
            f.write_text("")
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("GOOGLE_", "GCLOUD_", "CLOUDSDK_", "KEYLESS_", "INPUT_", "STATE_", "GITHUB_",
                                     "ACTIONS_"))}
        # actions/setup-python: this interpreter (with pytest and google-cloud-storage) is the job's python
        base["PATH"] = f"{Path(sys.executable).parent}:{base.get('PATH', '')}"
        self.context = {"runner.temp": str(self.temp), "github.repository": "my-org/my-repo", "github.ref": ref}
        self.env: dict[str, str] = {
            **base, "CI": "true", "GITHUB_ACTIONS": "true", "RUNNER_TEMP": str(self.temp),
            "GITHUB_WORKSPACE": str(self.workspace), "GITHUB_REPOSITORY": "my-org/my-repo", "GITHUB_REF": ref,
            "GITHUB_OUTPUT": str(self.files["output"]), "GITHUB_ENV": str(self.files["env"]),
            "GITHUB_STATE": str(self.files["state"]), "GITHUB_PATH": str(self.files["path"]),
            "GITHUB_STEP_SUMMARY": str(self.files["summary"])}
        for name, value in (job.get("env") or {}).items():
            self.env[name] = self.expand(str(value))

    def expand(self, text: str) -> str:
        def one(m: re.Match[str]) -> str:
            expr = m.group(1).strip()
            if expr.startswith("env."):
                return self.env[expr[4:]]
            return self.context[expr]
        return re.sub(r"\$\{\{(.*?)\}\}", one, text)

    def step_env(self, step: dict[str, Any]) -> dict[str, str]:
        env = dict(self.env)
        exported = re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", self.files["env"].read_text(), re.M)
        env.update(dict(exported))
        for delimited in re.findall(r"^([^\n]+?)<<(ghadelimiter_[0-9a-f-]+)\n(.*?)\n\2$", self.files["env"].read_text(),
                                    re.M | re.S):
            env[delimited[0]] = delimited[2]
        added = [line for line in self.files["path"].read_text().splitlines() if line]
        env["PATH"] = ":".join([*reversed(added), env["PATH"]])
        for name, value in (step.get("env") or {}).items():
            env[name] = self.expand(str(value))
        return env

    def run(self, step: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        env = self.step_env(step)
        if "run" in step:
            return subprocess.run(["bash", "-e", "-c", self.expand(step["run"])], env=env, cwd=self.workspace,
                                  capture_output=True, text=True, timeout=600)
        assert ACTION is not None and NODE is not None
        uses = step["uses"]
        assert uses == "google-github-actions/auth@v3", uses
        env.update(inputs(**{k: self.expand(str(v)) for k, v in (step.get("with") or {}).items()}))
        return subprocess.run([NODE, str(ACTION / "dist" / "main" / "index.js")], env=env, cwd=self.workspace,
                              capture_output=True, text=True, timeout=120)

    def post(self) -> subprocess.CompletedProcess[str]:
        """The action's post step, with the state its main step saved (STATE_*)."""
        assert ACTION is not None and NODE is not None
        env = self.step_env({})
        saved = re.findall(r"^([^\n]+?)<<(ghadelimiter_[0-9a-f-]+)\n(.*?)\n\2$", self.files["state"].read_text(),
                           re.M | re.S)
        env.update({f"STATE_{name}": value for name, _, value in saved})
        env.update(inputs())
        return subprocess.run([NODE, str(ACTION / "dist" / "post" / "index.js")], env=env, cwd=self.workspace,
                              capture_output=True, text=True, timeout=60)

    def stop_server(self) -> None:
        record = Path(self.env["KEYLESS_DATA_DIR"]) / "server.json"
        if record.exists():
            try:
                os.kill(int(json.loads(record.read_text())["pid"]), signal.SIGTERM)
            except (ProcessLookupError, KeyError, ValueError):
                pass


INSTALL = "Install Keyless (in a venv of its own; only its command on PATH)"


@pytest.fixture(scope="module")
def keyless_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe's install step, run as written in a runner of its own: the venv it makes."""
    job = yaml.safe_load(block("ci-workflow"))["jobs"]["test"]
    job["env"]["KEYLESS_SPEC"] = str(ROOT)  # this checkout, as `pip install ./tools/keyless` would
    runner = Runner(tmp_path_factory.mktemp("install"), job, "refs/heads/main")
    step = next(s for s in job["steps"] if s.get("name") == INSTALL)
    result = runner.run(step)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    venv = runner.temp / "keyless-venv"
    assert (venv / "bin" / "keyless").exists() and (runner.temp / "bin" / "keyless").is_symlink()
    return venv


def run_job(tmp_path: Path, ref: str, venv: Path) -> tuple[Runner, list[tuple[str, subprocess.CompletedProcess[str]]]]:
    port = str(free_port())
    workflow = yaml.safe_load(block("ci-workflow"))
    job = workflow["jobs"]["test"]
    job["env"]["KEYLESS_SPEC"] = str(ROOT)  # this checkout, as `pip install ./tools/keyless` would
    job["env"]["KEYLESS_PORT"] = port
    runner = Runner(tmp_path / "runner", job, ref)
    for step in job["steps"]:  # the install step ran once (keyless_venv): its last two lines, on that venv
        if step.get("name") == INSTALL:
            step["run"] = (f'mkdir -p "$RUNNER_TEMP/bin" && ln -s "{venv}/bin/keyless" "$RUNNER_TEMP/bin/keyless"\n'
                           'echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"')
    (runner.workspace / "ci").mkdir()
    (runner.workspace / "ci" / "world.yaml").write_text(block("ci-world").replace(":8080/", f":{port}/"))
    (runner.workspace / "ci" / "test_deploy.py").write_text(block("ci-test"))
    done: list[tuple[str, subprocess.CompletedProcess[str]]] = []
    try:
        failed = False  # as the runner: after a failed step only `if: failure()` steps run
        for step in job["steps"]:
            uses = step.get("uses", "")
            if uses.startswith(("actions/checkout@", "actions/setup-python@")):
                continue
            if (step.get("if") == "failure()") != failed:
                continue
            result = runner.run(step)
            done.append((step.get("name", uses), result))
            failed = failed or result.returncode != 0 or "::error::" in result.stdout
        if not failed:
            done.append(("post", runner.post()))
    finally:
        runner.stop_server()
    return runner, done


def test_the_recipe_passes_on_main(tmp_path: Path, keyless_venv: Path) -> None:
    runner, done = run_job(tmp_path, "refs/heads/main", keyless_venv)
    for name, result in done:
        assert result.returncode == 0 and "::error::" not in result.stdout, (
            f"step {name!r} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    names = [name for name, _ in done]
    assert names[-2:] == ["The repository's tests, as the deploy service account", "post"], names
    assert "1 passed" in done[-2][1].stdout
    # the post step removed the credentials file the action wrote into the workspace
    assert not list(runner.workspace.glob("gha-creds-*.json"))


def test_another_branch_is_refused_and_explained(tmp_path: Path, keyless_venv: Path) -> None:
    runner, done = run_job(tmp_path, "refs/heads/feature", keyless_venv)
    # the action only writes the credentials file; the first impersonation, in the tests, is refused
    assert [n for n, _ in done][-3:] == ["google-github-actions/auth@v3",
                                         "The repository's tests, as the deploy service account",
                                         "What was refused, and why"], [n for n, _ in done]
    tests = done[-2][1]
    assert tests.returncode != 0 and "1 failed" in tests.stdout, tests.stdout[-2000:]
    assert "iam.serviceAccounts.getAccessToken" in tests.stdout, tests.stdout[-3000:]
    # the failure step's audit read names the refused impersonation and its caller
    explained = done[-1][1]
    assert explained.returncode == 0, explained.stderr
    assert "GenerateAccessToken" in explained.stdout, explained.stdout[-2000:]
    assert "repo:my-org/my-repo:ref:refs/heads/feature" in explained.stdout, explained.stdout[-2000:]
