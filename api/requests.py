"""Reading request bodies and query parameters, with a 400 that names what is wrong."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import ValidationError

from api.errors import bad_request
from api.schemas import RequestBody
from bot.core.pages import MAX_PER_PAGE, PageRequest

Body = TypeVar("Body", bound=RequestBody)

INVALID_JSON = "Invalid JSON body"
NOT_AN_OBJECT = "Request body must be a JSON object"


async def read_body(request: web.Request, model: type[Body], *, optional: bool = False) -> Body:
    """The validated body. With `optional`, an empty body stands for `{}`."""
    raw = await request.read()  # over client_max_size: 413 from aiohttp
    if optional and not raw.strip():
        raw = b"{}"
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise bad_request(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    kind = error["type"]
    if kind == "json_invalid":
        return INVALID_JSON
    if kind in {"model_type", "model_attributes_type"} or not error["loc"]:
        return NOT_AN_OBJECT
    field = ".".join(str(part) for part in error["loc"])
    if kind == "missing":
        return f"Missing field '{field}'"
    return f"Invalid field '{field}': {error['msg']}"


def read_page(request: web.Request) -> PageRequest:
    page = _positive_int(request, "page", default=1)
    per_page = _positive_int(request, "per_page", default=PageRequest.per_page)
    if per_page > MAX_PER_PAGE:
        raise bad_request(f"Invalid query parameter 'per_page': must be from 1 to {MAX_PER_PAGE}")
    return PageRequest(page=page, per_page=per_page)


def _positive_int(request: web.Request, name: str, *, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 9 or int(text) < 1:
        bounds = f"from 1 to {MAX_PER_PAGE}" if name == "per_page" else "a whole number, 1 or more"
        raise bad_request(f"Invalid query parameter '{name}': must be {bounds}")
    return int(text)
