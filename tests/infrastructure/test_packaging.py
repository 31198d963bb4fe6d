"""Lambda bundling (no Docker) and the stream service image."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.lambda_code import (
    NOT_ON_LAMBDA,
    PipLocalBundling,
    lambda_requirements,
    lock_pins,
    source_hash,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_lambda_requirements_are_runtime_deps_pinned_by_the_lock() -> None:
    requirements = lambda_requirements()
    pins = lock_pins(REPO_ROOT / "requirements.lock")
    names = {r.split("[")[0].split("==")[0] for r in requirements}
    assert names.isdisjoint(NOT_ON_LAMBDA)
    assert {"litestar", "mangum", "aws-lambda-powertools", "pyjwt", "boto3"} <= names
    assert not names & {"pytest", "moto", "aws-cdk-lib", "ruff"}  # no dev/infra deps
    for requirement in requirements:
        name, version = requirement.split("==")
        assert pins[name.split("[")[0]] == version
    assert any(r.startswith("pyjwt[crypto]==") for r in requirements)


def test_local_bundling_pip_installs_for_lambda_arm64_and_copies_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], check: bool, **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        requirements = Path(cmd[cmd.index("-r") + 1]).read_text()
        assert "uvicorn" not in requirements and "litestar==" in requirements
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert PipLocalBundling().try_bundle(str(tmp_path)) is True
    (cmd,) = calls
    assert cmd[1:4] == ["-m", "pip", "install"]
    assert cmd[cmd.index("--platform") + 1] == "manylinux2014_aarch64"
    assert cmd[cmd.index("--python-version") + 1] == "3.12"
    assert "--only-binary=:all:" in cmd
    assert cmd[cmd.index("--target") + 1] == str(tmp_path)
    assert (tmp_path / "core" / "settings.py").is_file()
    assert (tmp_path / "functions" / "api" / "handler.py").is_file()
    assert not list(tmp_path.rglob("__pycache__"))


def test_source_hash_is_stable() -> None:
    assert source_hash() == source_hash()
    assert len(source_hash()) == 64


def test_dockerfile_is_slim_nonroot_healthchecked_and_runs_the_service() -> None:
    dockerfile = (REPO_ROOT / "stream_service" / "Dockerfile").read_text()
    assert "FROM python:3.12-slim" in dockerfile
    assert "\nUSER 10001" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/stream/healthz" in dockerfile
    assert "-c requirements.lock" in dockerfile
    assert "COPY core/" in dockerfile and "COPY stream_service/" in dockerfile
    assert (
        'CMD ["python", "-m", "stream_service", "--host", "0.0.0.0", "--port", "8080"]'
        in dockerfile
    )


def test_dockerignore_is_an_allow_list() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert lines[lines.index("*")] == "*"
    for allowed in ("!core/", "!stream_service/", "!pyproject.toml", "!requirements.lock"):
        assert allowed in lines


def test_service_http_keepalive_comes_from_its_setting() -> None:
    """uvicorn's keep-alive is HTTP_KEEPALIVE_S, which the infra sets above the ALB's idle
    timeout (tests/infrastructure/test_stream_service.py), not a constant of its own."""
    main = (REPO_ROOT / "stream_service" / "__main__.py").read_text()
    match = re.search(r"timeout_keep_alive=(.+),", main)
    assert match is not None
    assert "http_keepalive_s" in match.group(1)


def test_image_installs_the_voice_extra_as_pyproject_says() -> None:
    """The Dockerfile's requirement list (its own one-liner, run here) is the runtime
    dependencies plus the `voice` extra, every one pinned by the lock; espeak-ng is there
    for the local stand-in's speech."""
    import tomllib

    dockerfile = (REPO_ROOT / "stream_service" / "Dockerfile").read_text()
    match = re.search(r'RUN python -c "(.+?)" > /tmp/requirements.txt', dockerfile)
    assert match is not None
    program = match.group(1).replace("\\n", "\n").replace("'\n'", "'\\n'")
    listed = subprocess.run(
        ["python3", "-c", program], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    voice = project["optional-dependencies"]["voice"]
    assert voice and set(voice) <= set(listed)
    assert set(project["dependencies"]) <= set(listed)
    pins = lock_pins(REPO_ROOT / "requirements.lock")
    for requirement in voice:
        name, version = requirement.split("==")
        assert pins[name] == version
    assert "apt-get install -y --no-install-recommends espeak-ng" in dockerfile
