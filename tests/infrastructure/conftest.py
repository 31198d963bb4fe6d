"""One synthesis per test session: dev, prod and a cross-region prod in one CDK app.

jsii synthesis is slow on a shared 2-core machine, so every infrastructure test reads the
templates of this single cloud assembly. Lambda code is a placeholder asset here (context
``rtai:placeholder-code``); ``make synth`` does the real pip bundling.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
_NODE_BIN = REPO_ROOT / "node_modules" / ".bin"
# Prefer the pinned, supported Node (npm package "node", installed by `make synth`).
if (_NODE_BIN / "node").exists():
    os.environ["PATH"] = f"{_NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

from aws_cdk import App  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from infra.app import AppStacks, build_stacks, cdk_json_context  # noqa: E402
from infra.config import AppConfig, load_config  # noqa: E402
from infra.lambda_code import PLACEHOLDER_CONTEXT  # noqa: E402
from infra.nag import apply_nag  # noqa: E402


@dataclass
class Synth:
    outdir: Path
    dev: AppStacks
    prod: AppStacks
    eu: AppStacks
    templates: dict[str, dict[str, Any]]

    def template(self, stack_name: str) -> Template:
        return Template.from_json(self.templates[stack_name])

    def raw(self, stack_name: str) -> dict[str, Any]:
        return self.templates[stack_name]


ALARM_TOPIC_ARN = "arn:aws:sns:eu-west-1:123456789012:pager"


def context() -> dict[str, Any]:
    ctx = cdk_json_context()
    ctx[PLACEHOLDER_CONTEXT] = "true"
    return ctx


def config(env_name: str) -> AppConfig:
    return load_config(cdk_json_context()["rtai"], env_name)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = App(context=context(), outdir=str(outdir))
    dev = build_stacks(app, config("dev"), placeholder_code=True)
    prod = build_stacks(app, config("prod"), placeholder_code=True)
    # prod outside us-east-1: the WAF stack stays in us-east-1 (cross-region reference).
    # ...and with its alarms routed to an existing topic (prod itself has none configured).
    prod_config = config("prod")
    eu_config = prod_config.model_copy(
        update={
            "region": "eu-west-1",
            "env_name": "euprod",
            "observability": prod_config.observability.model_copy(
                update={"alarm_topic_arn": ALARM_TOPIC_ARN}
            ),
        }
    )
    eu = build_stacks(app, eu_config, placeholder_code=True)
    apply_nag(app)
    assembly = app.synth()  # raises if cdk-nag reports an unacknowledged finding
    templates = {stack.stack_name: stack.template for stack in assembly.stacks}
    return Synth(outdir=outdir, dev=dev, prod=prod, eu=eu, templates=templates)
