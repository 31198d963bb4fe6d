"""REST API + batch worker: Lambda, HTTP API (the app verifies the Cognito JWT), SQS + DLQ."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match

from tests.infrastructure.conftest import Synth
from tests.infrastructure.helpers import one, resources

SERVICE = "rtai-dev-service"


def _functions(synth: Synth) -> dict[str, dict[str, Any]]:
    return {
        props["Handler"]: props
        for props in resources(synth.raw(SERVICE), "AWS::Lambda::Function").values()
        if props.get("Handler", "").startswith("functions.")
    }


def test_functions_are_arm64_python312_with_runtime_env_and_secret_arns(synth: Synth) -> None:
    functions = _functions(synth)
    assert set(functions) == {
        "functions.api.handler.handler",
        "functions.batch_worker.handler.handler",
    }
    for props in functions.values():
        assert props["Architectures"] == ["arm64"]
        assert props["Runtime"] == "python3.12"
        assert props["TracingConfig"] == {"Mode": "Active"}
        env = props["Environment"]["Variables"]
        assert env["AUTH_MODE"] == "jwt"
        assert env["STREAMS_TABLE"] == "rtai-dev-streams"
        assert env["JOBS_TABLE"] == "rtai-dev-jobs"
        for key in (
            "FILES_BUCKET",
            "BATCH_QUEUE_URL",
            "JWT_JWKS_URL",
            "JWT_ISSUER",
            "JWT_AUDIENCE",
            "OPENAI_API_KEY_SECRET_ARN",
            "POWERTOOLS_SERVICE_NAME",
        ):
            assert key in env, key
        # Only the API signs URL-token-keyed secrets (realtime client secrets).
        api = props["Handler"] == "functions.api.handler.handler"
        assert ("URL_TOKEN_SECRET_ARN" in env) == api
        assert env["KEEPALIVE_S"] == "15"
        assert "AWS_REGION" not in env  # reserved by Lambda
        assert "OPENAI_API_KEY" not in env  # never a plain env var


def test_log_groups_have_retention(synth: Synth) -> None:
    groups = resources(synth.raw(SERVICE), "AWS::Logs::LogGroup")
    assert groups
    assert all(props.get("RetentionInDays") == 7 for props in groups.values())


def test_http_api_routes_without_an_authorizer(synth: Synth) -> None:
    """The app verifies tokens itself: no authorizer answers first with API Gateway's own
    {"message": "Unauthorized"} (docs/deploy.md)."""
    template = synth.template(SERVICE)
    assert not resources(synth.raw(SERVICE), "AWS::ApiGatewayV2::Authorizer")
    routes = {
        props["RouteKey"]: props
        for props in resources(synth.raw(SERVICE), "AWS::ApiGatewayV2::Route").values()
    }
    assert set(routes) == {"GET /api/healthz", "ANY /api/{proxy+}"}
    for route in routes.values():
        assert route.get("AuthorizationType", "NONE") == "NONE"
        assert "AuthorizerId" not in route
    # full path passed through (no stage path, payload v2 for Mangum)
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Integration",
        {"IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "2.0"},
    )
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {"StageName": "$default", "AutoDeploy": True, "AccessLogSettings": Match.any_value()},
    )


def test_batch_queue_has_dlq_and_worker_reports_partial_failures(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    queues = resources(raw, "AWS::SQS::Queue")
    main = [q for q in queues.values() if "RedrivePolicy" in q]
    assert len(main) == 1 and len(queues) == 2
    assert main[0]["RedrivePolicy"]["maxReceiveCount"] == 5
    assert main[0]["VisibilityTimeout"] == 6 * 300
    assert all(q["SqsManagedSseEnabled"] for q in queues.values())
    mapping = one(raw, "AWS::Lambda::EventSourceMapping")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == 5
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 5}


def test_worker_sweep_schedule_and_lease_matches_timeout(synth: Synth) -> None:
    functions = _functions(synth)
    worker = functions["functions.batch_worker.handler.handler"]
    assert worker["Timeout"] == 300
    assert worker["Environment"]["Variables"]["BATCH_FINALIZE_LEASE_S"] == "300"
    rule = one(synth.raw(SERVICE), "AWS::Events::Rule")
    assert rule["ScheduleExpression"] == "rate(5 minutes)"
