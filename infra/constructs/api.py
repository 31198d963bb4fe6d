"""API: the REST Lambda behind an HTTP API, and the batch worker.

* ``ANY /api/{proxy+}`` -> the Litestar app (Mangum); the full path is passed through (the
  app's routes carry their own ``/api/v1`` prefix). No API Gateway authorizer: the app
  verifies the Cognito JWT itself (JWKS, issuer, audience), so a missing or bad token gets
  the contract's OpenAI-shaped 401 rather than API Gateway's ``{"message": "Unauthorized"}``
  (docs/deploy.md).
* ``GET /api/healthz`` -> same function (load balancers, uptime checks).
* Timeouts nest: the completion budget (``COMPLETION_TIMEOUT_S``, upstream retries
  included) < the function's timeout < API Gateway's 30 s; past the budget the app answers
  504 naming the streaming endpoint, with ``x-should-retry: false`` (no SDK retry).
* SnapStart on the API function (``api.snap_start``): API Gateway invokes the ``live`` alias
  of the published version, restored from a snapshot of the initialised app.
* The batch worker drains an SQS queue with partial batch responses
  (``ReportBatchItemFailures``): one bad line never re-runs the whole batch. Poison messages
  land in the DLQ after ``worker_max_receive_count`` tries.

Both functions: arm64 (cheaper per GB-s), Python 3.12, Powertools env, JSON logs with
retention, X-Ray tracing, the secrets by ARN (read at cold start).
"""

from __future__ import annotations

import jsii
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import WORKER_HANDBACK_MARGIN_S, AppConfig
from infra.constructs.retention import retention as log_retention
from infra.constructs.runtime_env import SharedResources, grant_files, runtime_environment
from infra.nag import BASIC_EXECUTION_ROLE, acknowledge

