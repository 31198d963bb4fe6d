"""Observability: a dashboard, alarms to an SNS topic, and TTFT as a CloudWatch metric.

The stream service logs one JSON line per finished stream
(``{"event": "stream_done", "ttft_ms": ..., "tokens": ..., "duration_ms": ...}``); metric
filters turn those into ``TimeToFirstTokenMs`` (namespace ``RealtimeAiStack/<prefix>-<env>``)
and friends, whose p95 is the number users feel. Alarms treat missing data as OK: an idle
app is healthy (except the bus and healthy-host alarms: silence there means nothing runs).

Alarms go to an SNS topic with ``observability.alarm_email`` subscribed and/or to an existing
topic (``observability.alarm_topic_arn``: a pager, AWS Chatbot). With
``observability.require_alarm_destination`` (prod) and neither set, the synth stops with an
error: an alarm nobody receives is no alarm.
"""

from __future__ import annotations

from aws_cdk import Annotations, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.config import AppConfig
from infra.constructs.api import Api
from infra.constructs.stream_service import BUS_CONNECTED_METRIC, StreamService
from infra.nag import acknowledge

NAMESPACE = "RealtimeAiStack"
TTFT_METRIC = "TimeToFirstTokenMs"
_STREAM_DONE = '$.event = "stream_done"'


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        api: Api,
        stream: StreamService,
        tables: list[dynamodb.ITable],
        bus_enabled: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        obs = config.observability
        self.topic = sns.Topic(
            self, "AlarmTopic", display_name=f"{config.name} alarms", enforce_ssl=True
        )
        if obs.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(obs.alarm_email))
        self.destinations: list[sns.ITopic] = [self.topic]
        if obs.alarm_topic_arn:
            self.destinations.append(
                sns.Topic.from_topic_arn(self, "AlarmDestination", obs.alarm_topic_arn)
            )
        if not obs.has_alarm_destination:
            message = (
                f"{config.name}: alarms go to an SNS topic nobody is subscribed to. Set"
                " observability.alarm_email or observability.alarm_topic_arn in cdk.json"
                " (docs/deploy.md, 'Alarms')."
            )
            if obs.require_alarm_destination:
                Annotations.of(self).add_error(message)
            else:
                Annotations.of(self).add_warning_v2("rtai:alarms-unrouted", message)
        acknowledge(
            self.topic,
            "AwsSolutions-SNS2",
            "Alarm notifications carry no sensitive data, and CloudWatch cannot"
            " publish to a topic under the AWS managed SNS key (a customer key costs"
            " $1/month idle).",
        )

        # --- TTFT and friends from the service's stream_done log lines -------------------
        namespace = f"{NAMESPACE}/{config.name}"
        self.ttft = self._log_metric(stream, "Ttft", namespace, TTFT_METRIC, "$.ttft_ms")
        self.duration = self._log_metric(
            stream, "Duration", namespace, "StreamDurationMs", "$.duration_ms"
        )
        self.tokens = self._log_metric(stream, "Tokens", namespace, "StreamTokens", "$.tokens")
        ttft_p95 = self.ttft.with_(statistic="p95", period=Duration.minutes(5))

        # --- alarms ------------------------------------------------------------------------
        self.alarms: list[cloudwatch.Alarm] = []
        five = Duration.minutes(5)
        for name, fn in (("Api", api.api_function), ("Worker", api.worker_function)):
            self._alarm(f"{name}Errors", fn.metric_errors(period=five), 1, f"{name} Lambda errors")
            self._alarm(
                f"{name}Throttles", fn.metric_throttles(period=five), 1, f"{name} Lambda throttles"
            )
        alb_metrics = stream.alb.metrics
        tg_metrics = stream.target_group.metrics
        self._alarm(
            "Alb5xx",
            cloudwatch.MathExpression(
                expression="elb + target",
                using_metrics={
                    "elb": alb_metrics.http_code_elb(
                        code=elbv2.HttpCodeElb.ELB_5XX_COUNT, period=five, statistic="Sum"
                    ),
                    "target": alb_metrics.http_code_target(
                        code=elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=five, statistic="Sum"
                    ),
                },
                label="ALB + target 5xx",
                period=five,
            ),
            5,
            "Stream service 5xx responses (ALB or targets)",
        )
        self._alarm(
            "TargetLatencyP95",
            tg_metrics.target_response_time(period=five, statistic="p95"),
            obs.target_latency_p95_alarm_s,
            "Stream service time to response headers, p95 (seconds)",
        )
        self._alarm(
            "UnhealthyTargets",
            tg_metrics.unhealthy_host_count(period=Duration.minutes(1), statistic="Maximum"),
            1,
            "Stream tasks failing /stream/healthz",
            periods=3,
        )
        self._alarm(
            "NoHealthyTargets",
            tg_metrics.healthy_host_count(period=Duration.minutes(1), statistic="Minimum"),
            1,
            "No healthy stream task",
            periods=3,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            missing=cloudwatch.TreatMissingData.BREACHING,
        )
        self._alarm(
            "DlqDepth",
            api.dlq.metric_approximate_number_of_messages_visible(period=five, statistic="Maximum"),
            1,
            "Batch messages in the dead-letter queue",
        )
        for index, table in enumerate(tables):
            self._alarm(
                f"DynamoThrottles{index}",
                cloudwatch.MathExpression(
                    expression="r + w",
                    using_metrics={
                        "r": table.metric("ReadThrottleEvents", period=five, statistic="Sum"),
                        "w": table.metric("WriteThrottleEvents", period=five, statistic="Sum"),
                    },
                    label="read + write throttle events",
                    period=five,
                ),
                1,
                "DynamoDB throttling",
            )
        self._alarm("TtftP95", ttft_p95, obs.ttft_p95_alarm_ms, "Time to first token p95 (ms)")
        self.bus_connected: cloudwatch.Metric | None = None
        if bus_enabled:
            # Each task writes BusConnected (1/0) every minute; the minimum over the tasks
            # is 0 as soon as one has lost the bus. No data at all means no task reports:
            # breaching (the NoHealthyTargets alarm says why).
            self.bus_connected = stream.own_metric(
                config, BUS_CONNECTED_METRIC, "Minimum", "room bus connected (minimum over tasks)"
            )
            self._alarm(
                "BusDisconnected",
                self.bus_connected,
                1,
                "A stream task has lost the room bus (rooms do not reach other nodes)",
                periods=3,
                comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                missing=cloudwatch.TreatMissingData.BREACHING,
            )

        self.dashboard = self._dashboard(config, api, stream, tables, ttft_p95)

    def _log_metric(
        self,
        stream: StreamService,
        construct_id: str,
        namespace: str,
        metric_name: str,
        value: str,
    ) -> cloudwatch.Metric:
        logs.MetricFilter(
            self,
            f"{construct_id}Filter",
            log_group=stream.log_group,
            filter_pattern=logs.FilterPattern.literal(f"{{ {_STREAM_DONE} && {value} = * }}"),
            metric_namespace=namespace,
            metric_name=metric_name,
            metric_value=value,
            unit=cloudwatch.Unit.MILLISECONDS
            if metric_name.endswith("Ms")
            else cloudwatch.Unit.COUNT,
        )
        return cloudwatch.Metric(
            namespace=namespace, metric_name=metric_name, period=Duration.minutes(5)
        )

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        description: str,
        *,
        periods: int = 1,
        comparison: cloudwatch.ComparisonOperator = (
            cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
        ),
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            comparison_operator=comparison,
            treat_missing_data=missing,
            alarm_description=description,
        )
        for topic in self.destinations:
            action = cw_actions.SnsAction(topic)
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
        self.alarms.append(alarm)
        return alarm

    def _dashboard(
        self,
        config: AppConfig,
        api: Api,
        stream: StreamService,
        tables: list[dynamodb.ITable],
        ttft_p95: cloudwatch.Metric,
    ) -> cloudwatch.Dashboard:
        five = Duration.minutes(5)
        functions: list[lambda_.IFunction] = [api.api_function, api.worker_function]
        dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=f"{config.name}-overview"
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Time to first token (ms)",
                left=[
                    self.ttft.with_(statistic="p50", label="p50"),
                    ttft_p95.with_(label="p95"),
                    self.ttft.with_(statistic="p99", label="p99"),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Streams",
                left=[self.ttft.with_(statistic="SampleCount", label="finished streams")],
                right=[stream.active_streams],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Lambda invocations / errors / throttles",
                left=[fn.metric_invocations(period=five) for fn in functions],
                right=[fn.metric_errors(period=five) for fn in functions]
                + [fn.metric_throttles(period=five) for fn in functions],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Lambda duration p95",
                left=[fn.metric_duration(period=five, statistic="p95") for fn in functions],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="ALB: 5xx, target response time p95",
                left=[
                    stream.alb.metrics.http_code_elb(
                        code=elbv2.HttpCodeElb.ELB_5XX_COUNT, period=five
                    ),
                    stream.alb.metrics.http_code_target(
                        code=elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=five
                    ),
                ],
                right=[
                    stream.target_group.metrics.target_response_time(period=five, statistic="p95")
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Stream tasks: healthy hosts, CPU, memory",
                left=[
                    stream.target_group.metrics.healthy_host_count(period=Duration.minutes(1)),
                    stream.target_group.metrics.unhealthy_host_count(period=Duration.minutes(1)),
                ],
                right=[
                    stream.service.metric_cpu_utilization(period=Duration.minutes(1)),
                    stream.service.metric_memory_utilization(period=Duration.minutes(1)),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Batch queue and DLQ",
                left=[api.queue.metric_approximate_number_of_messages_visible(period=five)],
                right=[api.dlq.metric_approximate_number_of_messages_visible(period=five)],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="DynamoDB consumed capacity / throttles",
                left=[t.metric_consumed_write_capacity_units(period=five) for t in tables]
                + [t.metric_consumed_read_capacity_units(period=five) for t in tables],
                right=[
                    t.metric("WriteThrottleEvents", period=five, statistic="Sum") for t in tables
                ],
                width=12,
            ),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24),
        )
        return dashboard
