"""cdk-nag (AwsSolutions pack) for the whole app, and how this app acknowledges findings.

cdk-nag 3 runs as a CDK policy-validation plugin: after synthesis it checks every template,
and any unacknowledged finding fails the synth (``policy-validation-report.json`` in the
cloud assembly says which). Each acknowledgment sits next to the resource it is about, with
its reason; IAM5 wildcard findings are acknowledged one by one (``AwsSolutions-IAM5[...]``).

The only generic ones are here: findings on the Lambda-backed custom resources that
aws-cdk-lib adds by itself (``Custom::*`` providers: web content deployment, bucket
auto-delete, default-SG restriction, cross-region reference readers/writers, the
AwsCustomResource handler). Their code,
runtime and roles are aws-cdk-lib's, not this app's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aws_cdk import Acknowledgment, App, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

PACK = "AwsSolutions"
# ``AWS679f...``: the singleton handler of aws-cdk-lib's AwsCustomResource.
_CDK_HELPER_PREFIXES = (
    "Custom::",
    "ExportsReader",
    "ExportsWriter",
    "AWS679f53fac002430cb0da5b7982bd2287",
)
BASIC_EXECUTION_ROLE = (
    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
)


def acknowledge(scope: IConstruct, rule: str, reason: str, findings: Iterable[str] = ()) -> None:
    """Acknowledge ``rule`` on ``scope`` and its children (each finding, if given)."""
    ids = [f"{PACK}::{rule}[{finding}]" for finding in findings] or [f"{PACK}::{rule}"]
    Validations.of(scope).acknowledge(*(Acknowledgment(id=i, reason=reason) for i in ids))


def nag_resource(scope: IConstruct, token: str) -> str:
    """How cdk-nag prints a policy resource (``<Logical.Arn>``, ``<AWS::AccountId>``) so a
    single wildcard finding can be acknowledged by its exact id."""

    def render(value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return f"<{arg}>"
            if key == "Fn::GetAtt":
                return f"<{arg[0]}.{arg[1]}>"
            if key == "Fn::Join":
                return str(arg[0]).join(render(part) for part in arg[1])
        raise ValueError(f"cannot render {value!r} like cdk-nag")

    return render(Stack.of(scope).resolve(token))


def acknowledge_cdk_helpers(stack: Stack) -> None:
    for child in stack.node.children:
        if not child.node.id.startswith(_CDK_HELPER_PREFIXES):
            continue
        acknowledge(
            child,
            "AwsSolutions-IAM4",
            "aws-cdk-lib's custom resource handlers use AWSLambdaBasicExecutionRole for"
            " their own logs.",
            [BASIC_EXECUTION_ROLE],
        )
        acknowledge(
            child,
            "AwsSolutions-L1",
            "The runtime of aws-cdk-lib's custom resource handlers is chosen by aws-cdk-lib.",
        )


def apply_nag(app: App) -> None:
    for child in app.node.children:
        if isinstance(child, Stack):
            acknowledge_cdk_helpers(child)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
