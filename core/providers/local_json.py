"""JSON documents for a JSON Schema, built deterministically, checked by ``jsonschema``.

The local model (and the test upstream) answer ``response_format`` ``json_schema`` and
forced tool calls with a document built here from the schema alone: the same schema always
gives the same document. What can be built is built from the schema's keywords (``type``,
``properties``, ``required``, ``additionalProperties``, ``items`` / ``prefixItems``,
``minItems`` / ``maxItems``, ``enum``, ``const``, ``anyOf`` / ``oneOf`` / ``allOf``,
``$ref`` into ``$defs``, string ``format`` / ``minLength`` / ``maxLength``, numeric bounds
and ``multipleOf``); the result is then validated with the maintained ``jsonschema`` library,
so a schema this builder cannot satisfy (a ``pattern``, say) is a clear 400, never a
document that breaks the promise.

``strict`` is checked as OpenAI's Structured Outputs check it: every object names all its
properties in ``required`` and sets ``additionalProperties: false``.

``jsonschema`` costs ~0.4 s to import: it is imported on first use, so a cold start that
never sees a schema never pays for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from core.errors import InvalidRequest

# A schema may ask for an exponential document (arrays of arrays with large minItems) or
# recurse through $ref forever: building stops at these bounds with a 400.
MAX_VALUES = 10_000
MAX_DEPTH = 32
MAX_STRING_CHARS = 262_144  # all the document's strings together

_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_TYPE_ORDER = ("object", "array", "string", "integer", "number", "boolean", "null")


class Unsatisfiable(Exception):
    """The builder cannot make a document for this schema."""


def document_for(schema: Any, *, param: str, strict: bool = False, label: str = "value") -> Any:
    """A JSON value valid against ``schema``; a 400 naming ``param`` when the schema is not a
    valid JSON Schema, breaks ``strict``'s rules, or cannot be satisfied by this builder."""
    validator = _validator(schema, param)
    if strict:
        check_strict(schema, param)
    try:
        value = _Builder(schema).build(schema, label, 0)
    except Unsatisfiable as exc:
        raise InvalidRequest(
            f"The local model cannot build a JSON document for '{param}': {exc}.",
            param=param,
            code="invalid_value",
        ) from exc
    problem = next(iter(validator.iter_errors(value)), None)
    if problem is not None:
        raise InvalidRequest(
            f"The local model cannot build a JSON document for '{param}': "
            f"the document it built breaks the schema at {_where(problem.absolute_schema_path)} "
            f"({problem.message}).",
            param=param,
            code="invalid_value",
        )
    return value


def check_strict(schema: Any, param: str) -> None:
    """OpenAI's ``strict`` rules: every object schema lists each property in ``required``
    and has ``additionalProperties: false``."""
    for path, node in _objects(schema, ()):
        where = _where(path)
        if node.get("additionalProperties") is not False:
            raise InvalidRequest(
                f"Invalid schema for '{param}': in {where}, 'additionalProperties' is required "
                "to be supplied and to be false (strict).",
                param=param,
                code="invalid_value",
            )
        properties = node.get("properties") or {}
        required = node.get("required") or []
        missing = [key for key in properties if key not in required]
        if missing:
            raise InvalidRequest(
                f"Invalid schema for '{param}': in {where}, 'required' must list every key in "
                f"'properties' (strict). Missing {', '.join(repr(k) for k in missing)}.",
                param=param,
                code="invalid_value",
            )


