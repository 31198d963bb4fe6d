"""The AI SDK's UI messages as Chat Completions messages.

What the SDK's own ``convertToModelMessages`` followed by its OpenAI chat provider
(``convertToOpenAIChatMessages``) would send, so a ``useChat`` page talking to this
service directly gets the same upstream request as one behind an AI SDK route:

- ``system``: its text parts joined.
- ``user``: text parts -> ``{"type": "text"}``; file parts -> ``image_url`` (``image/*``),
  ``input_audio`` (``audio/wav``, ``audio/mpeg`` / ``audio/mp3`` as data URLs) or ``file``
  (``application/pdf`` as a data URL); a lone text part becomes a plain string content;
  ``data-*`` parts are left out (the SDK drops them unless told how to convert them).
- ``assistant``: split into steps at ``step-start``; per step one assistant message (its
  text joined; ``tool_calls`` from its tool parts past ``input-streaming``, arguments as
  compact JSON), then one ``tool`` message per tool part with an outcome (its output: a
  string as is, anything else as JSON; an error's text; a denial's reason). Reasoning and
  file parts of assistant messages are not sent (OpenAI's chat API takes neither back).

Anything the SDK's OpenAI provider would refuse (a file type OpenAI's chat API does not
take, an unknown role) is a 400 naming the part.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import unquote_to_bytes

import msgspec

from core.errors import InvalidRequest

_json = msgspec.json.Encoder()

_AUDIO_FORMATS = {"audio/wav": "wav", "audio/mp3": "mp3", "audio/mpeg": "mp3"}


def _js_json(value: Any) -> str:
    """``JSON.stringify(value)`` (compact, non-ASCII kept, key order kept)."""
    return _json.encode(value).decode()


def _data_url(url: str) -> tuple[str, str] | None:
    """``data:<media type>;base64,<data>`` -> (media type, base64 data); None otherwise."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep:
        return None
    media, _, encoding = head.partition(";")
    if encoding != "base64":  # percent-encoded text: re-encoded as base64, as the SDK does
        data = base64.b64encode(unquote_to_bytes(data)).decode()
    return media, data


def _param(index: int, part: int | None = None) -> str:
    return f"messages[{index}]" + ("" if part is None else f".parts[{part}]")


def _parts(message: Any, index: int) -> list[dict[str, Any]]:
    parts = message.get("parts")
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise InvalidRequest(
            "A UI message needs 'parts', a list of objects.", param=f"{_param(index)}.parts"
        )
    for number, part in enumerate(parts):
        if not isinstance(part.get("type"), str):
            raise InvalidRequest("A part needs a 'type'.", param=_param(index, number))
    return parts


def _file_part(part: dict[str, Any], param: str, number: int) -> dict[str, Any]:
    media = part.get("mediaType")
    url = part.get("url")
    if not isinstance(media, str) or not isinstance(url, str):
        raise InvalidRequest("A file part needs 'mediaType' and 'url' strings.", param=param)
    top = media.split("/", 1)[0]
    decoded = _data_url(url)
    if top == "image":
        image: dict[str, Any] = {"url": url}
        if decoded is not None:  # the SDK re-encodes a data URL with the part's media type
            full = decoded[0] if media.endswith("/*") and decoded[0] else media
            image["url"] = f"data:{full};base64,{decoded[1]}"
        metadata = part.get("providerMetadata")
        openai = metadata.get("openai") if isinstance(metadata, dict) else None
        if isinstance(openai, dict) and openai.get("imageDetail") is not None:
            image["detail"] = openai["imageDetail"]
        return {"type": "image_url", "image_url": image}
    if top == "audio":
        if decoded is None:
            raise InvalidRequest("Audio file parts must be data URLs.", param=param)
        fmt = _AUDIO_FORMATS.get(media)
        if fmt is None:
            raise InvalidRequest(
                f"Audio parts of media type {media} are not supported (wav or mp3).", param=param
            )
        return {"type": "input_audio", "input_audio": {"data": decoded[1], "format": fmt}}
    if media == "application/pdf":
        if decoded is None:
            raise InvalidRequest("PDF file parts must be data URLs.", param=param)
        filename = part.get("filename")
        return {
            "type": "file",
            "file": {
                "filename": filename if isinstance(filename, str) else f"part-{number}.pdf",
                "file_data": f"data:application/pdf;base64,{decoded[1]}",
            },
        }
    raise InvalidRequest(f"File parts of media type {media} are not supported.", param=param)


