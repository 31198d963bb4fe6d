"""Dashboard, alarms and TTFT from the stream service's log lines."""

from __future__ import annotations

from typing import Any

from tests.infrastructure.conftest import Synth
from tests.infrastructure.helpers import one, resources

SERVICE = "rtai-dev-service"


def _alarms(synth: Synth) -> list[dict[str, Any]]:
    return list(resources(synth.raw(SERVICE), "AWS::CloudWatch::Alarm").values())


def test_ttft_metric_from_stream_done_log_lines(synth: Synth) -> None:
    filters = resources(synth.raw(SERVICE), "AWS::Logs::MetricFilter").values()
    (ttft,) = [f for f in filters if "ttft_ms" in f["FilterPattern"]]
    assert '$.event = "stream_done"' in ttft["FilterPattern"]
    (transformation,) = ttft["MetricTransformations"]
    assert transformation == {
        "MetricName": "TimeToFirstTokenMs",
        "MetricNamespace": "RealtimeAiStack/rtai-dev",
        "MetricValue": "$.ttft_ms",
        "Unit": "Milliseconds",
    }
    assert "StreamServiceLogs" in ttft["LogGroupName"]["Ref"]


def test_ttft_p95_alarm(synth: Synth) -> None:
    (alarm,) = [a for a in _alarms(synth) if a.get("MetricName") == "TimeToFirstTokenMs"]
    assert alarm["ExtendedStatistic"] == "p95"
    assert alarm["Threshold"] == 3000
    assert alarm["TreatMissingData"] == "notBreaching"


def test_alarms_cover_lambda_alb_ecs_dlq_and_dynamodb(synth: Synth) -> None:
    alarms = _alarms(synth)
    names = {a.get("MetricName") for a in alarms}
    assert {"Errors", "Throttles", "TargetResponseTime", "UnHealthyHostCount"} <= names
    assert {"HealthyHostCount", "ApproximateNumberOfMessagesVisible"} <= names
    math = [
        m["MetricStat"]["Metric"]["MetricName"]
        for a in alarms
        for m in a.get("Metrics", [])
        if "MetricStat" in m
    ]
    assert {"HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count"} <= set(math)
    assert {"ReadThrottleEvents", "WriteThrottleEvents"} <= set(math)
    topic_alarms = [a for a in alarms if a.get("AlarmActions")]
    assert len(topic_alarms) >= 12


def test_dashboard(synth: Synth) -> None:
    dashboard = one(synth.raw(SERVICE), "AWS::CloudWatch::Dashboard")
    assert dashboard["DashboardName"] == "rtai-dev-overview"
    body = str(dashboard["DashboardBody"])
    assert "TimeToFirstTokenMs" in body and "ActiveStreams" in body
