"""Checks that a real response is one the OpenAPI document describes."""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator


class OpenApiConformance:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._paths = [
            (re.compile("^" + re.sub(r"\{[^/}]+\}", "[^/]+", template) + "$"), template)
            for template in document["paths"]
        ]
        self.checked = 0

    def template_for(self, path: str) -> str | None:
        for pattern, template in self._paths:
            if pattern.match(path):
                return template
        return None

    def check(self, method: str, path: str, status: int, body: Any, headers: Any) -> None:
        template = self.template_for(path)
        assert template is not None, f"{path} is not in the OpenAPI document"
        operation = self.document["paths"][template].get(method.lower())
        assert operation is not None, f"{method} {template} is not in the OpenAPI document"
        response = operation["responses"].get(str(status))
        assert response is not None, f"{method} {template} answered {status}, not documented"
        self.checked += 1
        content = response.get("content", {}).get("application/json")
        if content is None:
            return
        assert headers.get("Content-Type", "").startswith("application/json"), (
            f"{method} {template} {status}: Content-Type {headers.get('Content-Type')}"
        )
        schema = dict(content["schema"], components=self.document["components"])
        errors = sorted(
            Draft202012Validator(schema).iter_errors(body), key=lambda e: list(e.absolute_path)
        )
        assert not errors, f"{method} {template} {status} does not conform: {errors[0].message}"
