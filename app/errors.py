"""Domain errors, rendered as JSON under /api and as an HTML page elsewhere."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("preflab.web")


class DomainError(Exception):
    status_code = 400
    code = "bad_request"
    headers: dict[str, str] | None = None

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class Invalid(DomainError):
    status_code = 422
    code = "invalid"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class Unauthorized(DomainError):
    status_code = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"


class PayloadTooLarge(DomainError):
    status_code = 413
    code = "payload_too_large"


class TooManyAttempts(DomainError):
    """Too many failed password guesses; answered 429 with Retry-After."""

    status_code = 429
    code = "too_many_attempts"

    def __init__(self, retry_after: int) -> None:
        minutes = -(-retry_after // 60)
        super().__init__(f"Too many failed logins. Try again in {minutes} minute{'' if minutes == 1 else 's'}.")
        self.headers = {"Retry-After": str(retry_after)}


HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
    422: "invalid", 429: "too_many_requests", 503: "unavailable",
}


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """The body of every API error: {"error": {"code": ..., "message": ..., "details": ...}}."""

    error: ErrorInfo


# What any API route may answer besides its own results (authentication, scopes and CSRF, unknown
# ids, bad input, rate limits, the database restarting); writes may also conflict or be too large.
_ERROR_DESCRIPTIONS = {
    400: "The body is not well-formed (JSON that does not parse)",
    401: "No, bad or revoked credentials", 403: "Not allowed for this account, token scope or CSRF token",
    404: "No such resource (or not visible to this account)", 409: "Conflicts with the resource's current state",
    413: "Request body too large", 422: "Invalid input; the message names each bad field",
    429: "Too many requests; retry after Retry-After seconds",
    503: "The database is unavailable or busy; nothing was saved, retry after Retry-After seconds",
}
_WRITE_ONLY = frozenset({400, 409, 413})


def document_errors(router: APIRouter) -> None:
    """Add the error answers every API route can give to its OpenAPI responses (a route's own win)."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        writes = bool(route.methods - {"GET", "HEAD"})
        errors = {status: {"model": ErrorResponse, "description": description}
                  for status, description in _ERROR_DESCRIPTIONS.items() if writes or status not in _WRITE_ONLY}
        route.responses = {**errors, **route.responses}


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path in ("/healthz", "/openapi.json")


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def render_error(request: Request, status: int, code: str, message: str, details: Any = None,
                 headers: dict[str, str] | None = None) -> Response:
    if wants_json(request):
        return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)
    if status == 401:
        # A page asked for by someone not logged in: send them to log in and come back.
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={_quote(target)}", status_code=303)
    from app.pages import render  # pages import deps, which import this module

    return render(request, "errors/error.html",
                  {"status": status, "code": code, "message": message, "details": details},
                  status_code=status, headers=headers)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="/")


def describe_validation_errors(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """A sentence naming each bad field, and the details as JSON-safe dicts."""
    details = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header", "form")]
        details.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid"),
                        "type": err.get("type", "")})
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details[:10])
    if len(details) > 10:
        message += f"; and {len(details) - 10} more"
    return message or "invalid request", details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        return render_error(request, exc.status_code, exc.code, exc.message, exc.details, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        message, details = describe_validation_errors(list(exc.errors()))
        return render_error(request, 422, "invalid", message, details)

    @app.exception_handler(DataError)
    async def unstorable_value(request: Request, exc: DataError) -> Response:
        # PostgreSQL refused a value that validation let through (a NUL character in a text, a number beyond a
        # column's range); the request's transaction is rolled back, so nothing was written.
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "the database refused a value"
        return render_error(request, 422, "invalid_value", f"a value cannot be stored: {reason}")

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def database_unavailable(request: Request, exc: Exception) -> Response:
        # The database is restarting, unreachable, locked or out of connections: nothing was
        # written (the request's transaction is rolled back), so the client may simply retry.
        log.warning("database unavailable for %s %s: %s", request.method, request.url.path,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return render_error(request, 503, "database_unavailable",
                            "the database is unavailable or busy; nothing was saved, retry in a few seconds",
                            headers={"Retry-After": "2"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such page or resource: {request.url.path}"
        return render_error(request, exc.status_code, code, message, headers=getattr(exc, "headers", None))
