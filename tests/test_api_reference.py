"""docs/api.md is the OpenAPI document rendered, and the document's examples and texts say
what the code says: the reference cannot drift from the API it describes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel

from api import errors, openapi, reference, server
from api.reference import REFERENCE, REGENERATE, render
from bot.core import errors as domain


def test_docs_api_md_is_the_openapi_document_rendered(openapi_document: dict[str, Any]) -> None:
    written = REFERENCE.read_text(encoding="utf-8")

    assert written == render(openapi_document), (
        f"docs/api.md differs from the OpenAPI document: run `make docs` ({REGENERATE}) "
        "and commit the result"
    )


def test_every_operation_and_schema_has_its_section(openapi_document: dict[str, Any]) -> None:
    rendered = render(openapi_document)

    for path, item in openapi_document["paths"].items():
        for method in reference.METHODS:
            if method in item:
                assert f"`{method.upper()} {path}` (`{item[method]['operationId']}`)" in rendered
    for name in openapi_document["components"]["schemas"]:
        assert f"\n### {name}\n" in rendered


@pytest.mark.parametrize(
    ("model", "example"),
    openapi.EXAMPLE_MODELS,
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_every_example_is_a_valid_answer(model: type[BaseModel], example: dict[str, Any]) -> None:
    assert model.model_validate(example).model_dump(mode="json") == example


def test_every_refusal_the_domain_names_is_documented(openapi_document: dict[str, Any]) -> None:
    documented = {
        example["value"]["error"]
        for item in openapi_document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
        for response in operation.get("responses", {}).values()
        for example in response.get("content", {})
        .get("application/json", {})
        .get("examples", {})
        .values()
        if isinstance(example["value"], dict) and "error" in example["value"]
    }
    messages = {
        value for name, value in vars(domain).items() if name.isupper() and isinstance(value, str)
    }
    # A PR command's refusal: no route of the API gives it.
    messages.discard(domain.NOTHING_TO_CANCEL)
    # No route gives it: clearing a candidate that is not marked bad answers it as it is,
    # as unfreezing an environment that is not frozen does.
    messages.discard(domain.CANDIDATE_NOT_REJECTED)

    assert messages - documented == set()
    assert set(openapi.ERROR_WHEN) - documented == set()


def test_the_http_servers_own_refusals_are_described(openapi_document: dict[str, Any]) -> None:
    description = openapi_document["info"]["description"]
    own = [
        server.MALFORMED_REQUEST,
        server.HEADER_TIMEOUT_MESSAGE,
        *(message for _, message in server._PARSER_ERRORS),
        errors.NOT_FOUND,
        errors.METHOD_NOT_ALLOWED,
        errors.INTERNAL_ERROR,
        errors.DATABASE_UNAVAILABLE,
    ]

    assert [message for message in own if f"`{message}`" not in description] == []


def test_every_link_into_the_reference_finds_its_heading() -> None:
    headings = {
        reference.slug(line.lstrip("#").strip())
        for line in REFERENCE.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    readme = REFERENCE.parent.parent / "README.md"
    links = re.findall(r"\(docs/api\.md#([^)]+)\)", readme.read_text(encoding="utf-8"))

    assert links
    assert sorted(set(links) - headings) == []
