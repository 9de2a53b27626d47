"""docs/api.md, the API reference, rendered from the OpenAPI document so that it cannot drift.

`python -m api.reference` (or `make docs`) writes it; tests/test_api_reference.py fails when
the file differs from what this renders.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from api.openapi import build_openapi_document

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "api.md"
REGENERATE = "python -m api.reference"
METHODS = ("get", "post", "put", "patch", "delete")
SCHEMA_PREFIX = "#/components/schemas/"
HEADER = f"""# Tarmac API reference

<!-- Generated from the OpenAPI document (api/openapi.py, served at /api/openapi.json) by
`make docs` ({REGENERATE}). Edit api/openapi.py, not this file:
tests/test_api_reference.py fails when the two differ. -->

GraphQL, for composite queries, is at `POST /api/graphql` with the same bearer tokens: its
schema is [graphql.graphql](graphql.graphql), and the README's "GraphQL" section says how it
answers."""


def render(document: dict[str, Any]) -> str:
    """The whole reference, in Markdown."""
    operations = list(_operations(document))
    parts = [
        HEADER,
        document["info"]["description"],
        "## Operations",
        _table(
            ["method and path", "what"],
            [
                [_link(f"{method.upper()} {path}", op["summary"], code=True), _auth(op)]
                for path, method, op in operations
            ],
        ),
        *(_operation(path, method, op) for path, method, op in operations),
        *_webhooks(document),
        "## Schemas",
        *(_schema(name, schema) for name, schema in document["components"]["schemas"].items()),
    ]
    return "\n\n".join(parts) + "\n"


def _webhooks(document: dict[str, Any]) -> list[str]:
    """What Tarmac sends (the document's `webhooks`): each as an operation whose path is the
    receiver's URL."""
    found = document.get("webhooks", {})
    if not found:
        return []
    parts = ["## Webhooks Tarmac sends"]
    for item in found.values():
        operation = {**item["post"]}
        parts.append(
            "\n\n".join(
                [
                    f"### {operation['summary']}",
                    f"`POST` to the receiver's URL (`{operation['operationId']}`)",
                    operation["description"],
                    "**Headers**",
                    _parameters(operation["parameters"]),
                    *_request_body(operation["requestBody"]),
                    *_responses(operation["responses"]),
                ]
            )
        )
    return parts


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                operation = {**item[method]}
                shared = item.get("parameters", [])
                operation["parameters"] = [*shared, *operation.get("parameters", [])]
                yield path, method, operation


def _auth(operation: dict[str, Any]) -> str:
    """Who may call it: the document's bearer default, or no token at all."""
    summary: str = operation["summary"]
    return f"{summary} (no token)" if operation.get("security") == [] else summary


def _operation(path: str, method: str, operation: dict[str, Any]) -> str:
    parts = [
        f"### {operation['summary']}",
        f"`{method.upper()} {path}` (`{operation['operationId']}`)"
        + ("; no token needed" if operation.get("security") == [] else "; bearer token"),
    ]
    if "description" in operation:
        parts.append(operation["description"])
    if operation["parameters"]:
        parts += ["**Parameters**", _parameters(operation["parameters"])]
    if "requestBody" in operation:
        parts += _request_body(operation["requestBody"])
    parts += _responses(operation["responses"])
    return "\n\n".join(parts)


def _parameters(parameters: list[dict[str, Any]]) -> str:
    rows = [
        [
            f"`{p['name']}`",
            p["in"],
            _type(p["schema"]) + _constraints(p["schema"]),
            "yes" if p.get("required") else "no",
            p.get("description", ""),
        ]
        for p in parameters
    ]
    return _table(["name", "in", "type", "required", "description"], rows)


def _request_body(body: dict[str, Any]) -> list[str]:
    content = body["content"]["application/json"]
    required = "required" if body.get("required") else "optional: an empty body is `{}`"
    parts = [f"**Request body** ({_type(content['schema'])}, {required})"]
    parts += [
        _example_block(name, example) for name, example in content.get("examples", {}).items()
    ]
    return parts


def _responses(responses: dict[str, Any]) -> list[str]:
    ordered = sorted(responses.items())
    answers = [(status, r) for status, r in ordered if not _is_error(r)]
    rows = [[status, _response_line(response)] for status, response in answers]
    errors = [
        row
        for status, response in ordered
        if _is_error(response)
        for row in _errors(status, response)
    ]
    parts = ["**Responses**", _table(["status", "what"], rows)]
    if errors:
        parts += ["**Errors**", _table(["status", "error", "when"], errors)]
    parts += [
        _example_block(f"{status} {name}", example)
        for status, response in answers
        for name, example in _examples(response).items()
    ]
    return parts


def _errors(status: str, response: dict[str, Any]) -> list[list[str]]:
    examples = _examples(response).values()
    if not examples:
        return [[status, "", response["description"]]]
    return [[status, f"`{e['value']['error']}`", e.get("summary", "")] for e in examples]


def _response_line(response: dict[str, Any]) -> str:
    line: str = response["description"]
    for media_type, media in response.get("content", {}).items():
        if media_type == "application/json":
            line += f" {_type(media['schema'])}"
        else:
            line += f" (`{media_type}`)"
    headers = response.get("headers", {})
    if headers:
        line += "; headers: " + ", ".join(
            f"`{name}` ({header['description']})" for name, header in headers.items()
        )
    return line


def _is_error(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref") == SCHEMA_PREFIX + "ErrorResponse")


def _examples(response: dict[str, Any]) -> dict[str, Any]:
    examples: dict[str, Any] = (
        response.get("content", {}).get("application/json", {}).get("examples", {})
    )
    return examples


def _example_block(name: str, example: dict[str, Any]) -> str:
    title = f"Example `{name}`" + (f": {example['summary']}" if "summary" in example else "")
    value = json.dumps(example["value"], indent=2, ensure_ascii=False)
    return f"{title}\n\n```json\n{value}\n```"


def _schema(name: str, schema: dict[str, Any]) -> str:
    parts = [f"### {name}"]
    if "description" in schema:
        parts.append(schema["description"])
    if "enum" in schema:
        parts.append("One of " + ", ".join(f"`{value}`" for value in schema["enum"]) + ".")
        return "\n\n".join(parts)
    required = set(schema.get("required", []))
    rows = [
        [
            f"`{field}`",
            _type(prop) + _constraints(prop),
            "yes" if field in required else "no",
            prop.get("description", ""),
        ]
        for field, prop in schema.get("properties", {}).items()
    ]
    parts.append(_table(["field", "type", "required", "description"], rows))
    return "\n\n".join(parts)


def _type(schema: dict[str, Any]) -> str:
    """A schema's type in words: `string`, `DeploymentResponse` (linked), `array of …`."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(SCHEMA_PREFIX)
        return f"[`{name}`](#{slug(name)})"
    if "anyOf" in schema:
        return " or ".join(_type(option) for option in schema["anyOf"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema['items'])}"
    if kind == "object" and "additionalProperties" in schema:
        return f"object of {_type(schema['additionalProperties'])}"
    if "format" in schema:
        return f"{kind} ({schema['format']})"
    return str(kind)


def _constraints(schema: dict[str, Any]) -> str:
    """Bounds and default, also those of the non-null option of an `anyOf`."""
    options = [schema, *schema.get("anyOf", [])]
    found = []
    for option in options:
        for key, words in (
            ("minLength", "length ≥ {}"),
            ("maxLength", "length ≤ {}"),
            ("minimum", "≥ {}"),
            ("maximum", "≤ {}"),
            ("enum", "one of {}"),
        ):
            if key in option:
                found.append(words.format(_bound(option[key])))
    if "default" in schema:
        found.append(f"default {_value(schema['default'])}")
    return f", {', '.join(found)}" if found else ""


def _bound(value: Any) -> str:
    return str(value) if isinstance(value, int) else _value(value)


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(f"`{json.dumps(v)}`" for v in value)
    return f"`{json.dumps(value)}`"


def _link(text: str, heading: str, *, code: bool) -> str:
    label = f"`{text}`" if code else text
    return f"[{label}](#{slug(heading)})"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = [_row(header), "|" + "---|" * len(header)]
    lines += [_row(row) for row in rows]
    return "\n".join(lines)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def _cell(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|")


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else REFERENCE
    target.write_text(render(build_openapi_document()), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