def _validator(schema: Any, param: str) -> Any:
    from jsonschema import exceptions, validators

    if not isinstance(schema, dict):
        raise InvalidRequest(
            f"'{param}' must be a JSON Schema object.", param=param, code="invalid_value"
        )
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as exc:
        raise InvalidRequest(
            f"Invalid schema for '{param}': {exc.message}.", param=param, code="invalid_value"
        ) from exc
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _objects(
    node: Any, path: tuple[str | int, ...]
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every object schema inside ``node`` (those with ``type: object`` or ``properties``)."""
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in node:
        yield path, node
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions", "patternProperties"):
            if isinstance(value, dict):
                for name, sub in value.items():
                    yield from _objects(sub, (*path, key, name))
        elif key in ("items", "additionalProperties", "not", "contains"):
            yield from _objects(value, (*path, key))
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
            for index, sub in enumerate(value):
                yield from _objects(sub, (*path, key, index))


def _where(path: Any) -> str:
    parts = [str(p) for p in path]
    return "the root" if not parts else "/".join(parts)


class _Builder:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.values = 0
        self.chars = 0

    def build(self, schema: Any, label: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise Unsatisfiable(f"the schema nests (or recurses) deeper than {MAX_DEPTH} levels")
        self.values += 1
        if self.values > MAX_VALUES:
            raise Unsatisfiable(f"the document would hold more than {MAX_VALUES} values")
        if schema is True or schema == {}:
            return label
        if schema is False or not isinstance(schema, Mapping):
            raise Unsatisfiable("a subschema is false (nothing is valid)")
        if "$ref" in schema:
            return self.build(self._resolve(schema["$ref"]), label, depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                return self.build(self._first_not_null(options), label, depth + 1)
        if isinstance(schema.get("allOf"), list) and schema["allOf"]:
            merged = _merge([s for s in schema["allOf"] if isinstance(s, Mapping)])
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            return self.build(_merge([rest, merged]), label, depth + 1)
        kind = self._type(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, label, depth)
        if kind == "string":
            text = _string(schema, label)
            self.chars += len(text)
            if self.chars > MAX_STRING_CHARS:
                raise Unsatisfiable(f"its strings would exceed {MAX_STRING_CHARS} characters")
            return text
        if kind == "integer":
            return _number(schema, integer=True)
        if kind == "number":
            return _number(schema, integer=False)
        if kind == "boolean":
            return True
        return None

    def _resolve(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise Unsatisfiable(f"only local '$ref's ('#/...') are supported, not {ref!r}")
        node = self.root
        for raw in ref[1:].split("/")[1:] if ref != "#" else []:
            key = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise Unsatisfiable(f"'$ref' {ref!r} points nowhere")
        return node

    @staticmethod
    def _first_not_null(options: list[Any]) -> Any:
        for option in options:
            if not (isinstance(option, Mapping) and option.get("type") == "null"):
                return option
        return options[0]

    @staticmethod
    def _type(schema: Mapping[str, Any]) -> str:
        kind = schema.get("type")
        if isinstance(kind, str):
            return kind
        if isinstance(kind, list) and kind:
            return str(min(kind, key=lambda k: _TYPE_ORDER.index(k) if k in _TYPE_ORDER else 99))
        if "properties" in schema or "required" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        return "string"

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        required = [k for k in schema.get("required") or [] if isinstance(k, str)]
        result: dict[str, Any] = {}
        for key in [*properties, *(k for k in required if k not in properties)]:
            result[key] = self.build(properties.get(key, True), key, depth + 1)
        return result

    def _array(self, schema: Mapping[str, Any], label: str, depth: int) -> list[Any]:
        given = schema.get("prefixItems")
        prefix: list[Any] = given if isinstance(given, list) else []
        items = schema.get("items", True)
        low = _int(schema.get("minItems")) or 0
        high = _int(schema.get("maxItems"))
        count = max(low, len(prefix), 1)
        if high is not None:
            count = min(count, high)
        if count > MAX_VALUES:
            raise Unsatisfiable(f"the document would hold more than {MAX_VALUES} values")
        out = []
        for index in range(count):
            sub = prefix[index] if index < len(prefix) else items
            value = self.build(sub, f"{label}-{index + 1}", depth + 1)
            if schema.get("uniqueItems") and isinstance(value, int | float | str):
                value = _distinct(value, index)
            out.append(value)
        return out


def _merge(schemas: list[Mapping[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for schema in schemas:
        for key, value in schema.items():
            if key == "properties" and isinstance(value, Mapping):
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _distinct(value: Any, index: int) -> Any:
    if isinstance(value, str):
        return value if index == 0 else f"{value}-{index}"
    return value + index


def _string(schema: Mapping[str, Any], label: str) -> str:
    text = _FORMATS.get(str(schema.get("format")), label.replace("_", " ") or "value")
    low = _int(schema.get("minLength")) or 0
    high = _int(schema.get("maxLength"))
    if low > MAX_STRING_CHARS:
        raise Unsatisfiable(f"its strings would exceed {MAX_STRING_CHARS} characters")
    if len(text) < low:
        text += "x" * (low - len(text))
    if high is not None:
        text = text[:high]
    return text


def _number(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    """The smallest value >= 1 (or the lower bound) that the bounds and ``multipleOf`` allow."""
    low: float = -math.inf
    high: float = math.inf
    for key, strict in (("minimum", False), ("exclusiveMinimum", True)):
        bound = schema.get(key)
        if isinstance(bound, int | float) and not isinstance(bound, bool):
            low = max(low, math.floor(bound) + 1 if strict and integer else bound)
            if strict and not integer:
                low = max(low, bound + 1e-6)
    for key, strict in (("maximum", False), ("exclusiveMaximum", True)):
        bound = schema.get(key)
        if isinstance(bound, int | float) and not isinstance(bound, bool):
            high = min(high, math.ceil(bound) - 1 if strict and integer else bound)
            if strict and not integer:
                high = min(high, bound - 1e-6)
    value: float = 1 if low <= 1 <= high else (low if low > -math.inf else high)
    if integer:
        value = math.ceil(value)
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
        # the multiple nearest the preferred value that the bounds allow
        candidates = [math.ceil(value / step) * step, math.floor(value / step) * step]
        if low > -math.inf:
            candidates.append(math.ceil(low / step) * step)
        if high < math.inf:
            candidates.append(math.floor(high / step) * step)
        value = next((c for c in candidates if low <= c <= high), candidates[0])
    return int(value) if float(value).is_integer() else value
