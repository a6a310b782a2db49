"""ASGI middleware: request body limits, NUL refusal and security headers."""

import json
import re

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_body

# No inline script anywhere: every script is a file under /static.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI's body parsing passes it on instead of answering 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit:,} bytes "
                              "(PREFLAB_MAX_BODY_MB); split the upload")


NUL_MESSAGE = ("the request holds a NUL character (\\u0000 or %00), which no text field may contain "
               "(PostgreSQL cannot store it); remove it and send again")
# Set in the ASGI scope when a body held a NUL; app/deps.py refuses the request once the body is read.
# Flagged rather than refused here, so a route that parses its own body (prompt import) can name the line.
NUL_SEEN = "preflab.nul_in_body"

# A JSON \u0000 escape: preceded by an even number of backslashes (an odd one makes it the text "\u0000").
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_PERCENT_NUL = re.compile(rb"%00")
TAIL = 64  # bytes kept from the previous chunk, so an escape split across chunks is still seen


def _body_pattern(content_type: str) -> re.Pattern[bytes] | bool:
    """The escaped-NUL pattern for this body; True: only raw NUL bytes count; False: not scanned.

    Forms are checked field by field once parsed (app/deps.py), so binary file parts stay possible.
    """
    media = content_type.split(";")[0].strip().lower()
    if media in ("application/json", "application/x-ndjson") or media.endswith("+json"):
        return _JSON_NUL
    return media.startswith("text/")


class RequestGuardMiddleware:
    """Bounds request bodies (413, early), refuses NUL characters in query strings (422) and flags them
    in JSON and text bodies; both are found while the body streams in, without holding it in memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        content_type = ""
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = False
                if too_large:
                    await self._reject(send, 413, "payload_too_large", BodyTooLarge(self.max_bytes).detail)
                    return
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        query = scope.get("query_string", b"")
        if b"\x00" in query or _PERCENT_NUL.search(query):
            await self._reject(send, 422, "nul_character", NUL_MESSAGE)
            return
        pattern = _body_pattern(content_type)
        received = 0
        tail = b""

        async def guarded_receive() -> Message:
            nonlocal received, tail
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
                if pattern is not False and not scope.get(NUL_SEEN):
                    window = tail + chunk
                    if b"\x00" in chunk or (pattern is not True and pattern.search(window)):
                        scope[NUL_SEEN] = True
                    tail = window[-TAIL:]
            return message

        await self.app(scope, guarded_receive, send)

    async def _reject(self, send: Send, status: int, code: str, message: str) -> None:
        # Answered before the app runs, as JSON for pages too: no page sends such a request.
        body = json.dumps(error_body(code, message)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class SecurityHeadersMiddleware:
    """Security headers on every response; cookies marked Secure on https (or always, when configured).

    The scheme is the connection's, or the X-Forwarded-Proto of a proxy named in PREFLAB_TRUSTED_PROXIES
    (uvicorn rewrites it only for those).
    """

    def __init__(self, app: ASGIApp, secure_cookies: bool = False) -> None:
        self.app = app
        self.secure_cookies = secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        secure = self.secure_cookies or https

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-security-policy", CSP)
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("x-frame-options", "DENY")
                headers.setdefault("referrer-policy", "same-origin")
                if https:
                    headers.setdefault("strict-transport-security", "max-age=31536000")
                if secure:
                    message["headers"] = [_secure_cookie(name, value) for name, value in message["headers"]]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _secure_cookie(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    if name.lower() == b"set-cookie" and b"; secure" not in value.lower():
        return name, value + b"; secure"
    return name, value
