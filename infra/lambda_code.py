"""The Lambda code asset: ``core/`` + ``functions/`` + runtime deps, bundled without Docker.

Local bundling (``ILocalBundling``) runs ``pip install --platform manylinux2014_aarch64
--only-binary=:all: --python-version 3.12`` into the asset directory, so ``cdk synth``
never needs Docker. The requirements are ``[project].dependencies`` from pyproject.toml
(minus the ASGI server the container uses: Lambda runs Mangum), constrained to the exact
pins of requirements.lock so transitive dependencies match what the tests ran with.

The asset hash is computed here from the sources and the requirement list (a custom hash),
so CDK never fingerprints the repository root and reuses a bundle that is already in
``cdk.out``. With the context flag ``rtai:placeholder-code`` (tests) a tiny placeholder
directory stands in for the bundle: no pip run on every test synth.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "functions")
PYTHON_VERSION = "3.12"
PLATFORM = "manylinux2014_aarch64"
# The container's ASGI server; Lambda runs the app through Mangum.
NOT_ON_LAMBDA = frozenset({"uvicorn", "uvloop", "httptools"})
PLACEHOLDER_CONTEXT = "rtai:placeholder-code"
_PLACEHOLDER_DIR = Path(__file__).resolve().parent / "placeholder_code"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"cannot parse requirement {requirement!r}")
    return _canonical(match.group(1))


def lock_pins(lock_path: Path) -> dict[str, str]:
    """``{canonical name: version}`` from a uv/pip-compile lock file."""
    pins: dict[str, str] = {}
    for line in lock_path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_canonical(name.split("[", 1)[0])] = version.split(";", 1)[0].strip()
    return pins


def lambda_requirements(root: Path = REPO_ROOT) -> list[str]:
    """The runtime dependencies for Lambda, each pinned to the lock's version."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pins = lock_pins(root / "requirements.lock")
    requirements: list[str] = []
    for requirement in project["dependencies"]:
        name = _requirement_name(requirement)
        if name in NOT_ON_LAMBDA:
            continue
        if name not in pins:
            raise ValueError(f"{name} is a runtime dependency but not in requirements.lock")
        extras = re.match(r"\s*[A-Za-z0-9._-]+(\[[^\]]+\])?", requirement)
        extra = extras.group(1) if extras and extras.group(1) else ""
        requirements.append(f"{name}{extra}=={pins[name]}")
    return requirements


def lambda_constraints(root: Path = REPO_ROOT) -> list[str]:
    pins = lock_pins(root / "requirements.lock")
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def source_hash(root: Path = REPO_ROOT) -> str:
    """Hash of everything that goes into the bundle (sources, requirements, target)."""
    digest = hashlib.sha256()
    digest.update(f"{PLATFORM}/{PYTHON_VERSION}\n".encode())
    digest.update("\n".join(lambda_requirements(root) + lambda_constraints(root)).encode())
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    """``pip install`` for the Lambda platform into the asset directory, then the packages."""

    def __init__(self, root: Path = REPO_ROOT) -> None:
        self._root = root

    def try_bundle(self, output_dir: str, *, image: Any = None, **_: Any) -> bool:
        out = Path(output_dir)
        with tempfile.TemporaryDirectory() as tmp:
            requirements = Path(tmp) / "requirements.txt"
            constraints = Path(tmp) / "constraints.txt"
            requirements.write_text("\n".join(lambda_requirements(self._root)) + "\n")
            constraints.write_text("\n".join(lambda_constraints(self._root)) + "\n")
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-compile",
                "--platform",
                PLATFORM,
                "--implementation",
                "cp",
                "--python-version",
                PYTHON_VERSION,
                "--only-binary=:all:",
                "--target",
                str(out),
                "-r",
                str(requirements),
                "-c",
                str(constraints),
            ]
            subprocess.run(cmd, check=True)
        for package in PACKAGES:
            shutil.copytree(
                self._root / package,
                out / package,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"),
                dirs_exist_ok=True,
            )
        for cache in out.rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
        return True


def lambda_code(use_placeholder: bool) -> lambda_.Code:
    """The shared code asset of every Lambda function (one upload, one hash)."""
    if use_placeholder:
        return lambda_.Code.from_asset(str(_PLACEHOLDER_DIR))
    return lambda_.Code.from_asset(
        str(REPO_ROOT),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=source_hash(),
        bundling=BundlingOptions(
            # Never used: local bundling always succeeds or raises. CDK requires an image.
            image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.12"),
            local=PipLocalBundling(),
        ),
    )
