"""A small OpenAI-compatible server on loopback for tests: real HTTP, behaviour set per test."""

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


@dataclass
class Behaviour:
    fail_first: int = 0  # answer 503 this many times first
    status: int | None = None  # always answer this status with an OpenAI error body
    malformed: bool = False
    ignore_n: bool = False
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


class FakeOpenAI:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> "FakeOpenAI":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    async def chat(self, request: Request):
        b = self.behaviour
        body = await request.json()
        b.requests.append(body)
        b.headers.append(dict(request.headers))
        if b.delay:
            await asyncio.sleep(b.delay)
        if b.fail_first > 0:
            b.fail_first -= 1
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        if b.status is not None:
            return JSONResponse({"error": {"message": "invalid api key", "type": "auth"}}, status_code=b.status)
        if b.malformed:
            return PlainTextResponse("<html>not json</html>")
        question = body["messages"][-1]["content"]
        n = 1 if b.ignore_n else body.get("n", 1)
        choices = [{"index": i, "message": {"role": "assistant", "content": f"answer {len(b.requests)}.{i} to: {question}"},
                    "finish_reason": "stop" if i % 2 == 0 else "length"} for i in reversed(range(n))]
        return JSONResponse({"id": "x", "object": "chat.completion", "choices": choices,
                             "usage": {"prompt_tokens": 5, "completion_tokens": 6 * n, "total_tokens": 5 + 6 * n}})
