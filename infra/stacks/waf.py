"""The optional WAF stack (CloudFront web ACLs must be created in us-east-1)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from infra.config import AppConfig
from infra.constructs.waf import EdgeWaf


class WafStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.waf = EdgeWaf(self, "EdgeWaf", name=config.name, config=config.edge)
