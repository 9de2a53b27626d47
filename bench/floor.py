"""The floor: the least any webhook receiver must do. A bare aiohttp server that reads the body,
checks its HMAC-SHA256 signature and answers 202 (401 when the signature does not hold).

`python -m bench.floor --port P` with the secret in TARMAC_GITHUB_WEBHOOK_SECRET.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os

from aiohttp import web

PATH = "/api/github/webhooks"


def create_app(secret: bytes) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        given = request.headers.get("X-Hub-Signature-256", "")
        if not hmac.compare_digest(expected, given):
            return web.Response(status=401)
        return web.Response(status=202)

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post(PATH, receive)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    secret = os.environ["TARMAC_GITHUB_WEBHOOK_SECRET"].encode()
    web.run_app(create_app(secret), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
