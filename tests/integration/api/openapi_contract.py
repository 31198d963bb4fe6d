"""The public contract (docs/SPEC.md sections 4 and 5) as OpenAPI 3.1, for fuzzing.

The apps read their bodies themselves (msgspec, OpenAI's error shapes), so Litestar's
generated schema would know no request bodies; this one states what a client may send
and what it gets back: the success shapes loosely, every 4xx strictly in OpenAI's
``{"error": {"message", "type", "code", "param"}}``.
"""

from __future__ import annotations

from typing import Any

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": {"type": "string", "minLength": 1},
                "type": {"type": "string", "minLength": 1},
                "code": {"type": ["string", "null"]},
                "param": {"type": ["string", "null"]},
            },
        }
    },
}
ID_PARAM_LIMIT = 4000  # ids of any length, up to a URL's practical size

MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
        "content": {"type": "string", "maxLength": 2000},
    },
}
CHAT_REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "maxLength": 300},
        "messages": {"type": "array", "items": MESSAGE, "maxItems": 4},
        "max_tokens": {"type": "integer"},
        "max_completion_tokens": {"type": "integer"},
        "temperature": {"type": "number"},
        "top_p": {"type": "number"},
        "n": {"type": "integer"},
        "stream": {"type": "boolean"},
        "user": {"type": "string"},
    },
}
OBJECT = {"type": "object"}


def _errors() -> dict[str, Any]:
    body = {"application/json": {"schema": ERROR}}
    return {"4XX": {"description": "OpenAI-shaped error", "content": body}}


def _ok(status: str = "200", media: str = "application/json") -> dict[str, Any]:
    return {status: {"description": "ok", "content": {media: {"schema": OBJECT}}}, **_errors()}


def _path_id(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": ID_PARAM_LIMIT},
    }


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _document(title: str, paths: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def rest_api() -> dict[str, Any]:
    """The REST app (``/api/v1``)."""
    page = [_query("after", {"type": "string"}), _query("limit", {"type": "integer"})]
    return _document(
        "realtime-ai-stack REST API",
        {
            "/api/v1/chat/completions": {
                "post": {"requestBody": _json_body(CHAT_REQUEST), "responses": _ok()}
            },
            "/api/v1/models": {"get": {"responses": _ok()}},
            "/api/v1/models/{model_id}": {
                "get": {"parameters": [_path_id("model_id")], "responses": _ok()}
            },
            "/api/v1/files": {
                "get": {
                    "parameters": [*page, _query("purpose", {"type": "string"})],
                    "responses": _ok(),
                },
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["file", "purpose"],
                                    "properties": {
                                        "file": {"type": "string", "format": "binary"},
                                        "purpose": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": _ok(),
                },
            },
            "/api/v1/files/{file_id}": {
                "get": {"parameters": [_path_id("file_id")], "responses": _ok()},
                "delete": {"parameters": [_path_id("file_id")], "responses": _ok()},
            },
            "/api/v1/files/{file_id}/content": {
                "get": {
                    "parameters": [_path_id("file_id")],
                    "responses": {
                        "200": {"description": "the JSONL body"},
                        "302": {"description": "a presigned URL"},
                        **_errors(),
                    },
                }
            },
            "/api/v1/batches": {
                "post": {
                    "requestBody": _json_body(
                        {
                            "type": "object",
                            "required": ["input_file_id", "endpoint", "completion_window"],
                            "properties": {
                                "input_file_id": {"type": "string"},
                                "endpoint": {"type": "string"},
                                "completion_window": {"type": "string"},
                                "metadata": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                            },
                        }
                    ),
                    "responses": _ok(),
                },
                "get": {"parameters": page, "responses": _ok()},
            },
            "/api/v1/batches/{batch_id}": {
                "get": {"parameters": [_path_id("batch_id")], "responses": _ok()}
            },
            "/api/v1/batches/{batch_id}/cancel": {
                "post": {"parameters": [_path_id("batch_id")], "responses": _ok()}
            },
        },
    )


def stream_service() -> dict[str, Any]:
    """The stream service (``/stream/v1``)."""
    sse = {
        "200": {"description": "events", "content": {"text/event-stream": {"schema": {}}}},
        **_errors(),
    }
    resume = [
        _query("last_event_id", {"type": "string"}),
        _query("format", {"type": "string"}),
        _query("token", {"type": "string"}),
        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}},
    ]
    return _document(
        "realtime-ai-stack stream service",
        {
            "/stream/v1/chat/completions": {
                "post": {
                    "requestBody": _json_body(CHAT_REQUEST),
                    "responses": {**sse, "200": {"description": "chunks or a completion"}},
                }
            },
            "/stream/v1/streams": {
                "post": {"requestBody": _json_body(CHAT_REQUEST), "responses": _ok("201")}
            },
            "/stream/v1/streams/{stream_id}": {
                "get": {"parameters": [_path_id("stream_id")], "responses": _ok()}
            },
            "/stream/v1/streams/{stream_id}/events": {
                "get": {"parameters": [_path_id("stream_id"), *resume], "responses": sse}
            },
            "/stream/v1/streams/{stream_id}/cancel": {
                "post": {"parameters": [_path_id("stream_id")], "responses": _ok()}
            },
        },
    )
