"""CDK entry point: ``cdk synth`` / ``cdk deploy --all`` (``-c env=NAME``, default ``dev``).

Stacks (``<prefix>-<env>-...``):
* ``stateful`` - DynamoDB tables, files bucket, secrets, Cognito (retained on destroy);
* ``service`` - VPC, REST API + batch worker, stream service, CloudFront, observability;
* ``waf`` - only with ``edge.waf_enabled``: the CloudFront web ACL, always in us-east-1.

No lookups anywhere: the stacks are account-agnostic unless ``account`` is configured, so
``cdk synth`` runs without AWS credentials.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import App, Environment, Stack, Tags
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs

from infra.config import CONTEXT_KEY, DEFAULT_ENV, ENV_CONTEXT_KEY, AppConfig, load_config
from infra.lambda_code import PLACEHOLDER_CONTEXT, REPO_ROOT, lambda_code
from infra.nag import apply_nag
from infra.stacks.service import ServiceStack
from infra.stacks.stateful import StatefulStack
from infra.stacks.waf import WafStack

WAF_REGION = "us-east-1"
DOCKERFILE = "stream_service/Dockerfile"


@dataclass
class AppStacks:
    config: AppConfig
    stateful: StatefulStack
    service: ServiceStack
    waf: WafStack | None

    @property
    def all(self) -> list[Stack]:
        return [s for s in (self.stateful, self.service, self.waf) if s is not None]


def _truthy(value: Any) -> bool:
    return str(value).lower() in {"1", "true", "yes"}


def stream_image() -> ecs.ContainerImage:
    """The stream service image, built from the repo root at deploy time (no Docker at synth).

    ``.dockerignore`` is an allow-list, so only core/, stream_service/ and the dependency
    files are fingerprinted and sent to the build.
    """
    return ecs.ContainerImage.from_asset(
        str(REPO_ROOT), file=DOCKERFILE, platform=ecr_assets.Platform.LINUX_ARM64
    )


def build_stacks(app: App, config: AppConfig, *, placeholder_code: bool = False) -> AppStacks:
    env = Environment(account=config.account or None, region=config.region)
    cross_region = config.edge.waf_enabled and config.region != WAF_REGION
    waf: WafStack | None = None
    if config.edge.waf_enabled:
        waf = WafStack(
            app,
            f"{config.name}-waf",
            config=config,
            env=Environment(account=config.account or None, region=WAF_REGION),
            cross_region_references=cross_region,
            description=f"{config.name}: CloudFront web ACL (us-east-1)",
        )
    stateful = StatefulStack(
        app,
        f"{config.name}-stateful",
        config=config,
        env=env,
        termination_protection=config.data.retain,
        description=f"{config.name}: DynamoDB, files bucket, secrets, Cognito",
    )
    service = ServiceStack(
        app,
        f"{config.name}-service",
        config=config,
        refs=stateful.refs,
        lambda_code=lambda_code(placeholder_code),
        stream_image=stream_image(),
        web_acl_arn=waf.waf.arn if waf else None,
        env=env,
        cross_region_references=cross_region,
        description=f"{config.name}: API, stream service, CloudFront, observability",
    )
    service.add_stack_dependency(stateful)
    stacks = AppStacks(config=config, stateful=stateful, service=service, waf=waf)
    for stack in stacks.all:
        Tags.of(stack).add("app", config.prefix)
        Tags.of(stack).add("environment", config.env_name)
        for key, value in config.tags.items():
            Tags.of(stack).add(key, value)
    return stacks


def cdk_json_context(root: Path = REPO_ROOT) -> dict[str, Any]:
    """The ``context`` block of cdk.json (what the CLI passes to the app), for tests."""
    context: dict[str, Any] = json.loads((root / "cdk.json").read_text())["context"]
    return context


def create_app(context: dict[str, Any] | None = None, outdir: str | Path | None = None) -> App:
    """The app for ``-c env=NAME`` with cdk-nag applied (``context`` overrides for tests)."""
    app = App(context=context or {}, outdir=str(outdir) if outdir else None)
    raw = app.node.try_get_context(CONTEXT_KEY)
    if not isinstance(raw, dict):
        raise ValueError(f"cdk.json needs a {CONTEXT_KEY!r} context object")
    env_name = str(app.node.try_get_context(ENV_CONTEXT_KEY) or DEFAULT_ENV)
    config = load_config(raw, env_name)
    placeholder = _truthy(app.node.try_get_context(PLACEHOLDER_CONTEXT))
    build_stacks(app, config, placeholder_code=placeholder)
    apply_nag(app)
    return app


def main() -> None:
    create_app().synth()


if __name__ == "__main__":
    main()
