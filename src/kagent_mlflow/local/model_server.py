"""A small OpenAI-compatible server on the bundled model (:mod:`.engine`): what ``kagent-mlflow up`` puts behind
the agent when no ``--model-url`` is given.

Run it: ``python -m kagent_mlflow.local.model_server [--host 127.0.0.1] [--port 8081]``. It listens at once, prints
``READY http://host:port`` and loads the model in the background (~20 s on two cores); meanwhile ``GET /health`` answers
503 with ``{"status": "loading", "elapsed_s": ...}`` (``up`` shows it as progress) and chat requests get 503.

Routes: ``GET /v1/models``; ``POST /v1/chat/completions`` (``stream``, ``stream_options.include_usage``, ``tools``,
``max_tokens``, ``temperature``; every reply carries ``usage``); ``GET /health``. Bad requests get 4xx with OpenAI's
error shape and never reach the model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .engine import DEFAULT_MAX_TOKENS, MAX_TOKENS_LIMIT, MODEL_ID, Generation

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081
MAX_BODY_BYTES = 1024 * 1024


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The part of OpenAI's chat completion request this server honours; other fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[Message] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=128)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float | None = Field(default=None, ge=0, le=2)

    @property
    def token_limit(self) -> int:
        return self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS


class Loader:
    """Loads the model on a thread and remembers how far it got, for ``/health`` and for ``up``'s progress line."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self.model: Any = None
        self.error: str | None = None
        self.started = time.monotonic()
        self.loaded_in: float | None = None

    def start(self) -> None:
        threading.Thread(target=self._load, name="load-model", daemon=True).start()

    def _load(self) -> None:
        try:
            self.model = self._factory()
            self.loaded_in = time.monotonic() - self.started
            print(f"model {MODEL_ID} loaded in {self.loaded_in:.1f} s", flush=True)
        except Exception as exc:  # noqa: BLE001 - reported on /health and in the log, then the process exits
            self.error = f"{type(exc).__name__}: {exc}"
            print(f"error: could not load the model: {self.error}", file=sys.stderr, flush=True)

    def health(self) -> tuple[int, dict[str, Any]]:
        if self.model is not None:
            return 200, {"status": "ok", "model": MODEL_ID, "loaded_in_s": round(self.loaded_in or 0, 1)}
        if self.error:
            return 500, {"status": "failed", "error": self.error}
        return 503, {"status": "loading", "model": MODEL_ID, "elapsed_s": round(time.monotonic() - self.started, 1)}


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def create_app(loader: Loader) -> Any:
    """The FastAPI app around ``loader`` (whose ``model`` has the :class:`~.engine.LocalModel` interface)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI(title="kagent-mlflow local model server", docs_url=None, redoc_url=None)

    @app.get("/health")
    @app.get("/v1/health")
    async def health() -> JSONResponse:
        status, body = loader.health()
        return JSONResponse(body, status_code=status)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        entry = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "kagent-mlflow"}
        return {"object": "list", "data": [entry | {"custom_metadata": {"model_type": "llm"}}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        parsed = await read_request(request)
        if isinstance(parsed, JSONResponse):
            return parsed
        if loader.model is None:
            status, body = loader.health()
            return JSONResponse(error_body(f"the model is {body['status']}; retry shortly", "server_error"), 503)
        if parsed.stream:
            return StreamingResponse(stream_chunks(loader.model, parsed), media_type="text/event-stream")
        generation = await asyncio.to_thread(
            loader.model.generate, dumps(parsed.messages), parsed.tools or [], parsed.token_limit, parsed.temperature
        )
        return completion_body(generation)

    return app


async def read_request(request: Request) -> ChatRequest | Any:
    """The validated request, or the 4xx answer to give instead (body too big, not JSON, wrong shape)."""
    from fastapi.responses import JSONResponse

    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return JSONResponse(error_body(f"request body over {MAX_BODY_BYTES} bytes"), 413)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return JSONResponse(error_body(f"body is not JSON: {exc}"), 400)
    if not isinstance(data, dict):
        return JSONResponse(error_body("body must be a JSON object"), 400)
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return JSONResponse(error_body(f"{where}: {first['msg']}"), 400)


def dumps(messages: list[Message]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in messages]


def usage(generation: Generation) -> dict[str, int]:
    total = generation.prompt_tokens + generation.completion_tokens
    return {"prompt_tokens": generation.prompt_tokens, "completion_tokens": generation.completion_tokens} | {
        "total_tokens": total
    }


def completion_body(generation: Generation) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": generation.text or None}
    if generation.tool_calls:
        message["tool_calls"] = generation.tool_calls
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [{"index": 0, "message": message, "finish_reason": generation.finish_reason}],
        "usage": usage(generation),
    }


async def stream_chunks(model: Any, request: ChatRequest) -> AsyncIterator[str]:
    """Server-sent events: text as it is decoded (with tools offered, the whole reply at the end, since a tool call
    is only known once complete), then the finish reason, usage if asked for, and ``[DONE]``."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    cancelled = threading.Event()
    tools = request.tools or []
    on_text = None if tools else (lambda piece: loop.call_soon_threadsafe(queue.put_nowait, piece))
    chunk_id = f"chatcmpl-{uuid.uuid4().hex}"

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        body = {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": MODEL_ID}
        return f"data: {json.dumps(body | {'choices': [choice]} | extra, ensure_ascii=False)}\n\n"

    def run() -> Generation:
        try:
            return model.generate(
                dumps(request.messages), tools, request.token_limit, request.temperature, on_text, cancelled
            )
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    task = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        yield chunk({"role": "assistant", "content": ""})
        while (piece := await queue.get()) is not None:
            yield chunk({"content": piece})
        generation = await task
        if generation.tool_calls:
            calls = [call | {"index": i} for i, call in enumerate(generation.tool_calls)]
            yield chunk({"tool_calls": calls})
        elif tools and generation.text:
            yield chunk({"content": generation.text})
        yield chunk({}, generation.finish_reason)
        if (request.stream_options or {}).get("include_usage"):
            body = {"id": chunk_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": MODEL_ID}
            yield f"data: {json.dumps(body | {'choices': [], 'usage': usage(generation)})}\n\n"
        yield "data: [DONE]\n\n"
    except Exception as exc:  # noqa: BLE001 - the status line is sent already: the error goes in the stream
        yield f"data: {json.dumps(error_body(f'generation failed: {exc}', 'server_error'))}\n\n"
    finally:
        cancelled.set()  # client gone or done: stop generating


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kagent_mlflow.local.model_server",
        description=f"OpenAI-compatible server on the bundled {MODEL_ID} (extra 'local').",
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)

    import uvicorn

    from .engine import LocalModel, ModelNotInstalled, bundled_gguf

    try:
        path = bundled_gguf()
    except ModelNotInstalled as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"loading {MODEL_ID} from {path} (about 20 s on two cores) ...", flush=True)
    loader = Loader(lambda: LocalModel(path))

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                host, port = self.servers[0].sockets[0].getsockname()[:2]
                print(f"READY http://{host}:{port}", flush=True)
                loader.start()
                asyncio.get_running_loop().create_task(_exit_on_load_error(self, loader))

    config = uvicorn.Config(create_app(loader), host=args.host, port=args.port, log_level="warning")
    server = _Server(config)
    server.run()
    return 1 if loader.error else 0


async def _exit_on_load_error(server: Any, loader: Loader) -> None:
    """A model that cannot load makes the server useless: stop, so ``up`` sees the exit and shows the log's error."""
    while loader.model is None and loader.error is None:
        await asyncio.sleep(0.2)
    if loader.error:
        server.should_exit = True


if __name__ == "__main__":
    sys.exit(main())
