"""A path proxy for ``up --runtime kagent``: serves an A2A agent that listens at its root under kagent's controller
path (``/api/a2a/<namespace>/<agent>/``), so the seed's URL reaches the real kagent runtime unchanged.

``python -m kagent_mlflow.local.a2a_proxy --port 8083 --path /api/a2a/kagent/rh-analyze-simple/ --target URL``.
Requests below the path go to the target with the prefix removed; bodies and answers (server-sent events too) are
streamed through. Anything else is 404.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


def create_app(path: str, target: str) -> Any:
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    prefix = "/" + path.strip("/") + "/"
    client = httpx.AsyncClient(base_url=target, timeout=httpx.Timeout(600.0, connect=5.0))

    async def forward(request: Request) -> Any:
        rest = request.url.path[len(prefix) :] if request.url.path.startswith(prefix) else None
        if rest is None and request.url.path + "/" != prefix:
            return JSONResponse({"error": f"not found; the agent is at {prefix}"}, status_code=404)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = client.build_request(
            request.method, "/" + (rest or ""), params=request.query_params, headers=headers, content=request.stream()
        )
        try:
            response = await client.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            return JSONResponse({"error": f"the agent runtime at {target} did not answer: {exc}"}, status_code=502)
        kept = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}
        return StreamingResponse(
            response.aiter_raw(), status_code=response.status_code, headers=kept, background=_closer(response)
        )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        await client.aclose()

    methods = ["GET", "POST", "PUT", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/{rest:path}", forward, methods=methods)], lifespan=lifespan)


def _closer(response: Any) -> Any:
    from starlette.background import BackgroundTask

    return BackgroundTask(response.aclose)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kagent_mlflow.local.a2a_proxy", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--target", required=True)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(create_app(args.path, args.target), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
