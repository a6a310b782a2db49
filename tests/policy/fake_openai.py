"""A small OpenAI-compatible server on loopback for tests: real HTTP, behaviour set per test."""

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


@dataclass
class Behaviour:
    fail_first: int = 0  # answer fail_status this many times first
    fail_status: int = 503
    retry_after: str | None = None  # sent with those failures
    status: int | None = None  # always answer this status with an OpenAI error body
    error_message: str = "invalid api key"
    malformed: bool = False
    body: Any = None  # answer this JSON as it is, instead of a made-up completion
    ignore_n: bool = False
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # time.monotonic() as each request arrived
    in_flight: int = 0
    max_in_flight: int = 0


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

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise RuntimeError(f"the fake OpenAI server did not start on port {self.port}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    async def chat(self, request: Request):
        b = self.behaviour
        body = await request.json()
        b.requests.append(body)
        b.headers.append(dict(request.headers))
        b.paths.append(request.url.path)
        b.times.append(time.monotonic())
        b.in_flight += 1
        b.max_in_flight = max(b.max_in_flight, b.in_flight)
        try:
            if b.delay:
                await asyncio.sleep(b.delay)
            return self.answer(b, body)
        finally:
            b.in_flight -= 1

    def answer(self, b: Behaviour, body: dict[str, Any]):
        if b.fail_first > 0:
            b.fail_first -= 1
            headers = {"Retry-After": b.retry_after} if b.retry_after is not None else None
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=b.fail_status, headers=headers)
        if b.status is not None:
            return JSONResponse({"error": {"message": b.error_message, "type": "auth"}}, status_code=b.status)
        if b.malformed:
            return PlainTextResponse("<html>not json</html>")
        if b.body is not None:
            return JSONResponse(b.body)
        question = body["messages"][-1]["content"]
        n = 1 if b.ignore_n else body.get("n", 1)
        choices = [{"index": i, "message": {"role": "assistant", "content": f"answer {len(b.requests)}.{i} to: {question}"},
                    "finish_reason": "stop" if i % 2 == 0 else "length"} for i in reversed(range(n))]
        return JSONResponse({"id": "x", "object": "chat.completion", "choices": choices,
                             "usage": {"prompt_tokens": 5, "completion_tokens": 6 * n, "total_tokens": 5 + 6 * n}})
