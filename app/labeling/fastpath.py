"""The labeling queue's fast path: lease and submit without FastAPI's dispatch.

Fifty labelers looping lease -> submit keep the web process CPU-bound, and FastAPI's per-request work
(matching through the included routers, solving the dependencies, the exit stack) was a quarter of
it. The two routes below are tried before FastAPI's. A request whose input is ordinary (a decimal
id, no query string, a JSON body that validates, an Idempotency-Key within limits, no form, no NUL)
is answered here by the same functions the FastAPI routes call (`routes.leased`, `routes.submitted`),
after the same CSRF check, in one call on the queue's own threads (`threads()`) with its own session.
Anything else is handed, body and all, to the FastAPI routes, which validate it and answer with their
usual errors; so are all requests while a dependency is overridden (the test suite's PostgreSQL sessions).
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from app.deps import FORM_TYPES, csrf_protect
from app.labeling.judgments import MAX_KEY_CHARS
from app.labeling.routes import leased, submitted
from app.labeling.schemas import JudgmentCreate
from app.middleware import NUL_SEEN

HANDED_ON = "preflab.fast_path_handed_on"  # set in the scope: the FastAPI routes answer this request


def threads(count: int) -> ThreadPoolExecutor:
    """The threads that run the fast path's database work (app.state.queue_threads, `count` of them).

    Not anyio's threadpool, where FastAPI runs sync routes: handing work to its threads (a Python queue
    and condition per call, a capacity limiter, a cancel scope) cost the web process 5-10% more CPU per
    judgment under the load benchmark than an executor's C-level queue.
    """
    return ThreadPoolExecutor(count, thread_name_prefix="preflab-queue")


async def _on_queue_threads(request: Request, answer: Callable[..., Response], *args: Any) -> Response:
    return await asyncio.get_running_loop().run_in_executor(request.app.state.queue_threads, _in_session, request,
                                                            answer, *args)


def _row_id(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _ordinary(request: Request) -> bool:
    scope = request.scope
    return (not request.app.dependency_overrides and not scope.get("query_string")
            and not request.headers.get("content-type", "").startswith(FORM_TYPES))


def _in_session(request: Request, answer: Callable[..., Response], *args: Any) -> Response:
    session = request.app.state.sessionmaker()
    try:
        return answer(request, session, *args)
    finally:
        session.close()


async def lease(request: Request) -> Response | None:
    project_id = _row_id(request.path_params["project_id"])
    if project_id is None or not _ordinary(request):
        return None
    await csrf_protect(request)
    return await _on_queue_threads(request, leased, project_id)


async def submit(request: Request) -> Response | None:
    assignment_id = _row_id(request.path_params["assignment_id"])
    key = request.headers.get("idempotency-key")
    if (assignment_id is None or not key or len(key) > MAX_KEY_CHARS or not _ordinary(request)
            or request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json"):
        return None
    raw = await request.body()
    if request.scope.get(NUL_SEEN):
        return None
    try:
        body = JudgmentCreate.model_validate(json.loads(raw))  # as FastAPI does: parse, then validate
    except (ValueError, ValidationError):  # json's errors are ValueErrors
        return None
    await csrf_protect(request)
    return await _on_queue_threads(request, submitted, assignment_id, body, key)


class QueueRoute(Route):
    """A POST route tried before FastAPI's: answers with `answer`, or hands the request on when it returns None."""

    def __init__(self, path: str, answer: Callable[[Request], Awaitable[Response | None]]) -> None:
        self.answer = answer
        super().__init__(path, self.serve, methods=["POST"], include_in_schema=False)  # handle() runs serve()

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get(HANDED_ON):
            return Match.NONE, {}
        return super().matches(scope)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":  # 405 as FastAPI's route would answer
            scope[HANDED_ON] = True
            await scope["app"].router(scope, receive, send)
            return
        await self.serve(scope, receive, send)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.answer(request)  # errors raised here reach the app's exception handlers
        if response is not None:
            await response(scope, receive, send)
            return
        scope[HANDED_ON] = True
        await scope["app"].router(scope, _replay(request, receive), send)


def _replay(request: Request, receive: Receive) -> Receive:
    """The body this path already read, then the connection's own messages (a disconnect)."""
    body: bytes | None = getattr(request, "_body", None)
    if body is None:
        return receive
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def install(app: Any, prefix: str) -> None:
    """Put the queue's fast routes in front of the application's others."""
    app.router.routes[0:0] = [QueueRoute(prefix + "/projects/{project_id}/assignments", lease),
                              QueueRoute(prefix + "/assignments/{assignment_id}/judgment", submit)]
