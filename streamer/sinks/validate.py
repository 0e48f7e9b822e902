"""Client requests checked against the protocol's JSON Schema before any handler sees them.

Each request type has a ``<type>_request`` definition in schema/protocol.schema.json; a request
that breaks it (a field of the wrong type, a missing one, one not listed) is answered with an
``error`` ``bad_request`` that names the field, so a handler only ever gets the types it expects.

The daemon does not carry the jsonschema package (and its compiled dependencies) for four small
objects: :func:`problem` checks the keywords those definitions use, and the module refuses to load
a request definition that uses any other, so the schema file and this check cannot drift apart
(tests/test_protocol.py compares the two on every fuzzed request).
"""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

SCHEMA: dict[str, Any] = json.loads(
    resources.files("streamer.sinks").joinpath("schema/protocol.schema.json").read_text(encoding="utf-8")
)
SUFFIX = "_request"
KEYWORDS = {
    "type",
    "const",
    "enum",
    "properties",
    "required",
    "additionalProperties",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "$ref",
    "description",
}
REQUESTS: dict[str, dict[str, Any]] = {
    name.removesuffix(SUFFIX): definition for name, definition in SCHEMA["$defs"].items() if name.endswith(SUFFIX)
}


def _keywords(schema: Any) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    found = set(schema)
    for sub in schema.get("properties", {}).values():
        found |= _keywords(sub)
    if isinstance(ref := schema.get("$ref"), str):
        found |= _keywords(_resolve(ref))
    return found


def _resolve(ref: str) -> dict[str, Any]:
    prefix = "#/$defs/"
    if not ref.startswith(prefix):
        raise ValueError(f"protocol schema: only local references are supported, not {ref!r}")
    return SCHEMA["$defs"][ref.removeprefix(prefix)]


for _name, _definition in REQUESTS.items():
    if unknown := _keywords(_definition) - KEYWORDS:
        raise ValueError(f"protocol schema: {_name}{SUFFIX} uses keywords this check does not know: {sorted(unknown)}")


def _is(kind: str, value: Any) -> bool:
    """JSON Schema's types over decoded JSON (a bool is no number; 2.0 is an integer)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "number":
        return number and math.isfinite(value)
    if kind == "integer":
        return number and math.isfinite(value) and float(value).is_integer()
    types: dict[str, type | tuple[type, ...]] = {
        "string": str,
        "object": dict,
        "array": list,
        "boolean": bool,
        "null": type(None),
    }
    return isinstance(value, types[kind])


def problem(value: Any, schema: dict[str, Any], where: str = "the request") -> str | None:
    """What is wrong with ``value`` under ``schema`` (one clause), or None."""
    if "$ref" in schema:
        return problem(value, _resolve(schema["$ref"]), where)
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(k, value) for k in kinds):
            return f"{where} must be {' or '.join(_article(k) for k in kinds)}"
    if "const" in schema and value != schema["const"]:
        return f"{where} must be {json.dumps(schema['const'])}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {', '.join(json.dumps(v) for v in schema['enum'])}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{where} must not be empty" if schema["minLength"] == 1 else f"{where} is too short"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{where} must be at most {schema['maxLength']} characters"
    if _is("number", value):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where} must be at least {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where} must be at most {schema['maximum']}"
    if isinstance(value, dict):
        return _object_problem(value, schema)
    return None


def _object_problem(value: dict[str, Any], schema: dict[str, Any]) -> str | None:
    properties = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            return f'"{name}" is missing'
    if schema.get("additionalProperties", True) is False:
        for name in value:
            if name not in properties:
                return f'"{quote(name)}" is not a field of this request (expected {", ".join(properties)})'
    for name, sub in properties.items():
        if name in value and (found := problem(value[name], sub, f'"{name}"')) is not None:
            return found
    return None


def _article(kind: str) -> str:
    return {"integer": "an integer", "object": "an object", "array": "an array", "null": "null"}.get(kind, f"a {kind}")


def quote(name: str, limit: int = 40) -> str:
    """A client's field name, quoted back to it: no longer than ``limit``, control characters escaped."""
    text = name if len(name) <= limit else name[:limit] + "..."
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text


def request_problem(request: dict[str, Any]) -> str | None:
    """What is wrong with a request whose ``type`` is one of :data:`REQUESTS`, or None."""
    return problem(request, REQUESTS[request["type"]])
