"""GitHub's whole REST description, compiled once per test process into what the fake GitHub
asks of it: which operation a request path names, and whether the request's path parameters,
query parameters and JSON body are what that operation accepts."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from openapi_schema_validator import OAS30Validator

from tests.github_material import rest_description

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@dataclass(frozen=True)
class Route:
    template: str
    pattern: re.Pattern[str]
    names: tuple[str, ...]
    literal_segments: int
    literal_characters: int
    multi_segment: bool

    @property
    def rank(self) -> tuple[int, int]:
        return (self.literal_segments, self.literal_characters)


class RestDescription:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.components: dict[str, Any] = document["components"]
        self.paths: dict[str, Any] = document["paths"]
        self._by_length: dict[int, list[Route]] = {}
        self._multi: list[Route] = []
        for template, item in self.paths.items():
            route = self._compile(template, item)
            if route.multi_segment:
                self._multi.append(route)
            else:
                self._by_length.setdefault(template.count("/"), []).append(route)
        self._validators: dict[int, OAS30Validator] = {}

    def _compile(self, template: str, item: dict[str, Any]) -> Route:
        # A parameter GitHub marks x-multi-segment (a git ref, a file path) may hold slashes.
        multi = {
            parameter["name"]
            for method in METHODS
            if method in item
            for parameter in self.parameters(item[method])
            if parameter.get("in") == "path" and parameter.get("x-multi-segment")
        }

        regex, names = "", []
        for literal, name in re.findall(r"([^{]*)(?:\{([^}]+)\})?", template):
            regex += re.escape(literal)
            if name:  # names like {enterprise-team} are not regex group names: keep a list
                names.append(name)
                regex += "(.+)" if name in multi else "([^/]+)"
        literals = sum(1 for part in template.split("/")[1:] if not part.startswith("{"))
        characters = len(re.sub(r"\{[^}]+\}", "", template))
        pattern = re.compile(f"^{regex}$")
        return Route(template, pattern, tuple(names), literals, characters, bool(multi))

    def route(self, path: str) -> tuple[str, dict[str, str]] | None:
        """The path template `path` matches, and its parameters; the most literal one wins
        (`/commits/{ref}/status` over `/commits/{ref}`, `{base}...{head}` over `{basehead}`)."""
        best: tuple[Route, dict[str, str]] | None = None
        for route in (*self._by_length.get(path.count("/"), ()), *self._multi):
            found = route.pattern.match(path)
            if found is None:
                continue
            if best is None or route.rank > best[0].rank:
                best = (route, dict(zip(route.names, found.groups(), strict=True)))
        return None if best is None else (best[0].template, best[1])

    def operation(self, method: str, template: str) -> dict[str, Any] | None:
        operation: dict[str, Any] | None = self.paths[template].get(method.lower())
        return operation

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            _, section, name = node["$ref"].removeprefix("#/").split("/", 2)
            node = self.components[section][name]
        return node

    def parameters(self, operation: dict[str, Any]) -> list[dict[str, Any]]:
        return [self.resolve(parameter) for parameter in operation.get("parameters", [])]

    def request_problem(
        self,
        operation: dict[str, Any],
        path_params: dict[str, str],
        query: dict[str, str],
        body: Any,
    ) -> str | None:
        """What in the request the operation does not accept, or None."""
        for parameter in self.parameters(operation):
            where, name = parameter.get("in"), parameter["name"]
            values = path_params if where == "path" else query if where == "query" else None
            if values is None:
                continue
            if name not in values:
                if parameter.get("required"):
                    return f"{where} parameter {name!r} is required"
                continue
            problem = self._value_problem(parameter.get("schema", {}), values[name])
            if problem is not None:
                return f"{where} parameter {name!r}={values[name]!r}: {problem}"
        return self._body_problem(operation, body)

    def _value_problem(self, schema: dict[str, Any], raw: str) -> str | None:
        schema = self.resolve(schema)
        value: Any = raw
        kind = schema.get("type")
        if kind == "integer":
            if not re.fullmatch(r"-?\d+", raw):
                return "not an integer"
            value = int(raw)
        elif kind == "boolean":
            if raw not in ("true", "false"):
                return "not true or false"
            value = raw == "true"
        elif kind != "string":
            return None  # arrays and objects in a query string: GitHub's own encoding
        errors = list(self._validator(schema).iter_errors(value))
        return errors[0].message if errors else None

    def _body_problem(self, operation: dict[str, Any], body: Any) -> str | None:
        request_body = operation.get("requestBody")
        if request_body is None:
            return None
        request_body = self.resolve(request_body)
        schema = request_body.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            return None
        if body is None:
            return "request body required" if request_body.get("required") else None
        errors = list(self._validator(schema).iter_errors(body))
        if errors:
            return f"body does not match GitHub's schema: {errors[0].message}"
        return None

    def response_problem(self, operation: dict[str, Any], status: int, body: Any) -> str | None:
        """What in an answer (the fake's own) the operation's documented response for `status`
        does not allow, or None."""
        response = operation.get("responses", {}).get(str(status))
        if response is None:
            return f"status {status} is not one of the operation's responses"
        schema = self.resolve(response).get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            return None
        errors = list(self._validator(schema).iter_errors(body))
        if errors:
            return f"answer does not match GitHub's schema: {errors[0].message}"
        return None

    def webhook_problem(self, webhook: str, payload: Any) -> str | None:
        """What in a webhook payload the description's schema of that webhook (an
        `x-webhooks` key, e.g. deployment-protection-rule-requested) does not allow, or None."""
        operation = self.document["x-webhooks"][webhook]["post"]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        errors = list(self._validator(schema).iter_errors(payload))
        return f"{errors[0].json_path}: {errors[0].message}" if errors else None

    def schema(self, name: str) -> dict[str, Any]:
        """One of the description's named schemas (components/schemas)."""
        found: dict[str, Any] = self.components["schemas"][name]
        return found

    def _validator(self, schema: dict[str, Any]) -> OAS30Validator:
        # One validator per schema object of the description, which lives as long as it does.
        validator = self._validators.get(id(schema))
        if validator is None:
            validator = OAS30Validator(dict(schema, components=self.components))
            self._validators[id(schema)] = validator
        return validator


@functools.cache
def github_rest() -> RestDescription:
    """The description, compiled once per process (each xdist worker has its own)."""
    return RestDescription(rest_description())