API_HANDLER = "functions.api.handler.handler"
WORKER_HANDLER = "functions.batch_worker.handler.handler"
PYTHON_RUNTIME = lambda_.Runtime.PYTHON_3_12


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogs:
    """Stage access logs to CloudWatch in API Gateway's default JSON format."""

    def __init__(self, destination: apigwv2.IAccessLogDestination) -> None:
        self._destination = destination

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigateway.AccessLogFormat | None:
        return apigateway.AccessLogFormat.json_with_standard_fields(
            caller=False,
            http_method=True,
            ip=True,
            protocol=True,
            request_time=True,
            resource_path=True,
            response_length=True,
            status=True,
            user=True,
        )


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        shared: SharedResources,
        code: lambda_.Code,
    ) -> None:
        super().__init__(scope, construct_id)
        api_cfg = config.api
        retention = log_retention(config.observability.log_retention_days)

        self.dlq = sqs.Queue(
            self,
            "BatchDlq",
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        self.queue = sqs.Queue(
            self,
            "BatchQueue",
            visibility_timeout=Duration.seconds(api_cfg.queue_visibility_timeout_s),
            retention_period=Duration.days(4),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dlq, max_receive_count=api_cfg.worker_max_receive_count
            ),
        )

        environment = {
            **runtime_environment(config, shared),
            "BATCH_QUEUE_URL": self.queue.queue_url,
            "OPENAI_API_KEY_SECRET_ARN": shared.openai_api_key.secret_arn,
            "POWERTOOLS_METRICS_NAMESPACE": "RealtimeAiStack",
            "POWERTOOLS_LOG_LEVEL": api_cfg.log_level,
            # Batch files live as long as the bucket's lifecycle rule keeps them.
            "BATCH_RETENTION_S": str(config.data.files_expire_days * 86400),
        }

        self.api_function = self._function(
            "ApiFunction",
            handler=API_HANDLER,
            code=code,
            memory=api_cfg.memory_mib,
            timeout=api_cfg.timeout_s,
            environment={
                **environment,
                "POWERTOOLS_SERVICE_NAME": "rtai-api",
                # Realtime client secrets (POST /api/v1/realtime/client_secrets) are signed
                # with the URL-token key the stream service verifies them with.
                "URL_TOKEN_SECRET_ARN": shared.url_token_secret.secret_arn,
                # The chain: completion budget < function timeout < API Gateway's 30 s.
                "COMPLETION_TIMEOUT_S": str(api_cfg.completion_budget_s),
                "OPENAI_TIMEOUT_S": str(api_cfg.completion_budget_s),
                "OPENAI_MAX_RETRIES": str(api_cfg.upstream_max_retries),
            },
            retention=retention,
            snap_start=api_cfg.snap_start,
        )
        # API Gateway invokes a published version (SnapStart restores only those).
        self.api_target: lambda_.IFunction = (
            lambda_.Alias(
                self, "ApiLive", alias_name="live", version=self.api_function.current_version
            )
            if api_cfg.snap_start
            else self.api_function
        )
        self.worker_function = self._function(
            "BatchWorkerFunction",
            handler=WORKER_HANDLER,
            code=code,
            memory=api_cfg.worker_memory_mib,
            timeout=api_cfg.worker_timeout_s,
            environment={
                **environment,
                "POWERTOOLS_SERVICE_NAME": "rtai-batch-worker",
                # The finalizer's lease must cover one worker invocation (docs/batch.md).
                "BATCH_FINALIZE_LEASE_S": str(api_cfg.worker_timeout_s),
                # One upstream call's bound; a call starts only if it ends the margin before
                # the invocation does (else the message is handed back). The worker retries
                # itself: no SDK retries on top. Checked at synth: call + margin < timeout.
                "OPENAI_TIMEOUT_S": str(api_cfg.worker_call_timeout_s),
                "OPENAI_MAX_RETRIES": "0",
                "BATCH_HANDBACK_MARGIN_S": str(WORKER_HANDBACK_MARGIN_S),
            },
            retention=retention,
        )
        # The expiry sweep (batches past their completion window): any event without
        # "Records" makes the worker sweep instead of processing SQS messages.
        events.Rule(
            self,
            "BatchSweep",
            description="Batch expiry sweep (docs/batch.md)",
            schedule=events.Schedule.rate(Duration.minutes(5)),
            targets=[targets.LambdaFunction(self.worker_function)],
        )
        self.worker_function.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=api_cfg.worker_batch_size,
                max_batching_window=Duration.seconds(1),
                report_batch_item_failures=True,
                max_concurrency=api_cfg.worker_max_concurrency,
            )
        )

        # Least privilege: both run the batch API (jobs table, files, the queue: the worker's
        # sweep queues finalizes) and call the model; neither touches the streams table.
        for fn in (self.api_function, self.worker_function):
            shared.jobs_table.grant_read_write_data(fn)
            grant_files(shared.files_bucket, fn, fn)
            shared.openai_api_key.grant_read(fn)
            self.queue.grant_send_messages(fn)
        shared.url_token_secret.grant_read(self.api_function)  # realtime client secrets

        self.http_api = self._http_api(config, shared)

    def _function(
        self,
        construct_id: str,
        *,
        handler: str,
        code: lambda_.Code,
        memory: int,
        timeout: int,
        environment: dict[str, str],
        retention: logs.RetentionDays,
        snap_start: bool = False,
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self, f"{construct_id}Logs", retention=retention, removal_policy=RemovalPolicy.DESTROY
        )
        fn = lambda_.Function(
            self,
            construct_id,
            runtime=PYTHON_RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=code,
            memory_size=memory,
            timeout=Duration.seconds(timeout),
            environment=environment,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            tracing=lambda_.Tracing.ACTIVE,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
            # A replaced version goes (with its cached snapshot, billed per GB-second).
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY),
        )
        acknowledge(
            fn,
            "AwsSolutions-L1",
            "Pinned to Python 3.12 on purpose: the bundle's wheels are built for cp312 and"
            " the stream service image is python:3.12; bump them together.",
        )
        acknowledge(
            fn,
            "AwsSolutions-IAM4",
            "AWSLambdaBasicExecutionRole only allows writing the function's own logs; the AWS"
            " managed policy is the standard for that.",
            [BASIC_EXECUTION_ROLE],
        )
        acknowledge(
            fn,
            "AwsSolutions-IAM5",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions.",
            ["Resource::*"],
        )
        return fn

    def _http_api(self, config: AppConfig, shared: SharedResources) -> apigwv2.HttpApi:
        http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"{config.name}-api",
            description="OpenAI-compatible REST API (Litestar on Lambda)",
            create_default_stage=False,
        )
        access_logs = logs.LogGroup(
            self,
            "HttpApiAccessLogs",
            retention=log_retention(config.observability.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=config.api.throttle_rate, burst_limit=config.api.throttle_burst
            ),
            access_log_settings=_AccessLogs(apigwv2.LogGroupLogDestination(access_logs)),
        )
        integration = integrations.HttpLambdaIntegration(
            "ApiIntegration",
            self.api_target,
            payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
        )
        http_api.add_routes(
            path="/api/healthz", methods=[apigwv2.HttpMethod.GET], integration=integration
        )
        http_api.add_routes(
            path="/api/{proxy+}", methods=[apigwv2.HttpMethod.ANY], integration=integration
        )
        acknowledge(
            http_api,
            "AwsSolutions-APIG4",
            "The app verifies every token itself (Cognito JWKS, issuer and audience; AUTH_MODE"
            "=jwt) so that auth errors keep the contract's OpenAI shape; an API Gateway JWT"
            ' authorizer would answer first with {"message": "Unauthorized"}. Only'
            " /api/healthz and the API's own unauthenticated routes answer without a token.",
        )
        return http_api

    @property
    def api_domain(self) -> str:
        """``<id>.execute-api.<region>.amazonaws.com`` for the CloudFront origin."""
        return f"{self.http_api.api_id}.execute-api.{self.http_api.stack.region}.amazonaws.com"