def _user(parts: list[dict[str, Any]], index: int) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for number, part in enumerate(parts):
        kind = part["type"]
        if kind == "text":
            content.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "file":
            content.append(_file_part(part, _param(index, number), number))
    if len(content) == 1 and content[0]["type"] == "text":
        return {"role": "user", "content": content[0]["text"]}
    return {"role": "user", "content": content}


def _is_tool(part: dict[str, Any]) -> bool:
    kind: str = part["type"]
    return kind == "dynamic-tool" or kind.startswith("tool-")


def _tool_name(part: dict[str, Any]) -> str:
    if part["type"] == "dynamic-tool":
        return str(part.get("toolName", ""))
    return str(part["type"][len("tool-") :])


def _tool_result(part: dict[str, Any]) -> str | None:
    """The ``tool`` message content of a tool part, None when it has no outcome yet."""
    state = part.get("state")
    approval = part.get("approval") if isinstance(part.get("approval"), dict) else None
    if state == "approval-responded" and approval and approval.get("approved") is False:
        return str(approval.get("reason") or "Tool call execution denied.")
    if state == "output-denied":
        return str((approval or {}).get("reason") or "Tool call execution denied.")
    if state == "output-error":
        return str(part.get("errorText", ""))
    if state == "output-available":
        output = part.get("output")
        return output if isinstance(output, str) else _js_json(output)
    return None


def _assistant(parts: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    block: list[dict[str, Any]] = []

    def flush() -> None:
        if not block:
            return
        text = ""
        calls: list[dict[str, Any]] = []
        has_content = False
        for part in block:
            kind = part["type"]
            if kind == "text":
                text += str(part.get("text", ""))
                has_content = True
            elif kind in ("reasoning", "file", "reasoning-file", "custom"):
                has_content = True  # a model message part the OpenAI provider does not send
            elif _is_tool(part) and part.get("state") != "input-streaming":
                tool_input = part.get("input")
                if part.get("state") == "output-error" and tool_input is None:
                    tool_input = part.get("rawInput")
                calls.append(
                    {
                        "id": str(part.get("toolCallId", "")),
                        "type": "function",
                        "function": {
                            "name": _tool_name(part),
                            "arguments": _js_json({} if tool_input is None else tool_input),
                        },
                    }
                )
                has_content = True
        if has_content:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": (text or None) if calls else text,
            }
            if calls:
                message["tool_calls"] = calls
            out.append(message)
        for part in block:
            if _is_tool(part) and part.get("providerExecuted") is not True:
                result = _tool_result(part)
                if result is not None:
                    out.append(
                        {
                            "role": "tool",
                            "tool_call_id": str(part.get("toolCallId", "")),
                            "content": result,
                        }
                    )
        block.clear()

    for part in parts:
        kind = part["type"]
        if kind == "step-start":
            flush()
        elif kind == "steering-message":
            flush()
            inner = part.get("parts")
            out.append(_user(inner if isinstance(inner, list) else [], index))
        elif not kind.startswith("source-"):
            block.append(part)
    flush()
    return out


def to_chat_messages(messages: Any) -> list[dict[str, Any]]:
    """UI messages (``useChat``'s) -> Chat Completions messages; a 400 for what cannot be."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            "'messages' must be a non-empty list of UI messages.", param="messages"
        )
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest("A UI message must be an object.", param=_param(index))
        role = message.get("role")
        parts = _parts(message, index)
        if role == "system":
            text = "".join(str(p.get("text", "")) for p in parts if p["type"] == "text")
            out.append({"role": "system", "content": text})
        elif role == "user":
            out.append(_user(parts, index))
        elif role == "assistant":
            out.extend(_assistant(parts, index))
        else:
            raise InvalidRequest(
                f"Unsupported role {role!r}: UI messages are system, user or assistant.",
                param=f"{_param(index)}.role",
            )
    return out
