"""Request bodies arrive as they are: a compressed one is refused with 415, never inflated.

The server runs with aiohttp's `auto_decompress=False` (api/server.py), so a `Content-Encoding:
gzip` body is never inflated, on the event loop or anywhere else: a 1 MB body can inflate to
1 GB, and aiohttp would do that while every other request waits. GitHub never compresses its
deliveries and no client of the API needs to, so rather than inflate with a cap, Tarmac answers
415 before the body is read (RFC 7694: with `Accept-Encoding: identity`).
"""

from __future__ import annotations

from aiohttp import hdrs, web

from api.errors import Handler, error_response

UNSUPPORTED_CONTENT_ENCODING = "Content-Encoding must be identity: send the body uncompressed"

_IDENTITY = {"", "identity"}


@web.middleware
async def identity_encoding_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    if request.body_exists and not request.match_info.http_exception and _encoded(request):
        response = error_response(415, UNSUPPORTED_CONTENT_ENCODING)
        response.headers[hdrs.ACCEPT_ENCODING] = "identity"
        return response
    return await handler(request)


def _encoded(request: web.Request) -> bool:
    codings = request.headers.getall(hdrs.CONTENT_ENCODING, [])
    return any(coding.strip().lower() not in _IDENTITY for coding in codings)
