"""The local model's JSON documents satisfy any schema built from the keywords it claims."""

from __future__ import annotations

from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from core.providers.local_json import check_strict, document_for

_names = st.text(alphabet="abcdefghij_", min_size=1, max_size=6)
_small = st.integers(min_value=0, max_value=4)


def _bounded_numbers(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    def build(low: int, span: int, step: int | None, exclusive: bool) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": kind}
        schema["exclusiveMinimum" if exclusive else "minimum"] = low
        schema["maximum"] = low + span + (step or 1) * 2
        if step:
            schema["multipleOf"] = step
        return schema

    return st.builds(
        build,
        st.integers(-50, 50),
        st.integers(0, 20),
        st.one_of(st.none(), st.integers(1, 5)),
        st.booleans(),
    )


_leaves = st.one_of(
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.builds(
        lambda low, extra: {"type": "string", "minLength": low, "maxLength": low + extra},
        _small,
        st.integers(0, 40),
    ),
    st.sampled_from(["date-time", "date", "time", "email", "uuid", "uri", "ipv4"]).map(
        lambda fmt: {"type": "string", "format": fmt}
    ),
    _bounded_numbers("integer"),
    _bounded_numbers("number"),
    st.lists(st.one_of(st.integers(), _names), min_size=1, max_size=4).map(
        lambda values: {"enum": values}
    ),
)


def _containers(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    objects = st.dictionaries(_names, children, max_size=4).flatmap(
        lambda props: st.builds(
            lambda required, closed: {
                "type": "object",
                "properties": props,
                "required": required,
                **({"additionalProperties": False} if closed else {}),
            },
            st.lists(st.sampled_from(sorted(props)), unique=True) if props else st.just([]),
            st.booleans(),
        )
    )
    arrays = st.builds(
        lambda items, low, extra: {
            "type": "array",
            "items": items,
            "minItems": low,
            "maxItems": low + extra,
        },
        children,
        _small,
        _small,
    )
    unions = st.lists(children, min_size=1, max_size=3).map(lambda options: {"anyOf": options})
    nullable = children.map(lambda s: {"anyOf": [{"type": "null"}, s]})
    return st.one_of(objects, arrays, unions, nullable)


schemas = st.recursive(_leaves, _containers, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(schemas)
def test_documents_are_valid_for_any_schema_of_the_supported_keywords(schema: Any) -> None:
    document = document_for(schema, param="p")
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(document)
    assert document_for(schema, param="p") == document  # deterministic


def _strict(schema: Any) -> Any:
    """``schema`` made strict the way OpenAI wants it: every object closed and all required."""
    if isinstance(schema, dict):
        made = {k: _strict(v) if k != "properties" else v for k, v in schema.items()}
        if made.get("type") == "object":
            made["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
            made["required"] = list(made["properties"])
            made["additionalProperties"] = False
        return made
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@settings(max_examples=150, deadline=None)
@given(schemas.map(_strict))
def test_strict_schemas_get_every_property(schema: Any) -> None:
    check_strict(schema, "p")  # a strict schema passes the strict check
    document = document_for(schema, param="p", strict=True)
    jsonschema.validate(document, schema)
    if schema.get("type") == "object":
        assert set(document) == set(schema["properties"])
